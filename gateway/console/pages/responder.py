"""The responder's phone: the incidents of one unit, with the field's three actions."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ...auth import VIA_SESSION, needs
from ...domain.lifecycle import allowed_actions
from ...timeutil import now_ms
from .. import queries
from ..render import render, sla_ms
from . import units

FIELD_ACTIONS = ("en_route", "on_scene", "resolve")


@needs(via=VIA_SESSION, role="responder")
async def responder_page(request: Request) -> Response:
    store, user = request.app.state.store, request.user
    # A responder sees its own unit; the desk may look at any unit's phone.
    unit = user.unit or (request.query_params.get("unit", "") if user.role != "responder" else "")
    incs = await run_in_threadpool(queries.for_unit, store, unit) if unit else []
    items = await run_in_threadpool(lambda: queries.cards(store, incs, now_ms(), view=user.view))
    for item in items:
        item["actions"] = [a for a in allowed_actions(item["state"], user.role, incident_unit=item["unit"],
                                                      actor_unit=user.unit) if a in FIELD_ACTIONS]
    phone = await units.phone_unit(request, unit)
    return render(request, "responder.html", unit=unit, items=items, now=now_ms(), sla_ms=sla_ms(request), phone=phone,
                  ok=request.query_params.get("ok", ""), err=request.query_params.get("err", ""))
