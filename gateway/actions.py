"""Taking an incident action from the web: the one path the API and the console share.

Whether an action fits is lifecycle's rule and the store applies it inside its transaction;
this module only turns the request into that call and tells the button and the sinks
afterwards (app.state.on_change), so either edge acts exactly alike.
"""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request

from .auth import Principal
from .domain.lifecycle import ACTIONS, TRANSITIONS
from .domain.visibility import sees
from .models import Incident
from .timeutil import now_ms

# The longest note and unit name an action may carry, from either edge.
MAX_NOTE = 2000
MAX_UNIT = 64


def permitted(action: str, principal: Principal) -> None:
    """404 for an action that does not exist, 403 for one the role may never take.

    Checked before the body is read, so a viewer learns 403 whatever it sent."""
    t = TRANSITIONS.get(action)
    if t is None:
        raise HTTPException(404, f"no action {action!r}; one of {', '.join(ACTIONS)}")
    if principal.role not in t.roles:
        raise HTTPException(403, f"role {principal.role} may not {action}")


async def take(request: Request, inc_id: str, action: str, *, note: str | None, unit: str | None) -> Incident:
    """Apply it; lifecycle.TransitionError (409) and Forbidden (403) propagate to the app's handlers.

    The caller's unit goes with it: a responder acts only on its own unit's incidents."""
    principal: Principal = request.user
    store = request.app.state.store
    if principal.view.sectors is not None:
        # A Polsek's desk acts in its own sector only; out of it reads like no such incident.
        seen = await run_in_threadpool(store.get_incident, inc_id)
        if seen is None or not sees(principal.view, seen.unit, kecamatan=(seen.device or {}).get("kecamatan", "")):
            raise HTTPException(404, "no such incident")
    try:
        inc = await run_in_threadpool(store.transition, inc_id, action, principal.identity, now_ms(),
                                      note=note, unit=unit, role=principal.role, actor_unit=principal.unit)
    except LookupError:
        raise HTTPException(404, "no such incident") from None
    request.app.state.on_change(inc)
    return inc
