"""Who is asking, for the API and the console alike.

One AuthenticationMiddleware backend reads either credential: a bearer token (the API's
scripts and dispatch systems; only its SHA-256 is stored) or the console's session cookie.
`request.user` is then a Principal (name, role, unit) and `request.auth.scopes` say how it
signed in (`token` or `session`) and what its role reaches. Endpoints declare what they
need with `needs(via=..., role=...)`, built on Starlette's `requires`: 401 when the
credential is missing or of the other kind, 403 when the role falls short.
"""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
    requires,
)
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

from .domain.lifecycle import ROLES
from .domain.visibility import View, view_for

VIA_TOKEN = "token"      # the scope of a bearer token: the API's routes
VIA_SESSION = "session"  # the scope of a console session cookie: the console's pages
DESK = "desk"            # the screens of the desk (queue, dashboard): every role but the field responder

# Each role reaches its own rank and every rank below it (viewer < responder < operator < admin).
ROLE_SCOPES: dict[str, frozenset[str]] = {
    role: frozenset(ROLES[:rank + 1]) | ({DESK} if role != "responder" else set())
    for rank, role in enumerate(ROLES)}

F = TypeVar("F", bound=Callable[..., Any])


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "pbt_" + secrets.token_urlsafe(32)


class Principal(BaseUser):
    """A signed-in caller. `csrf` is the session's form token (empty for bearer tokens)."""

    def __init__(self, name: str, role: str, *, unit: str = "", csrf: str = "", sector: str = "") -> None:
        self.name, self.role, self.unit, self.csrf = name, role, unit, csrf
        self.sector = sector  # a desk account's Polsek (domain/dispatch.py); "" or polresta: every sector

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.name

    @property
    def identity(self) -> str:
        return f"{self.role}:{self.name}"

    @property
    def view(self) -> View:
        """Which incidents and holder data this caller reads (domain/visibility.py)."""
        return view_for(self.role, self.unit, sector=self.sector)


# Look-ups the backend is given, so this module stays free of the store and the console.
TokenLookup = Callable[[str], Awaitable[tuple[str, str, str] | None]]     # hash -> (role, name, unit)
SessionLookup = Callable[[str], Awaitable[Principal | None]]              # cookie -> principal


class CredentialsBackend(AuthenticationBackend):
    """A bearer header wins over a cookie; neither present leaves the caller anonymous."""

    def __init__(self, *, tokens: TokenLookup, sessions: SessionLookup, cookie: str,
                 skip_prefixes: tuple[str, ...] = ()) -> None:
        self.tokens, self.sessions, self.cookie = tokens, sessions, cookie
        self.skip_prefixes = skip_prefixes  # static files and probes: no database read per request

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        if conn.url.path.startswith(self.skip_prefixes):
            return None
        header = conn.headers.get("authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthenticationError("bearer token required")
            found = await self.tokens(token_hash(token.strip()))
            if found is None:
                raise AuthenticationError("unknown token")
            role, name, unit = found
            return AuthCredentials([VIA_TOKEN, *sorted(ROLE_SCOPES.get(role, ()))]), Principal(name, role, unit=unit)
        cookie = conn.cookies.get(self.cookie)
        # Longer than any token we issue: not worth a database read.
        if cookie and len(cookie) <= 100:
            user = await self.sessions(cookie)
            if user is not None:
                return AuthCredentials([VIA_SESSION, *sorted(ROLE_SCOPES.get(user.role, ()))]), user
        return None


def auth_error(conn: HTTPConnection, exc: Exception) -> JSONResponse:
    """A malformed or unknown bearer token: refused before any route runs."""
    return JSONResponse({"error": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"})


def needs(*, via: str, role: str = "viewer") -> Callable[[F], F]:
    """Decorate an endpoint: signed in through `via` (else 401) with a role reaching `role` (else 403).

    `role` may also be DESK. Two stacked `requires` so the two failures keep their own codes."""
    def wrap(endpoint: F) -> F:
        inner = requires(role, status_code=403)(endpoint)
        return cast(F, requires(via, status_code=401)(inner))
    return wrap
