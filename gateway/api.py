"""HTTP API for operators, responders and dispatch systems: incidents and their actions.

Module-level endpoints over `request.app.state` (store, health); every /api route needs a
bearer token (auth.needs), and actions go through actions.take like the console's.
"""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from . import actions
from .actions import MAX_NOTE, MAX_UNIT
from .auth import VIA_TOKEN, needs
from .domain.visibility import redact, sees
from .http_params import int_param
from .models import Incident


def _shown(inc: Incident, request: Request) -> dict:
    """An incident as the caller may read it: the holder's data only where its view allows."""
    d = inc.to_json()
    if "device" in d:
        d["device"] = redact(request.user.view, d["device"])
    return d


def healthz(request: Request) -> JSONResponse:
    h = request.app.state.health()
    return JSONResponse(h, status_code=200 if h["ok"] else 503)


def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@needs(via=VIA_TOKEN)
def incidents(request: Request) -> JSONResponse:
    q = request.query_params
    since = int_param(request, "since", 0)
    limit = min(int_param(request, "limit", 500, lo=0), 5000)
    items = request.app.state.store.list_incidents(since_ms=since, limit=limit, state=q.get("state"),
                                                   units=request.user.view.units)
    return JSONResponse({"incidents": [_shown(i, request) for i in items]})


@needs(via=VIA_TOKEN)
def incident(request: Request) -> JSONResponse:
    store = request.app.state.store
    inc = store.get_incident(request.path_params["id"])
    # Out of the caller's view reads exactly like no such incident: its existence is not told.
    if inc is None or not sees(request.user.view, inc.unit):
        raise HTTPException(404, "no such incident")
    return JSONResponse({**_shown(inc, request), "events": [e._asdict() for e in store.events(inc.id)],
                         "deliveries": [d._asdict() for d in store.deliveries(inc.id)],
                         "track": [p._asdict() for p in store.track(inc.id)]})


@needs(via=VIA_TOKEN)
def forwards(request: Request) -> JSONResponse:
    return JSONResponse({"sinks": [s._asdict() for s in request.app.state.store.forward_stats()]})


async def _body(request: Request) -> tuple[str | None, str | None]:
    """(note, unit) from an optional JSON object; 400 with the reason otherwise."""
    try:
        body = await request.json() if await request.body() else {}
    except ValueError:
        raise HTTPException(400, "body must be JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "body must be a JSON object")
    note, unit = body.get("note"), body.get("unit")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
        raise HTTPException(400, f"note is a string of at most {MAX_NOTE} characters")
    if unit is not None and (not isinstance(unit, str) or not 0 < len(unit) <= MAX_UNIT):
        raise HTTPException(400, f"unit is a string of 1 to {MAX_UNIT} characters")
    return note, unit


@needs(via=VIA_TOKEN)
async def act(request: Request) -> JSONResponse:
    action = request.path_params["action"]
    actions.permitted(action, request.user)
    note, unit = await _body(request)
    inc = await actions.take(request, request.path_params["id"], action, note=note, unit=unit)
    return JSONResponse(inc.to_json())


ROUTES: list[BaseRoute] = [
    Route("/healthz", healthz),
    Route("/metrics", metrics),
    Route("/api/incidents", incidents),
    Route("/api/incidents/{id}", incident),
    Route("/api/incidents/{id}/{action}", act, methods=["POST"]),
    Route("/api/forwards", forwards),
]
