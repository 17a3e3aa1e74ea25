"""Units: the board with its map, the phone's position and status reports over the session,
and the recommendation panel the incident page includes."""
from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from ... import unit_reports
from ...auth import DESK, VIA_SESSION, needs
from ...domain.dispatch import COMMAND_CENTRE, SECTORS, STATUSES
from ...domain.visibility import sees
from ...models import Incident
from ...timeutil import now_ms
from ..render import render, tr, wants_json
from ..security import BASE, check_csrf

# What a responder sets by hand; the rest follows the incidents dispatched to the unit.
PHONE_STATUSES = ("available", "off_duty")


def _board(request: Request, sectors: tuple[str, ...] | None) -> dict[str, Any]:
    store, cfg = request.app.state.store, request.app.state.cfg
    at = now_ms()
    units = store.list_units(sectors=sectors)
    return {"now_ms": at, "stale_s": cfg.dispatch.stale_s, "units": [u.to_json(at) for u in units]}


def _offered(request: Request) -> tuple[str, ...]:
    """The sectors this desk may look at: all for the command centre; a Polsek's own and Polresta's."""
    own = request.user.view.sectors
    return SECTORS if own is None else (COMMAND_CENTRE, *sorted(own))


def _sector(request: Request) -> tuple[str, tuple[str, ...] | None]:
    """(the filter asked for, the sectors to list; None: every one)."""
    sector, offered = request.query_params.get("sector", ""), _offered(request)
    if sector and sector not in SECTORS:
        raise HTTPException(400, f"sector must be one of {', '.join(SECTORS)}")
    if sector:
        return sector, (sector,) if sector in offered else ()
    return "", None if offered == SECTORS else offered


@needs(via=VIA_SESSION, role=DESK)
async def units_page(request: Request) -> Response:
    sector, listed = _sector(request)
    board = await run_in_threadpool(_board, request, listed)
    counts = {s: sum(1 for u in board["units"] if u["status"] == s) for s in STATUSES}
    settings = request.app.state.settings
    boot = {"tile_url": settings.tile_url, "tile_attribution": settings.tile_attribution, "now": board["now_ms"],
            "words": tr(request).table("ustatus_"), "sector": sector, "stale_s": board["stale_s"]}
    return render(request, "units.html", board=board, sector=sector, sectors=_offered(request), counts=counts,
                  statuses=STATUSES, boot=boot)


@needs(via=VIA_SESSION, role=DESK)
async def units_json(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_board, request, _sector(request)[1]))


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None


@needs(via=VIA_SESSION, role="responder")
async def position_post(request: Request) -> Response:
    """The phone's Geolocation fix, posted by script with the session's CSRF token in a header."""
    check_csrf(request, request.user.csrf, request.headers.get("x-csrf-token"))
    unit = await unit_reports.report_position(request, request.path_params["call_sign"], await _json_body(request))
    return JSONResponse({"fix_ms": unit.fix_ms, "status": unit.status})


@needs(via=VIA_SESSION, role="responder")
async def status_post(request: Request) -> Response:
    form = await request.form()
    check_csrf(request, request.user.csrf, form.get("csrf") or request.headers.get("x-csrf-token"))
    status = str(form.get("status") or "")
    if status not in PHONE_STATUSES:
        raise HTTPException(400, f"status is one of {', '.join(PHONE_STATUSES)} here")
    unit = await unit_reports.set_status(request, request.path_params["call_sign"], status)
    if wants_json(request):
        return JSONResponse({"status": unit.status})
    return RedirectResponse(f"{BASE}/responder?ok={status}", 303)


async def recommendation_for(request: Request, inc: Incident) -> dict[str, Any] | None:
    """The panel's data for an incident the desk may dispatch; None when it has no position."""
    store = request.app.state.store
    units = await run_in_threadpool(store.list_units)
    rec = unit_reports.recommendation(request, inc, units, now_ms())
    return None if rec is None else rec.to_json()


async def phone_unit(request: Request, unit: str) -> dict[str, Any] | None:
    """The responder's own unit as its phone shows it; None when it is not in the registry."""
    if not unit:
        return None
    found = await run_in_threadpool(request.app.state.store.unit, unit)
    return None if found is None else found.to_json(now_ms())


@needs(via=VIA_SESSION)
async def track_json(request: Request) -> Response:
    """The incident's units on its map: where each unit sent to it went, and where the units are now."""
    store, user = request.app.state.store, request.user
    inc = await run_in_threadpool(store.get_incident, request.path_params["id"])
    if inc is None or not sees(user.view, inc.unit, kecamatan=(inc.device or {}).get("kecamatan", "")):
        raise HTTPException(404, "not_found")
    track = [p._asdict() for p in await run_in_threadpool(store.incident_track, inc.id)]
    listed = None if user.view.units is None else tuple(user.view.units)
    board = await run_in_threadpool(_board, request, None)
    units = [u for u in board["units"] if listed is None or u["call_sign"] in listed]
    return JSONResponse({"positions": track, "units": units, "stale_s": board["stale_s"], "unit": inc.unit})
