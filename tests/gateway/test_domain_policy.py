"""domain/policy.py: the false-alarm policy decided once."""
from __future__ import annotations

import pytest

from gateway.domain.policy import DAY_MS, FalseAlarmPolicy, decide


def test_defaults_are_the_programmes():
    p = FalseAlarmPolicy()
    assert (p.limit, p.window_ms, p.action) == (3, 30 * DAY_MS, "flag")
    assert p.since(31 * DAY_MS) == DAY_MS


def test_decision_at_the_limit():
    p = FalseAlarmPolicy(limit=3, window_ms=30 * DAY_MS, action="suspend")
    assert decide(p, 2) is None
    d = decide(p, 3)
    assert d is not None and d.action == "suspend" and d.count == 3
    assert d.reason == "3 false alarms within 30 days" and d.flag == "suspended: 3 false alarms within 30 days"
    assert decide(FalseAlarmPolicy(limit=2), 5).flag == "review: 5 false alarms within 30 days"


def test_no_policy_never_acts():
    assert decide(FalseAlarmPolicy(limit=0), 100) is None


def test_console_warns_before_the_policy_acts():
    p = FalseAlarmPolicy()
    assert not p.warns(1) and p.warns(2) and p.warns(3)


def test_bad_policy_is_refused():
    with pytest.raises(ValueError, match="flag, suspend"):
        FalseAlarmPolicy(action="ban")
    with pytest.raises(ValueError):
        FalseAlarmPolicy(window_ms=0)
