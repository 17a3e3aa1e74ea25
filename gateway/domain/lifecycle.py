"""The incident lifecycle: one table of actions, from-states, target state, roles and ack.

States run new -> acknowledged -> dispatched -> on_scene -> resolved; `cancelled` (the
button cancelled, or an operator marked a false alarm) may follow any state before
resolved. Both final states accept no action. The store applies `check` inside its
transaction; the API and the console list `allowed_actions`; the docs render `table()`.

Roles are ordered viewer < responder < operator < admin. A viewer only reads; a responder
in the field reports its own progress (en route, on scene, resolved); operators and admins
run the desk. Dispatch and marking a false alarm stay with the desk, because both change
what the whole city sees (a unit committed, a device's false-alarm count raised).

A field role acts only on incidents dispatched to its own unit (`in_scope`): a stolen
responder phone or token can report progress on its own unit's calls, never close the
city's. A field caller without a unit reaches no incident at all.
"""
from __future__ import annotations

from dataclasses import dataclass

# Incident states in order; cancelled may follow any state before resolved.
STAGES = ("new", "acknowledged", "dispatched", "on_scene", "resolved")
FINAL = ("resolved", "cancelled")
STATES = (*STAGES, "cancelled")
# Stage name carried in the device ack for each incident state.
ACK_STAGE = {"new": "received", "acknowledged": "acknowledged", "dispatched": "dispatched",
             "on_scene": "on_scene", "resolved": "resolved", "cancelled": "cancelled"}
ROLES = ("viewer", "responder", "operator", "admin")

_OPEN = frozenset(s for s in STATES if s not in FINAL)
_BEFORE_SCENE = frozenset(("new", "acknowledged", "dispatched"))
_DESK = frozenset(("operator", "admin"))
_ANYONE_ACTING = frozenset(("responder", "operator", "admin"))
# Roles whose actions, and whose view of incidents, are limited to their own unit's incidents.
FIELD_ROLES = frozenset(("responder",))


class TransitionError(Exception):
    """An action that does not fit the incident's state (HTTP 409)."""


class Forbidden(Exception):
    """The role may not take this action (HTTP 403)."""


@dataclass(frozen=True)
class Transition:
    action: str                  # acknowledge | verify | dispatch | en_route | on_scene | resolve | ...
    from_states: frozenset[str]  # states it may be applied in
    to_state: str | None         # None: records an event without a state change (en_route)
    roles: frozenset[str]        # roles allowed to take it
    ack_stage: str | None        # stage sent to the button, if any
    needs_unit: bool = False
    scoped: frozenset[str] = FIELD_ROLES  # roles that may take it only on their own unit's incidents


# In the order a desk uses them.
TRANSITIONS: dict[str, Transition] = {t.action: t for t in (
    Transition("acknowledge", frozenset(("new",)), "acknowledged", _DESK, "acknowledged"),
    # The desk's call-back to the holder, with its outcome (domain/verification.py): timed, no state change.
    Transition("verify", _OPEN, None, _DESK, None),
    # Dispatching again before arrival re-assigns the unit; dispatching stops the
    # receive->acknowledge clock too when nobody acknowledged first.
    Transition("dispatch", _BEFORE_SCENE, "dispatched", _DESK, "dispatched", needs_unit=True),
    Transition("en_route", frozenset(("dispatched",)), None, _ANYONE_ACTING, None),
    Transition("on_scene", _BEFORE_SCENE, "on_scene", _ANYONE_ACTING, "on_scene"),
    Transition("resolve", _OPEN, "resolved", _ANYONE_ACTING, "resolved"),
    Transition("false_alarm", _OPEN, "cancelled", _DESK, "cancelled"),
    # The holder's cancel from the button, confirmed by the desk after the call-back.
    Transition("confirm_cancel", _OPEN, "cancelled", _DESK, "cancelled"),
)}
ACTIONS: tuple[str, ...] = tuple(TRANSITIONS)


def can_act(role: str) -> bool:
    """Whether the role may take any action at all (a viewer may not)."""
    return any(role in t.roles for t in TRANSITIONS.values())


def in_scope(role: str, *, incident_unit: str | None, actor_unit: str) -> bool:
    """Whether a caller of `role` from `actor_unit` reaches an incident dispatched to
    `incident_unit`: the desk reaches every incident, a field role only its own unit's."""
    if role not in FIELD_ROLES:
        return True
    return bool(actor_unit) and incident_unit == actor_unit


def check(action: str, state: str, role: str, *, unit: str | None = None,
          incident_unit: str | None = None, actor_unit: str | None = None) -> Transition:
    """The transition for `action` in `state` by `role`; raise Forbidden or TransitionError.

    The role is checked first: a role that may never take the action learns that (403),
    whatever state the incident is in. `actor_unit` is the caller's unit ("" for none);
    None only for trusted local callers (seeding, tests of the table), which skip the scope."""
    t = TRANSITIONS.get(action)
    if t is None:
        raise TransitionError(f"unknown action {action!r}")
    if role not in t.roles:
        raise Forbidden(f"role {role} may not {action}")
    if actor_unit is not None and role in t.scoped and \
            not in_scope(role, incident_unit=incident_unit, actor_unit=actor_unit):
        raise Forbidden(f"role {role} acts only on incidents dispatched to its own unit")
    if state in FINAL:
        raise TransitionError(f"incident is {state}")
    if state not in t.from_states:
        if action == "en_route":
            raise TransitionError(f"not dispatched but {state}")
        raise TransitionError(f"already {state}")
    if t.needs_unit and not unit:
        raise TransitionError(f"{action} needs a unit")
    return t


def allowed_actions(state: str, role: str, *, incident_unit: str | None = None,
                    actor_unit: str | None = None) -> list[str]:
    """Actions that fit the role, the incident's state and (given `actor_unit`) the caller's
    unit, in the order a desk uses them."""
    return [t.action for t in TRANSITIONS.values() if state in t.from_states and role in t.roles
            and (actor_unit is None or role not in t.scoped
                 or in_scope(role, incident_unit=incident_unit, actor_unit=actor_unit))]


def table() -> list[dict[str, str]]:
    """One row per action, for docs/architecture.md."""
    return [{"action": t.action,
             "from": ", ".join(s for s in STATES if s in t.from_states),
             "to": t.to_state or "(no change; event only)",
             "roles": ", ".join(r for r in ROLES if r in t.roles),
             "ack": t.ack_stage or "—",
             "needs unit": "yes" if t.needs_unit else "no"} for t in TRANSITIONS.values()]
