"""When an API token may be used: its expiry, revocation and how often its use is recorded.

Pure rules (no I/O); the store applies them to the row it reads."""
from __future__ import annotations

import re

DAY_MS = 86_400_000
DEFAULT_EXPIRY_DAYS = 365
# Recording every use would be a write per API request; once a minute still tells an
# operator which tokens are in use before revoking one.
TOUCH_EVERY_MS = 60_000
ID_CHARS = 12  # a token's id: the first hex characters of its SHA-256, safe to show and log

_SPAN = re.compile(r"(\d+)([dhm]?)")
_UNIT_MS = {"d": DAY_MS, "h": 3_600_000, "m": 60_000, "": DAY_MS}


class ExpiryError(ValueError):
    pass


def parse_expiry(text: str | None) -> int | None:
    """`--expires` as a lifetime in ms: `90d`, `12h`, `30m`, a bare number of days, or
    `0`/`none`/`never` for a token that does not expire (None). Missing: the default."""
    if text is None:
        return DEFAULT_EXPIRY_DAYS * DAY_MS
    text = text.strip().lower()
    if text in ("0", "none", "never"):
        return None
    m = _SPAN.fullmatch(text)
    if not m or int(m.group(1)) == 0:
        raise ExpiryError(f"expiry {text!r}: a lifetime such as 90d, 12h or 30m, or 0/none for never")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def expires_at(created_ms: int, lifetime_ms: int | None) -> int | None:
    return None if lifetime_ms is None else created_ms + lifetime_ms


def usable(*, expires_ms: int | None, revoked_ms: int | None, now_ms: int) -> bool:
    return revoked_ms is None and (expires_ms is None or now_ms < expires_ms)


def due_touch(last_used_ms: int | None, now_ms: int) -> bool:
    """Whether this use should be recorded as the token's last use."""
    return last_used_ms is None or now_ms - last_used_ms >= TOUCH_EVERY_MS


def token_id(token_hash: str) -> str:
    return token_hash[:ID_CHARS]
