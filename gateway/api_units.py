"""HTTP API for units: the registry, positions and statuses from the field, the recommendation
for an incident and the tracks kept for its record.

A responder's phone (or the simulator acting as one) reports with a responder token bound
to its unit; the desk may report for any unit. Every route needs a bearer token; the
shared rules are in unit_reports.py and domain/dispatch.py.
"""
from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from . import unit_reports
from .auth import DESK, VIA_TOKEN, needs
from .domain.dispatch import DispatchError, check_kind, check_position, check_sector
from .http_params import int_param
from .metrics import unit_reports_rejected
from .timeutil import now_ms

MAX_CALL_SIGN = 32


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        unit_reports_rejected.labels("malformed").inc()
        raise HTTPException(400, "body must be JSON") from None


@needs(via=VIA_TOKEN)
async def units(request: Request) -> JSONResponse:
    sector = request.query_params.get("sector")
    try:
        sectors = (check_sector(sector),) if sector else None
    except DispatchError as exc:
        raise HTTPException(400, str(exc)) from None
    items = await run_in_threadpool(request.app.state.store.list_units, sectors=sectors)
    at = now_ms()
    return JSONResponse({"now_ms": at, "stale_s": request.app.state.cfg.dispatch.stale_s,
                         "units": [u.to_json(at) for u in items]})


@needs(via=VIA_TOKEN, role="admin")
async def add_unit(request: Request) -> JSONResponse:
    body = await _json(request)
    if not isinstance(body, dict):
        raise HTTPException(400, "body must be a JSON object")
    call_sign, post = body.get("call_sign"), body.get("post", "")
    if not isinstance(call_sign, str) or not 0 < len(call_sign) <= MAX_CALL_SIGN or not isinstance(post, str):
        raise HTTPException(400, f"call_sign is a string of 1 to {MAX_CALL_SIGN} characters; post a string")
    try:
        kind, sector = check_kind(body.get("kind", "")), check_sector(body.get("sector", ""))
        lat6, lon6, _ = check_position(body.get("lat"), body.get("lon"))
    except DispatchError as exc:
        raise HTTPException(400, str(exc)) from None
    store = request.app.state.store
    if not await run_in_threadpool(lambda: store.add_unit(call_sign, kind=kind, post=post, sector=sector,
                                                          post_lat6=lat6, post_lon6=lon6, now_ms=now_ms())):
        raise HTTPException(409, f"unit {call_sign} exists")
    unit = await run_in_threadpool(store.unit, call_sign)
    return JSONResponse(unit.to_json(now_ms()), status_code=201)


@needs(via=VIA_TOKEN)
async def unit(request: Request) -> JSONResponse:
    found = await run_in_threadpool(request.app.state.store.unit, request.path_params["call_sign"])
    if found is None:
        raise HTTPException(404, "no such unit")
    return JSONResponse(found.to_json(now_ms()))


@needs(via=VIA_TOKEN, role="responder")
async def position(request: Request) -> JSONResponse:
    call_sign = request.path_params["call_sign"]
    unit_reports.may_speak_for(request.user, call_sign)
    found = await unit_reports.report_position(request, call_sign, await _json(request))
    return JSONResponse(found.to_json(now_ms()))


@needs(via=VIA_TOKEN, role="responder")
async def status(request: Request) -> JSONResponse:
    call_sign = request.path_params["call_sign"]
    unit_reports.may_speak_for(request.user, call_sign)
    body = await _json(request)
    found = await unit_reports.set_status(request, call_sign, body.get("status") if isinstance(body, dict) else None)
    return JSONResponse(found.to_json(now_ms()))


@needs(via=VIA_TOKEN, role="responder")
async def unit_track(request: Request) -> JSONResponse:
    call_sign = request.path_params["call_sign"]
    unit_reports.may_speak_for(request.user, call_sign)
    since = int_param(request, "since", 0)
    track = await run_in_threadpool(request.app.state.store.unit_track, call_sign, since)
    return JSONResponse({"call_sign": call_sign, "positions": [p._asdict() for p in track]})


@needs(via=VIA_TOKEN, role=DESK)
async def recommendation(request: Request) -> JSONResponse:
    store = request.app.state.store
    inc = await run_in_threadpool(store.get_incident, request.path_params["id"])
    if inc is None:
        raise HTTPException(404, "no such incident")
    everyone = await run_in_threadpool(store.list_units)
    rec = unit_reports.recommendation(request, inc, everyone, now_ms())
    if rec is None:
        raise HTTPException(409, "the incident has no position to rank units against")
    return JSONResponse({"incident": inc.id, **rec.to_json()})


@needs(via=VIA_TOKEN, role=DESK)
async def incident_track(request: Request) -> JSONResponse:
    store = request.app.state.store
    inc_id = request.path_params["id"]
    if await run_in_threadpool(store.get_incident, inc_id) is None:
        raise HTTPException(404, "no such incident")
    track = await run_in_threadpool(store.incident_track, inc_id)
    return JSONResponse({"incident": inc_id, "positions": [p._asdict() for p in track]})


ROUTES: list[BaseRoute] = [
    Route("/api/units", units),
    Route("/api/units", add_unit, methods=["POST"]),
    Route("/api/units/{call_sign}", unit),
    Route("/api/units/{call_sign}/position", position, methods=["POST"]),
    Route("/api/units/{call_sign}/status", status, methods=["POST"]),
    Route("/api/units/{call_sign}/track", unit_track),
    Route("/api/incidents/{id}/recommendation", recommendation),
    Route("/api/incidents/{id}/track", incident_track),
]
