"""The dispatch console's routes and error pages, and the shared objects its pages read.

Server-rendered pages and a little vanilla JS. The pages live in console/pages/, one module
per screen, and read what they share from `request.app.state` (store, settings, hub,
sessions, limiter, templates, on_change); web.build_app puts the console and the API in one
app, so every change goes through the same actions.take as the REST API, and the button's
ack and the webhooks are exactly the same whichever way an operator acts.
"""
from __future__ import annotations

from starlette.datastructures import State
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..store import Store
from . import accounts, render
from .pages import dashboard, devices, fleet, incident, login, queue, responder, units
from .security import LoginLimiter, Sessions, login_redirect
from .settings import ConsoleSettings

ROUTES: list[BaseRoute] = [
    Route("/", queue.queue_page),
    Route("/login", login.login_page),
    Route("/login", login.login_post, methods=["POST"]),
    Route("/logout", login.logout, methods=["POST"]),
    Route("/lang/{lang}", login.set_lang),
    Route("/queue.json", queue.queue_json),
    Route("/events", queue.stream),
    Route("/incidents/{id}", incident.incident_page),
    Route("/incidents/{id}/{action}", incident.act, methods=["POST"]),
    Route("/responder", responder.responder_page),
    Route("/devices", devices.devices_page),
    Route("/dashboard", dashboard.dashboard_page),
    Route("/geo.json", devices.geo_json),
    Route("/units", units.units_page),
    Route("/fleet", fleet.fleet_page),
    Route("/units.json", units.units_json),
    Route("/units/{call_sign}/position", units.position_post, methods=["POST"]),
    Route("/units/{call_sign}/status", units.status_post, methods=["POST"]),
    Route("/incidents/{id}/track.json", units.track_json),
    Mount("/static", app=StaticFiles(directory=str(render.HERE / "static")), name="static"),
]


def prepare(state: State, *, store: Store, settings: ConsoleSettings) -> None:
    """Put the console's shared objects on the app's state."""
    accounts.ensure_tables(store)
    state.settings = settings
    state.sessions = Sessions(store, secure=settings.secure_cookie, ttl_ms=settings.session_hours * 3600_000)
    state.limiter = LoginLimiter(settings.login_max_failures, settings.login_window_s)
    state.templates = render.templates(settings)


async def http_error(request: Request, exc: HTTPException) -> Response:
    """Not logged in: the login page for a browser's GET, 401 for scripts, streams and posts.
    Other errors: JSON for scripts, a page in the user's language for people."""
    if exc.status_code == 401:
        if request.method != "GET" or render.wants_json(request) or request.url.path.endswith("/events"):
            return JSONResponse({"error": "login required"}, status_code=401)
        return login_redirect(request)
    if render.wants_json(request) or request.headers.get("x-csrf-token") is not None:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    t = render.tr(request)
    msg = {403: t("forbidden"), 404: t("not_found")}.get(exc.status_code, str(exc.detail))
    if exc.detail == "csrf":
        msg = t("login_expired")
    return render.render(request, "error.html", status=exc.status_code, message=msg, code=exc.status_code)
