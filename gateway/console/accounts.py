"""Console accounts and login sessions, kept in the gateway's own database.

Functions over a Store rather than Store methods, so the console's tables stay out of
store/base.py. Passwords are argon2id hashes; a session cookie holds a random token whose
SHA-256 is the row id, so a stolen database cannot be replayed as cookies.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..auth import ROLES
from ..store import Store
from ..store.schema import MIGRATIONS

_hasher = PasswordHasher()
_dummy: list[str] = []


def _dummy_hash() -> str:
    """Verified against when the user does not exist, so a login takes as long either way."""
    if not _dummy:
        _dummy.append(_hasher.hash(secrets.token_hex(16)))
    return _dummy[0]


@dataclass
class User:
    name: str
    role: str
    unit: str = ""
    disabled: int = 0


def ensure_tables(store: Store) -> None:
    """Run migration 3's statements again (all IF NOT EXISTS): see schema.py."""
    with store._tx() as cur:
        for stmt in MIGRATIONS[2]:
            store._exec(cur, stmt)


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
    pw_hash = _hasher.hash(password)
    with store._tx() as cur:
        found = store._exec(cur, "SELECT 1 FROM console_users WHERE name = ?", (name,)).fetchone()
        if found:
            store._exec(cur, "UPDATE console_users SET role = ?, pw_hash = ?, unit = ?, disabled = 0 "
                             "WHERE name = ?", (role, pw_hash, unit, name))
            # A new password ends every session opened with the old one.
            store._exec(cur, "DELETE FROM console_sessions WHERE name = ?", (name,))
            return False
        store._exec(cur, "INSERT INTO console_users (name, role, pw_hash, unit, disabled, created_ms) "
                         "VALUES (?, ?, ?, ?, 0, ?)", (name, role, pw_hash, unit, now_ms))
        return True


def remove_user(store: Store, name: str) -> bool:
    with store._tx() as cur:
        store._exec(cur, "DELETE FROM console_sessions WHERE name = ?", (name,))
        return store._exec(cur, "DELETE FROM console_users WHERE name = ?", (name,)).rowcount > 0


def list_users(store: Store) -> list[User]:
    rows = store._rows("SELECT name, role, unit, disabled FROM console_users ORDER BY name")
    return [User(*r) for r in rows]


def get_user(store: Store, name: str) -> User | None:
    rows = store._rows("SELECT name, role, unit, disabled FROM console_users WHERE name = ?", (name,))
    return User(*rows[0]) if rows else None


def check_password(store: Store, name: str, password: str) -> User | None:
    rows = store._rows("SELECT pw_hash FROM console_users WHERE name = ? AND disabled = 0", (name,))
    try:
        _hasher.verify(rows[0][0] if rows else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    return get_user(store, name) if rows else None


def units(store: Store) -> list[str]:
    """Units an operator can dispatch to: responders' units and any used before."""
    rows = store._rows("SELECT unit FROM console_users WHERE unit != '' UNION "
                       "SELECT DISTINCT unit FROM incidents WHERE unit IS NOT NULL")
    return sorted({r[0] for r in rows if r[0]})


# --- sessions ---------------------------------------------------------------------------
def _sid(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(store: Store, name: str, now_ms: int, ttl_ms: int) -> tuple[str, str]:
    """Returns (cookie token, CSRF token)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with store._tx() as cur:
        store._exec(cur, "DELETE FROM console_sessions WHERE expires_ms < ?", (now_ms,))
        store._exec(cur, "INSERT INTO console_sessions (id, name, csrf, created_ms, expires_ms) "
                         "VALUES (?, ?, ?, ?, ?)", (_sid(token), name, csrf, now_ms, now_ms + ttl_ms))
    return token, csrf


def session(store: Store, token: str, now_ms: int) -> tuple[User, str] | None:
    """The logged-in user and the session's CSRF token, or None."""
    rows = store._rows("SELECT u.name, u.role, u.unit, u.disabled, s.csrf FROM console_sessions s "
                       "JOIN console_users u ON u.name = s.name "
                       "WHERE s.id = ? AND s.expires_ms >= ? AND u.disabled = 0", (_sid(token), now_ms))
    if not rows:
        return None
    *user, csrf = rows[0]
    return User(*user), csrf


def close_session(store: Store, token: str) -> None:
    with store._tx() as cur:
        store._exec(cur, "DELETE FROM console_sessions WHERE id = ?", (_sid(token),))
