"""Who may act: API tokens (only their SHA-256 is stored), console accounts (argon2id hashes
made by gateway/console/accounts.py) and console sessions (keyed by the SHA-256 of the cookie)."""
from __future__ import annotations

from typing import NamedTuple

from ..domain import tokens as token_rules
from ..timeutil import now_ms as clock_ms
from .core import StoreCore


class ConsoleUser(NamedTuple):
    name: str
    role: str
    unit: str = ""
    disabled: int = 0
    sector: str = ""  # a desk account's Polsek; "" or polresta: the command centre (every sector)


class Token(NamedTuple):
    role: str
    name: str
    unit: str = ""  # a responder token's unit; empty for the desk's


class TokenInfo(NamedTuple):
    """A token as `token list` shows it: its id is a prefix of its hash, never the token."""
    id: str
    role: str
    name: str
    unit: str
    created_ms: int
    expires_ms: int | None
    revoked_ms: int | None
    last_used_ms: int | None


_USER = "SELECT name, role, unit, disabled, sector FROM console_users"


class AccountsMixin(StoreCore):
    # --- API tokens ------------------------------------------------------------------
    def add_token(self, token_hash: str, role: str, name: str, now_ms: int, *, unit: str = "",
                  expires_ms: int | None = None) -> None:
        """expires_ms None: never expires (an explicit choice; the CLI gives a default expiry)."""
        with self._tx() as cur:
            self._exec(cur, "INSERT INTO tokens (hash, role, name, created_ms, unit, expires_ms) "
                            "VALUES (?, ?, ?, ?, ?, ?)", (token_hash, role, name, now_ms, unit, expires_ms))

    def token(self, token_hash: str, now_ms: int | None = None) -> Token | None:
        """The usable token with this hash: None when unknown, expired or revoked. Its use is
        recorded at most once a minute (domain/tokens.py), so a busy script costs no write per request."""
        now = clock_ms() if now_ms is None else now_ms
        rows = self._rows("SELECT role, name, unit, expires_ms, revoked_ms, last_used_ms FROM tokens WHERE hash = ?",
                          (token_hash,))
        if not rows:
            return None
        role, name, unit, expires_ms, revoked_ms, last_used_ms = rows[0]
        if not token_rules.usable(expires_ms=expires_ms, revoked_ms=revoked_ms, now_ms=now):
            return None
        if token_rules.due_touch(last_used_ms, now):
            with self._tx() as cur:
                # Conditional: of two requests in the same minute, one writes.
                self._exec(cur, "UPDATE tokens SET last_used_ms = ? WHERE hash = ? "
                                "AND (last_used_ms IS NULL OR last_used_ms <= ?)",
                           (now, token_hash, now - token_rules.TOUCH_EVERY_MS))
        return Token(role, name, unit)

    def tokens(self) -> list[TokenInfo]:
        """Every token, newest first, by id (never the hash itself)."""
        rows = self._rows("SELECT hash, role, name, unit, created_ms, expires_ms, revoked_ms, last_used_ms "
                          "FROM tokens ORDER BY created_ms DESC, hash")
        return [TokenInfo(token_rules.token_id(h), *rest) for h, *rest in rows]

    def revoke_token(self, token_id: str, now_ms: int) -> list[str]:
        """Revoke the token whose id (hash prefix) is `token_id`; returns the ids it matched,
        and revokes only when exactly one did (an ambiguous prefix changes nothing)."""
        if not token_id or any(c not in "0123456789abcdef" for c in token_id):
            return []
        with self._tx() as cur:
            hashes = [h for (h,) in self._exec(cur, "SELECT hash FROM tokens WHERE hash LIKE ?",
                                               (token_id + "%",)).fetchall()]
            if len(hashes) == 1:
                self._exec(cur, "UPDATE tokens SET revoked_ms = ? WHERE hash = ? AND revoked_ms IS NULL",
                           (now_ms, hashes[0]))
        return [token_rules.token_id(h) for h in hashes]

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

    def set_user_sector(self, name: str, sector: str) -> bool:
        """Put a console account in a sector (domain/dispatch.py SECTORS; "" for none)."""
        with self._tx() as cur:
            return self._exec(cur, "UPDATE console_users SET sector = ? WHERE name = ?", (sector, name)).rowcount > 0

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
        rows = self._rows("SELECT u.name, u.role, u.unit, u.disabled, u.sector, s.csrf FROM console_sessions s "
                          "JOIN console_users u ON u.name = s.name "
                          "WHERE s.id = ? AND s.expires_ms >= ? AND u.disabled = 0", (sid, now_ms))
        if not rows:
            return None
        *user, csrf = rows[0]
        return ConsoleUser(*user), csrf

    def close_session(self, sid: str) -> None:
        with self._tx() as cur:
            self._exec(cur, "DELETE FROM console_sessions WHERE id = ?", (sid,))
