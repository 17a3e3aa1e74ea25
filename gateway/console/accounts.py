"""Console accounts and login sessions: passwords and cookie tokens, over the store.

Passwords are argon2id hashes; a session cookie holds a random token whose SHA-256 is the
row id, so a stolen database cannot be replayed as cookies. The statements live in
gateway/store/accounts.py.
"""
from __future__ import annotations

import hashlib
import secrets
import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..auth import ROLES
from ..store import ConsoleUser, Store

User = ConsoleUser  # the row type; callers know it by this name

_hasher = PasswordHasher()
_dummy: list[str] = []
# Each argon2id hash or check takes 64 MiB: at most this many at once, whatever number of
# logins arrive together (the rest wait their turn in the thread pool).
ARGON2_AT_ONCE = 2
_argon2_slots = threading.BoundedSemaphore(ARGON2_AT_ONCE)


def _hash(password: str) -> str:
    with _argon2_slots:
        return _hasher.hash(password)


def _verify(pw_hash: str, password: str) -> None:
    with _argon2_slots:
        _hasher.verify(pw_hash, password)


def _dummy_hash() -> str:
    """Verified against when the user does not exist, so a login takes as long either way."""
    if not _dummy:
        _dummy.append(_hash(secrets.token_hex(16)))
    return _dummy[0]


def ensure_tables(store: Store) -> None:
    """The console's tables: created by the store's migrations (kept for callers)."""
    store.migrate()


def valid_name(name: str) -> bool:
    return 1 <= len(name) <= 64 and all(c.isalnum() or c in "._-" for c in name)


def set_user(store: Store, name: str, role: str, password: str, unit: str, now_ms: int) -> bool:
    """Create or update an account; True when it was created."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not valid_name(name):
        raise ValueError("name: 1-64 letters, digits, '.', '_' or '-'")
    if len(password) < 8:
        raise ValueError("password: at least 8 characters")
    return store.save_user(name, role, _hash(password), unit, now_ms)


def remove_user(store: Store, name: str) -> bool:
    return store.delete_user(name)


def list_users(store: Store) -> list[User]:
    return store.users()


def check_password(store: Store, name: str, password: str) -> User | None:
    pw_hash = store.password_hash(name)
    try:
        _verify(pw_hash or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    return store.user(name) if pw_hash else None


# --- sessions ---------------------------------------------------------------------------
def _sid(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(store: Store, name: str, now_ms: int, ttl_ms: int) -> tuple[str, str]:
    """Returns (cookie token, CSRF token)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    store.open_session(_sid(token), name, csrf, now_ms, ttl_ms)
    return token, csrf


def session(store: Store, token: str, now_ms: int) -> tuple[User, str] | None:
    """The logged-in user and the session's CSRF token, or None."""
    return store.session(_sid(token), now_ms)


def close_session(store: Store, token: str) -> None:
    store.close_session(_sid(token))
