"""Who may act: API tokens (only their SHA-256 is stored), console accounts (argon2id hashes
made by gateway/console/accounts.py) and console sessions (keyed by the SHA-256 of the cookie)."""
from __future__ import annotations

from typing import NamedTuple

from .core import StoreCore


class ConsoleUser(NamedTuple):
    name: str
    role: str
    unit: str = ""
    disabled: int = 0


class Token(NamedTuple):
    role: str
    name: str


_USER = "SELECT name, role, unit, disabled FROM console_users"


class AccountsMixin(StoreCore):
    # --- API tokens ------------------------------------------------------------------
    def add_token(self, token_hash: str, role: str, name: str, now_ms: int) -> None:
        with self._tx() as cur:
            self._exec(cur, "INSERT INTO tokens (hash, role, name, created_ms) VALUES (?, ?, ?, ?)",
                       (token_hash, role, name, now_ms))

    def token(self, token_hash: str) -> Token | None:
        rows = self._rows("SELECT role, name FROM tokens WHERE hash = ?", (token_hash,))
        return Token(*rows[0]) if rows else None

    # --- console accounts --------------------------------------------------------------
    def save_user(self, name: str, role: str, pw_hash: str, unit: str, now_ms: int) -> bool:
        """Create or update an account; True when it was created. A new password ends every
        session opened with the old one."""
        with self._tx() as cur:
            if self._exec(cur, "SELECT 1 FROM console_users WHERE name = ?", (name,)).fetchone():
                self._exec(cur, "UPDATE console_users SET role = ?, pw_hash = ?, unit = ?, disabled = 0 "
                                "WHERE name = ?", (role, pw_hash, unit, name))
                self._exec(cur, "DELETE FROM console_sessions WHERE name = ?", (name,))
                return False
            self._exec(cur, "INSERT INTO console_users (name, role, pw_hash, unit, disabled, created_ms) "
                            "VALUES (?, ?, ?, ?, 0, ?)", (name, role, pw_hash, unit, now_ms))
            return True

    def delete_user(self, name: str) -> bool:
        with self._tx() as cur:
            self._exec(cur, "DELETE FROM console_sessions WHERE name = ?", (name,))
            return self._exec(cur, "DELETE FROM console_users WHERE name = ?", (name,)).rowcount > 0

    def users(self) -> list[ConsoleUser]:
        return [ConsoleUser(*r) for r in self._rows(f"{_USER} ORDER BY name")]

    def user(self, name: str) -> ConsoleUser | None:
        rows = self._rows(f"{_USER} WHERE name = ?", (name,))
        return ConsoleUser(*rows[0]) if rows else None

    def password_hash(self, name: str) -> str | None:
        """The enabled account's password hash, None for no such (enabled) account."""
        rows = self._rows("SELECT pw_hash FROM console_users WHERE name = ? AND disabled = 0", (name,))
        return rows[0][0] if rows else None

    # --- console sessions --------------------------------------------------------------
    def open_session(self, sid: str, name: str, csrf: str, now_ms: int, ttl_ms: int) -> None:
        with self._tx() as cur:
            self._exec(cur, "DELETE FROM console_sessions WHERE expires_ms < ?", (now_ms,))
            self._exec(cur, "INSERT INTO console_sessions (id, name, csrf, created_ms, expires_ms) "
                            "VALUES (?, ?, ?, ?, ?)", (sid, name, csrf, now_ms, now_ms + ttl_ms))

    def session(self, sid: str, now_ms: int) -> tuple[ConsoleUser, str] | None:
        """The live session's enabled user and its CSRF token."""
        rows = self._rows("SELECT u.name, u.role, u.unit, u.disabled, s.csrf FROM console_sessions s "
                          "JOIN console_users u ON u.name = s.name "
                          "WHERE s.id = ? AND s.expires_ms >= ? AND u.disabled = 0", (sid, now_ms))
        if not rows:
            return None
        *user, csrf = rows[0]
        return ConsoleUser(*user), csrf

    def close_session(self, sid: str) -> None:
        with self._tx() as cur:
            self._exec(cur, "DELETE FROM console_sessions WHERE id = ?", (sid,))
