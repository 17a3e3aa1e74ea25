"""The gateway's one web app: the API, the console under /console, shared auth and state.

build_app is the only place that wires them: the routes of api, api_ops and console/app,
the credentials backend (bearer token or session cookie, auth.py), the console's security
headers, and the error handlers (JSON for the API; pages or JSON for the console). Every
endpoint reads what it needs from `request.app.state`.
"""
from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from . import api, api_fleet, api_ops, api_sms, api_units, openapi
from .auth import CredentialsBackend, Principal, auth_error
from .body_limit import BodyLimit
from .config import Config
from .console import app as console
from .console.hub import Hub
from .console.security import BASE, SESSION_COOKIE, SecurityHeaders, csp
from .console.settings import ConsoleSettings
from .domain.lifecycle import Forbidden, TransitionError
from .models import Incident
from .store import Store


def _in_console(request: Request) -> bool:
    return request.url.path == BASE or request.url.path.startswith(BASE + "/")


async def http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        raise exc
    if _in_console(request):
        return await console.http_error(request, exc)
    if exc.status_code == 401:
        return JSONResponse({"error": "bearer token required"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


async def transition_error(request: Request, exc: Exception) -> Response:
    return await http_error(request, HTTPException(409, str(exc)))


async def forbidden(request: Request, exc: Exception) -> Response:
    return await http_error(request, HTTPException(403, str(exc)))


async def root(request: Request) -> Response:
    return RedirectResponse(f"{BASE}/", 303)


def build_app(*, store: Store, cfg: Config, console_settings: ConsoleSettings, hub: Hub,
              health: Callable[[], dict], on_change: Callable[[Incident], None] = lambda inc: None,
              on_requeue: Callable[[], None] = lambda: None) -> Starlette:
    """on_change: an operator or responder moved an incident (tell the button, wake the sinks);
    on_requeue: a dead letter was queued again (wake the forwarders)."""
    async def token_of(hashed: str) -> tuple[str, str, str] | None:
        return await run_in_threadpool(store.token, hashed)

    async def session_of(cookie: str) -> Principal | None:
        return await run_in_threadpool(app.state.sessions.principal, cookie)

    backend = CredentialsBackend(tokens=token_of, sessions=session_of, cookie=SESSION_COOKIE,
                                 skip_prefixes=("/healthz", "/metrics", f"{BASE}/static/"))
    app = Starlette(
        routes=[Route("/api/openapi.json", openapi.openapi_json),
                *api_ops.ROUTES, *api_units.ROUTES, *api_sms.ROUTES, *api_fleet.ROUTES, *api.ROUTES,  # ops first: /api/incidents/{id}.cap before /api/incidents/{id}
                Mount(BASE, routes=console.ROUTES), Route("/", root)],
        # The body cap first: nothing behind it reads more than it allows.
        middleware=[Middleware(BodyLimit),
                    Middleware(SecurityHeaders, policy=csp(console_settings.tile_url), prefix=BASE,
                               hsts=console_settings.secure_cookie),
                    Middleware(AuthenticationMiddleware, backend=backend, on_error=auth_error)],
        exception_handlers={HTTPException: http_error, TransitionError: transition_error, Forbidden: forbidden})
    app.state.store, app.state.cfg, app.state.hub, app.state.health = store, cfg, hub, health
    app.state.on_change, app.state.on_requeue = on_change, on_requeue
    console.prepare(app.state, store=store, settings=console_settings)
    return app
