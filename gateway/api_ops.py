"""API routes for city operations: devices with health, the SLA report, CAP, dead letters.

Module-level endpoints over `request.app.state` (store, cfg, on_requeue); bearer tokens only.
"""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from . import report
from .auth import VIA_TOKEN, needs
from .cap import to_cap
from .domain.health import link_problem_words
from .domain.visibility import redact, redact_registry, sees
from .health import health_json
from .http_params import INT64_MAX, int_param
from .store.health import DeviceHealth
from .timeutil import now_ms


def _with_link_problem(row: DeviceHealth | None, *, suspended: bool) -> dict:
    h = health_json(row)
    return {**h, "link_problem": link_problem_words(h, suspended=suspended)}


def _matches(row: DeviceHealth | None, want: str) -> bool:
    """Whether the device is in health `want` or has the condition (a true field) `want`."""
    h = health_json(row)
    return h["health"] == want or bool(h.get(want))


@needs(via=VIA_TOKEN)
def devices(request: Request) -> JSONResponse:
    store = request.app.state.store
    table = store.device_health()
    want = request.query_params.get("health")
    out = []
    for d in store.list_devices():
        h = table.get(d.id)
        if want and not _matches(h, want):
            continue
        out.append({**redact_registry(request.user.view, d.public()),
                    "health": _with_link_problem(h, suspended=d.status == "suspended")})
    return JSONResponse({"devices": out})


@needs(via=VIA_TOKEN)
def device(request: Request) -> JSONResponse:
    store, cfg = request.app.state.store, request.app.state.cfg
    dev = request.path_params["id"]
    d = store.get_device(dev)
    if d is None:
        raise HTTPException(404, "no such device")
    window = cfg.false_alarm_window_s * 1000
    h = store.device_health(dev).get(dev)
    return JSONResponse({**redact_registry(request.user.view, d.public()),
                         "health": _with_link_problem(h, suspended=d.status == "suspended"),
                         "false_alarms": store.false_alarms(dev, now_ms() - window),
                         "events": [e._asdict() for e in store.device_events(dev)]})


@needs(via=VIA_TOKEN)
def incident_cap(request: Request) -> Response:
    cfg = request.app.state.cfg
    inc = request.app.state.store.get_incident(request.path_params["id"])
    if inc is None or not sees(request.user.view, inc.unit):
        raise HTTPException(404, "no such incident")
    xml = to_cap(inc.to_json(), redact(request.user.view, inc.device), sender=cfg.cap_sender, utc_offset_min=cfg.utc_offset_min)
    return Response(xml, media_type="application/cap+xml")


@needs(via=VIA_TOKEN)
def sla_report(request: Request) -> JSONResponse:
    cfg = request.app.state.cfg
    q = request.query_params
    now = now_ms()
    try:
        since = report.parse_since(q.get("since"), now)
        until = report.parse_since(q.get("until"), now) if q.get("until") else now + 1
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    kinds = tuple(k for k in q.get("kind", "panic").split(",") if k in ("panic", "test"))
    if not kinds:
        raise HTTPException(400, "kind is panic, test or panic,test")
    rep, _ = report.build(request.app.state.store, since_ms=since, until_ms=until, now_ms=now, sla_s=cfg.sla_s,
                          kinds=kinds)
    return JSONResponse(rep)


@needs(via=VIA_TOKEN)
def dead(request: Request) -> JSONResponse:
    limit = min(int_param(request, "limit", 500, lo=0), 5000)
    rows = request.app.state.store.dead_forwards(request.query_params.get("sink"), limit)
    return JSONResponse({"dead": [r._asdict() for r in rows]})


# Requeueing a dead letter sends it again to a city system: the desk's call, not a viewer's.
@needs(via=VIA_TOKEN, role="operator")
async def requeue(request: Request) -> JSONResponse:
    try:
        fid = int(request.path_params["fid"])
    except ValueError:
        fid = -1
    if not 0 <= fid <= INT64_MAX:  # no row can have it: the store never sees it
        raise HTTPException(404, "no such dead letter")
    if not await run_in_threadpool(request.app.state.store.retry_forward, fid, now_ms()):
        raise HTTPException(404, "no such dead letter")
    request.app.state.on_requeue()
    return JSONResponse({"requeued": fid})


ROUTES: list[BaseRoute] = [
    Route("/api/devices", devices),
    Route("/api/devices/{id}", device),
    # Before /api/incidents/{id}, which would otherwise take "inc-….cap" as an id.
    Route("/api/incidents/{id}.cap", incident_cap),
    Route("/api/report", sla_report),
    Route("/api/forwards/dead", dead),
    Route("/api/forwards/dead/{fid}/retry", requeue, methods=["POST"]),
]
