"""The console's own guards: session cookies, CSRF tokens, the login rate limit, security headers."""
from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..auth import Principal
from ..store import Store
from ..timeutil import now_ms
from . import accounts

SESSION_COOKIE = "pbh_session"
LOGIN_CSRF_COOKIE = "pbh_login"
BASE = "/console"


class Sessions:
    """Opens and closes console sessions; reading them is auth.CredentialsBackend's job."""

    def __init__(self, store: Store, *, secure: bool, ttl_ms: int) -> None:
        self.store, self.secure, self.ttl_ms = store, secure, ttl_ms

    def principal(self, token: str) -> Principal | None:
        found = accounts.session(self.store, token, now_ms())
        if found is None:
            return None
        user, csrf = found
        return Principal(user.name, user.role, unit=user.unit, csrf=csrf)

    def set_cookie(self, response: Response, name: str, value: str, max_age: int | None) -> None:
        # HttpOnly: scripts never see it; Strict: no other site can make the browser send it.
        response.set_cookie(name, value, max_age=max_age, path=BASE, httponly=True,
                            samesite="strict", secure=self.secure)

    def login(self, response: Response, user: str) -> None:
        token, _ = accounts.open_session(self.store, user, now_ms(), self.ttl_ms)
        self.set_cookie(response, SESSION_COOKIE, token, self.ttl_ms // 1000)

    def logout(self, request: Request, response: Response) -> None:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            accounts.close_session(self.store, token)
        response.delete_cookie(SESSION_COOKIE, path=BASE)


def same_origin(request: Request) -> bool:
    """Browsers send Origin on every POST; one from another site is refused outright."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host")


def check_csrf(request: Request, expected: str, sent: object) -> None:
    """403 unless the request comes from our own pages with the session's token.

    `sent` is whatever the form or header carried: a file upload in its place is refused too."""
    if not same_origin(request) or not isinstance(sent, str) or not sent or not expected \
            or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise HTTPException(403, "csrf")


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


class LoginLimiter:
    """At most N failed logins per (client address, user name) and 4N per address in a window.

    In memory: a restart forgets, which only ever helps the rightful user; an attacker
    cannot restart the gateway.
    """

    def __init__(self, max_failures: int, window_s: int) -> None:
        self.max, self.window = max_failures, window_s
        self._fails: dict[tuple, deque] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple, now: float) -> deque:
        q = self._fails.setdefault(key, deque())
        while q and q[0] < now - self.window:
            q.popleft()
        return q

    def retry_after(self, ip: str, user: str) -> int:
        """Seconds to wait, or 0 when an attempt is allowed."""
        now = time.monotonic()
        with self._lock:
            waits = []
            for key, limit in (((ip, user.lower()), self.max), ((ip,), self.max * 4)):
                q = self._recent(key, now)
                if len(q) >= limit:
                    waits.append(int(q[0] + self.window - now) + 1)
            return max(waits, default=0)

    def failed(self, ip: str, user: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._fails) > 50_000:  # bounded memory under a spray of names
                self._fails.clear()
            self._recent((ip, user.lower()), now).append(now)
            self._recent((ip,), now).append(now)

    def succeeded(self, ip: str, user: str) -> None:
        with self._lock:
            self._fails.pop((ip, user.lower()), None)


def login_redirect(request: Request) -> RedirectResponse:
    nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{BASE}/login?next={nxt}", status_code=303)


def safe_next(value: str | None) -> str:
    """Only paths inside the console: never an open redirect."""
    if value and value.startswith(BASE + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return BASE + "/"


SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def csp(tile_url: str) -> str:
    img = "'self' data:"
    if tile_url:
        parts = urlsplit(tile_url.replace("{s}", "a"))
        if parts.scheme and parts.netloc:
            img += f" {parts.scheme}://{parts.netloc.replace('a.', '*.', 1) if '{s}' in tile_url else parts.netloc}"
    # No inline scripts at all; Leaflet sets element styles, hence style 'unsafe-inline'.
    return (f"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src {img}; "
            "connect-src 'self'; media-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


class SecurityHeaders:
    """Pure ASGI (not BaseHTTPMiddleware), so the live stream is never buffered.

    Only paths under `prefix` get the headers: the console's pages, never the JSON API."""

    def __init__(self, app: ASGIApp, *, policy: str, prefix: str = BASE) -> None:
        self.app, self.policy, self.prefix = app, policy, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _under(scope["path"], self.prefix):
            return await self.app(scope, receive, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                for k, v in {**SECURITY_HEADERS, "Content-Security-Policy": self.policy}.items():
                    if k.lower().encode() not in names:
                        headers.append((k.lower().encode(), v.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")
