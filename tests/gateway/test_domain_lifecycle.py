"""The lifecycle table: every action x state x role, against the rules written out by hand."""
from __future__ import annotations

import pytest

from gateway.domain import lifecycle
from gateway.domain.lifecycle import ACTIONS, STATES, Forbidden, TransitionError, allowed_actions, check

ROLES = ("viewer", "responder", "operator", "admin")
# Written out independently of lifecycle.TRANSITIONS: action -> (states it fits, roles that may, target).
EXPECTED = {
    "acknowledge": ({"new"}, {"operator", "admin"}, "acknowledged"),
    "verify": ({"new", "acknowledged", "dispatched", "on_scene"}, {"operator", "admin"}, None),
    "dispatch": ({"new", "acknowledged", "dispatched"}, {"operator", "admin"}, "dispatched"),
    "en_route": ({"dispatched"}, {"responder", "operator", "admin"}, None),
    "on_scene": ({"new", "acknowledged", "dispatched"}, {"responder", "operator", "admin"}, "on_scene"),
    "resolve": ({"new", "acknowledged", "dispatched", "on_scene"}, {"responder", "operator", "admin"}, "resolved"),
    "false_alarm": ({"new", "acknowledged", "dispatched", "on_scene"}, {"operator", "admin"}, "cancelled"),
    "confirm_cancel": ({"new", "acknowledged", "dispatched", "on_scene"}, {"operator", "admin"}, "cancelled"),
}


def test_actions_in_desk_order():
    assert ACTIONS == ("acknowledge", "verify", "dispatch", "en_route", "on_scene", "resolve", "false_alarm",
                       "confirm_cancel")
    assert STATES == ("new", "acknowledged", "dispatched", "on_scene", "resolved", "cancelled")


@pytest.mark.parametrize("action", list(EXPECTED))
@pytest.mark.parametrize("state", list(STATES))
@pytest.mark.parametrize("role", ROLES)
def test_every_action_state_and_role(action, state, role):
    states, roles, target = EXPECTED[action]
    unit = "sabhara-1"
    if role not in roles:
        with pytest.raises(Forbidden):
            check(action, state, role, unit=unit)
        assert action not in allowed_actions(state, role)
    elif state not in states:
        with pytest.raises(TransitionError):
            check(action, state, role, unit=unit)
        assert action not in allowed_actions(state, role)
    else:
        t = check(action, state, role, unit=unit)
        assert t.to_state == target
        assert action in allowed_actions(state, role)


def test_final_states_take_nothing_and_say_so():
    for state in ("resolved", "cancelled"):
        assert allowed_actions(state, "admin") == []
        with pytest.raises(TransitionError, match=f"incident is {state}"):
            check("resolve", state, "admin")


def test_dispatch_needs_a_unit_and_errors_are_clear():
    with pytest.raises(TransitionError, match="needs a unit"):
        check("dispatch", "new", "operator")
    with pytest.raises(TransitionError, match="already acknowledged"):
        check("acknowledge", "acknowledged", "operator")
    with pytest.raises(TransitionError, match="not dispatched but new"):
        check("en_route", "new", "responder")
    with pytest.raises(TransitionError, match="unknown action"):
        check("teleport", "new", "admin")
    with pytest.raises(Forbidden, match="role viewer may not acknowledge"):
        check("acknowledge", "new", "viewer")
    assert allowed_actions("dispatched", "responder") == ["en_route", "on_scene", "resolve"]
    assert lifecycle.can_act("responder") and not lifecycle.can_act("viewer")


def test_ack_stages_follow_the_target_state():
    for t in lifecycle.TRANSITIONS.values():
        assert t.ack_stage == (lifecycle.ACK_STAGE[t.to_state] if t.to_state else None)


def test_table_renders_one_row_per_action():
    rows = lifecycle.table()
    assert [r["action"] for r in rows] == list(ACTIONS)
    dispatch = rows[2]
    assert dispatch == {"action": "dispatch", "from": "new, acknowledged, dispatched", "to": "dispatched",
                        "roles": "operator, admin", "ack": "dispatched", "needs unit": "yes"}
