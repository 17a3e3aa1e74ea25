"""The console's own guards: session cookies, CSRF tokens, the login rate limit, security headers."""
from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from urllib.parse import urlsplit

from starlette.datastructures import FormData
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
        # secure: `[console] secure_cookie`, Secure even when the request looks like plain HTTP.
        self.store, self.secure, self.ttl_ms = store, secure, ttl_ms

    def secure_for(self, request: Request) -> bool:
        """Secure whenever the browser speaks HTTPS to us: TLS at uvicorn, or a trusted proxy's
        X-Forwarded-Proto (uvicorn sets the scheme only for `[api] trusted_proxies`)."""
        return self.secure or request.url.scheme == "https"

    def principal(self, token: str) -> Principal | None:
        found = accounts.session(self.store, token, now_ms())
        if found is None:
            return None
        user, csrf = found
        return Principal(user.name, user.role, unit=user.unit, csrf=csrf, sector=user.sector)

    def set_cookie(self, request: Request, response: Response, name: str, value: str, max_age: int | None) -> None:
        # HttpOnly: scripts never see it; Strict: no other site can make the browser send it.
        response.set_cookie(name, value, max_age=max_age, path=BASE, httponly=True,
                            samesite="strict", secure=self.secure_for(request))

    def login(self, request: Request, response: Response, user: str) -> None:
        token, _ = accounts.open_session(self.store, user, now_ms(), self.ttl_ms)
        self.set_cookie(request, response, SESSION_COOKIE, token, self.ttl_ms // 1000)

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


MAX_FIELD = 16 * 1024


async def small_form(request: Request) -> FormData:
    """The console's forms carry a few short fields (the longest a 2000-character note):
    parts, fields and files are capped before the parser keeps them (bodies as a whole
    are capped by gateway/body_limit.py). An over-long field is refused 413, as an oversize
    body is: which of the two limits trips first depends on how the socket split the body."""
    try:
        return await request.form(max_files=1, max_fields=16, max_part_size=MAX_FIELD)
    except HTTPException as exc:
        if exc.status_code == 400 and "exceeded maximum size" in exc.detail:
            raise HTTPException(413, exc.detail) from exc
        raise


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


class LoginLimiter:
    """Failed logins within a window: at most N per (client address, user name), 4N per
    address, and 10N per user name from anywhere (a password spray across many addresses
    still stops, while one address alone cannot lock a colleague out).

    The address is the connection's peer, or what a configured trusted proxy says
    (`[api] trusted_proxies`); a client's own X-Forwarded-For is never believed. Memory is
    bounded by `max_keys`: keys expire one by one with their window, and past the bound the
    least recently failed key goes first; the table is never cleared as a whole, so a spray
    of names cannot reset an attacker's own count. In memory: a restart forgets, which only
    ever helps the rightful user; an attacker cannot restart the gateway.
    """

    ADDRESS_FACTOR = 4
    USER_FACTOR = 10

    def __init__(self, max_failures: int, window_s: int, *, max_keys: int = 50_000) -> None:
        self.max, self.window, self.max_keys = max_failures, window_s, max_keys
        # key -> times of its latest failures, ordered by the key's latest failure
        self._fails: OrderedDict[tuple, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _limits(self, ip: str, user: str) -> tuple[tuple[tuple, int], ...]:
        name = user.lower()
        return ((("pair", ip, name), self._limit_of("pair")), (("address", ip), self._limit_of("address")),
                (("user", name), self._limit_of("user")))

    def _limit_of(self, kind: str) -> int:
        return self.max * {"pair": 1, "address": self.ADDRESS_FACTOR, "user": self.USER_FACTOR}[kind]

    def _expire(self, now: float) -> None:
        """Drop keys whose latest failure left the window, oldest first. Past the bound, a key
        that holds nobody back goes before one that does, so a spray of new names or
        addresses cannot free a limited address or name."""
        while self._fails:
            key, q = next(iter(self._fails.items()))
            if q[-1] >= now - self.window:
                break
            del self._fails[key]
        while len(self._fails) > self.max_keys:
            victim = next((k for k, q in self._fails.items() if len(q) < self._limit_of(k[0])), None)
            del self._fails[victim if victim is not None else next(iter(self._fails))]

    def retry_after(self, ip: str, user: str) -> int:
        """Seconds to wait, or 0 when an attempt is allowed."""
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            waits = []
            for key, limit in self._limits(ip, user):
                q = self._fails.get(key)
                recent = [t for t in q if t >= now - self.window] if q else []
                if len(recent) >= limit:
                    waits.append(int(recent[-limit] + self.window - now) + 1)
            return max(waits, default=0)

    def failed(self, ip: str, user: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key, limit in self._limits(ip, user):
                q = self._fails.pop(key, None) or deque(maxlen=limit)
                q.append(now)
                self._fails[key] = q  # to the end: the most recently failed
            self._expire(now)

    def succeeded(self, ip: str, user: str) -> None:
        """The pair's count ends; the address's and the name's stand, so a login of one's
        own between guesses buys no further guesses."""
        with self._lock:
            self._fails.pop(("pair", ip, user.lower()), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._fails)


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


HSTS = "max-age=31536000"  # a year: browsers then never try plain HTTP for this host


class SecurityHeaders:
    """Pure ASGI (not BaseHTTPMiddleware), so the live stream is never buffered.

    Only paths under `prefix` get the page headers: the console's pages, never the JSON API.
    HSTS goes on every response served over HTTPS (TLS or a trusted proxy's
    X-Forwarded-Proto), and on all of them with `hsts` (`[console] secure_cookie`)."""

    def __init__(self, app: ASGIApp, *, policy: str, prefix: str = BASE, hsts: bool = False) -> None:
        self.app, self.policy, self.prefix, self.hsts = app, policy, prefix, hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        extra: dict[str, str] = {}
        if _under(scope["path"], self.prefix):
            extra.update({**SECURITY_HEADERS, "Content-Security-Policy": self.policy})
        if self.hsts or scope.get("scheme") == "https":
            extra["Strict-Transport-Security"] = HSTS
        if not extra:
            return await self.app(scope, receive, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                for k, v in extra.items():
                    if k.lower().encode() not in names:
                        headers.append((k.lower().encode(), v.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")
