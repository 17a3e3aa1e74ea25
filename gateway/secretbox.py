"""Device secrets at rest: sealed with a key kept outside the database.

The gateway must verify each button's HMAC, so the secret itself is needed (a hash would
not do); what the database holds is its Fernet token (AES-128-CBC + HMAC-SHA256, from the
`cryptography` package), and the key lives in its own 0600 file (`<state>/secret.key`
unless `[store] key_file` says otherwise). A copy of the database alone, a backup or a
PostgreSQL replica, no longer gives anyone a button's secret; every gateway sharing one
PostgreSQL needs the same key file.
"""
from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from .config import ConfigError

PREFIX = "fernet:"  # marks a sealed value; rows without it are from before sealing


class SecretKeyError(ConfigError):
    pass


OPENED_MAX = 100_000  # a city's registry many times over


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)
        # Sealed value -> secret. Opening costs ~0.1 ms, and the ingest worker reloads the
        # whole registry after every registry change (a city: 4,278 rows); a sealed value
        # never changes meaning, so each is opened once. The registry cache holds these
        # secrets in memory anyway.
        self._opened: dict[str, str] = {}

    def seal(self, plain: str) -> str:
        return PREFIX + self._fernet.encrypt(plain.encode()).decode()

    def open(self, stored: str) -> str:
        if not is_sealed(stored):
            return stored  # a row from before sealing; the store seals those at start
        plain = self._opened.get(stored)
        if plain is not None:
            return plain
        try:
            plain = self._fernet.decrypt(stored[len(PREFIX):].encode()).decode()
        except InvalidToken:
            raise SecretKeyError("a device secret does not open with this key file: is it the key "
                                 "this database was sealed with?") from None
        if len(self._opened) >= OPENED_MAX:
            self._opened.clear()
        self._opened[stored] = plain
        return plain


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)


def load(path: Path, *, create: bool) -> SecretBox:
    """The box for the key at `path`; a new key is written (0600) only when `create`."""
    try:
        return SecretBox(path.read_bytes().strip())
    except FileNotFoundError:
        if not create:
            raise SecretKeyError(f"no key file {path}, and the database holds secrets sealed with one: "
                                 "copy the key from the gateway that made them") from None
    except ValueError:
        raise SecretKeyError(f"{path} is not a Fernet key") from None
    key = Fernet.generate_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return SecretBox(path.read_bytes().strip())
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
        f.flush()
        os.fsync(f.fileno())
    return SecretBox(key)
