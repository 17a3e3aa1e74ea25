"""One incident: its card, timeline and map, and the desk's actions on it."""
from __future__ import annotations

from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from ... import actions
from ...actions import MAX_NOTE, MAX_UNIT
from ...auth import VIA_SESSION, needs
from ...domain.lifecycle import TransitionError, allowed_actions
from ...domain.verification import OUTCOMES
from ...domain.visibility import redact, sees
from ...timeutil import now_ms
from .. import queries
from ..render import render, sla_ms, tr, wants_json
from ..security import BASE, check_csrf, safe_next, small_form
from . import units as unit_pages


@needs(via=VIA_SESSION)
async def incident_page(request: Request) -> Response:
    store, settings, user = request.app.state.store, request.app.state.settings, request.user
    inc = await run_in_threadpool(store.get_incident, request.path_params["id"])
    # Out of the user's view reads exactly like no such incident.
    if inc is None or not sees(user.view, inc.unit, kecamatan=(inc.device or {}).get("kecamatan", "")):
        raise HTTPException(404, "not_found")
    inc.device = redact(user.view, inc.device)
    events = await run_in_threadpool(store.events, inc.id)
    deliveries = await run_in_threadpool(store.deliveries, inc.id)
    track = [p._asdict() for p in await run_in_threadpool(store.track, inc.id)]
    falses = (await run_in_threadpool(queries.false_alarms, store, [inc.dev], now_ms())).get(inc.dev, 0)
    timeline, prev = [], inc.press_ms
    for e in events:
        timeline.append({**e._asdict(), "since_press": e.at_ms - inc.press_ms, "step": e.at_ms - prev})
        prev = e.at_ms
    units = await run_in_threadpool(store.units)
    boot = {"incident": inc.to_json(), "tile_url": settings.tile_url,
            "tile_attribution": settings.tile_attribution, "words": tr(request).table(),
            "sla_ms": sla_ms(request), "now": now_ms(), "track": track}
    actions = allowed_actions(inc.state, user.role, incident_unit=inc.unit, actor_unit=user.unit)
    rec = await unit_pages.recommendation_for(request, inc) if "dispatch" in actions else None
    # The call-back and the cancel confirmation have their own panel (_verify.html); the
    # confirmation only once the holder asked to cancel.
    callback = [a for a in actions if a == "verify" or (a == "confirm_cancel" and inc.cancel_requested_ms)]
    actions = [a for a in actions if a not in ("verify", "confirm_cancel")]
    return render(request, "incident.html", inc=inc, dev=inc.device or {}, timeline=timeline,
                  latency=inc.latencies(), actions=actions, rec=rec, rec_missing="dispatch" in actions,
                  callback=callback, outcomes=OUTCOMES, deliveries=deliveries,
                  falses=falses, units=units, boot=boot, sla_ms=sla_ms(request),
                  ok=request.query_params.get("ok", ""), err=request.query_params.get("err", ""))


def _with(back: str, key: str, value: str) -> str:
    return f"{back}{'&' if '?' in back else '?'}{key}={value}"


@needs(via=VIA_SESSION)
async def act(request: Request) -> Response:
    form = await small_form(request)
    check_csrf(request, request.user.csrf, form.get("csrf") or request.headers.get("x-csrf-token"))
    inc_id, action = request.path_params["id"], request.path_params["action"]
    actions.permitted(action, request.user)
    note = str(form.get("note") or "").strip()[:MAX_NOTE] or None
    if action == "verify":
        # The outcome leads the note (domain/verification.py), whichever edge records it.
        note = f"{str(form.get('outcome') or '').strip()[:20]}: {note or ''}".strip()[:MAX_NOTE]
    unit = str(form.get("unit") or "").strip()[:MAX_UNIT] or None
    back = safe_next(str(form.get("next") or f"{BASE}/incidents/{inc_id}"))
    try:
        inc = await actions.take(request, inc_id, action, note=note, unit=unit)
    except TransitionError as exc:
        if wants_json(request):
            raise  # the app's handler answers 409
        return RedirectResponse(_with(back, "err", quote(str(exc)[:200])), 303)
    if wants_json(request):
        return JSONResponse({"state": inc.state, "id": inc.id})
    return RedirectResponse(_with(back, "ok", action), 303)
