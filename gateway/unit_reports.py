"""Units from the web: the one path the API and the console share for a unit's position and
status, and the recommendation for an incident.

Who may speak for a unit: the desk (operator, admin) for any unit; a responder only for the
unit its token or console account is bound to. Bad input answers 400 with the reason and
counts in `panic_unit_reports_rejected`; the rules themselves are domain/dispatch.py's.
"""
from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request

from .auth import Principal
from .domain.dispatch import DispatchError, Recommendation, check_position, check_status, recommend, sector_of
from .metrics import unit_reports_rejected
from .models import Incident
from .store.units import Unit
from .timeutil import now_ms

DESK_ROLES = ("operator", "admin")


def may_speak_for(principal: Principal, call_sign: str) -> None:
    """403 unless the caller is the desk or the unit's own responder."""
    if principal.role in DESK_ROLES:
        return
    if principal.role == "responder" and principal.unit and principal.unit == call_sign:
        return
    unit_reports_rejected.labels("forbidden").inc()
    raise HTTPException(403, f"{principal.role} {principal.name} may not report for unit {call_sign}")


def _rejected(reason: str, detail: str) -> HTTPException:
    unit_reports_rejected.labels(reason).inc()
    return HTTPException(400, detail)


async def report_position(request: Request, call_sign: str, body: Any) -> Unit:
    """Record a fix {lat, lon, acc?} for the unit, at the gateway's clock (a phone's may be off)."""
    may_speak_for(request.user, call_sign)
    if not isinstance(body, dict):
        raise _rejected("malformed", "body must be a JSON object {lat, lon, acc}")
    try:
        lat6, lon6, acc = check_position(body.get("lat"), body.get("lon"), body.get("acc", 0))
    except DispatchError as exc:
        raise _rejected("bad_position", str(exc)) from None
    unit = await run_in_threadpool(request.app.state.store.report_position, call_sign,
                                   lat6=lat6, lon6=lon6, acc=acc, at_ms=now_ms())
    if unit is None:
        raise _rejected("unknown_unit", f"no unit {call_sign}")
    return unit


async def set_status(request: Request, call_sign: str, status: object) -> Unit:
    may_speak_for(request.user, call_sign)
    try:
        check_status(status if isinstance(status, str) else "")
    except DispatchError as exc:
        raise _rejected("bad_status", str(exc)) from None
    unit = await run_in_threadpool(request.app.state.store.set_unit_status, call_sign, status, now_ms())
    if unit is None:
        raise _rejected("unknown_unit", f"no unit {call_sign}")
    return unit


def incident_sector(inc: Incident) -> str:
    return sector_of((inc.device or {}).get("kecamatan", ""))


def where(inc: Incident) -> tuple[int, int] | None:
    """The incident's position: the alert's fix, else the button's registered address."""
    if inc.lat6 or inc.lon6:
        return inc.lat6, inc.lon6
    dev = inc.device or {}
    if dev.get("lat6") or dev.get("lon6"):
        return dev["lat6"], dev["lon6"]
    return None


def recommendation(request: Request, inc: Incident, units: list[Unit], at_ms: int) -> Recommendation | None:
    """The units to offer for `inc` (with its device's public fields); None without a position."""
    pos = where(inc)
    if pos is None:
        return None
    cfg = request.app.state.cfg
    return recommend([u.view() for u in units], lat6=pos[0], lon6=pos[1], sector=incident_sector(inc),
                     press_ms=inc.press_ms, now_ms=at_ms, sla_s=cfg.sla_s, cfg=cfg.dispatch)
