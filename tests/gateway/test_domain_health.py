"""domain/health.py: a status merged into health, silence, and the operator's word for it."""
from __future__ import annotations

from gateway.domain import health

KW = dict(heartbeat_s=60, silent_factor=2.5, low_battery_pct=20, backlog_min=1)
UNKNOWN = {"dev": "d", "state": "unknown", "health": "unknown", "low_battery": 0, "backlog": 0, "fw": None,
           "boot": None, "up": None, "batt": None, "rssi": None, "outbox": None, "heartbeat_s": None,
           "last_status_ms": None, "silent_at_ms": None, "changed_ms": 0}


def test_merge_status_sets_health_and_conditions():
    h = health.merge_status(UNKNOWN, {"state": "online", "batt": 15, "outbox": 2}, 1000, **KW)
    assert h["health"] == "online" and h["low_battery"] == 1 and h["backlog"] == 1
    assert h["silent_at_ms"] == 1000 + 150_000 and h["heartbeat_s"] == 60
    assert health.changed(UNKNOWN, h)
    again = health.merge_status(h, {"state": "online", "batt": 14, "outbox": 2}, 2000, **KW)
    assert not health.changed(h, again)  # only "last heard" moved


def test_the_will_keeps_the_last_counters_and_clears_backlog():
    h = health.merge_status(UNKNOWN, {"state": "online", "batt": 50, "outbox": 3, "hb": 30}, 0, **KW)
    off = health.merge_status(h, {"state": "offline"}, 10, **KW)
    assert off["outbox"] == 3 and off["batt"] == 50 and off["backlog"] == 0 and off["heartbeat_s"] == 30


def test_overdue_only_for_live_devices():
    h = health.merge_status(UNKNOWN, {"state": "sleeping"}, 0, **KW)
    assert not health.overdue(h, 150_000) and health.overdue(h, 150_001)
    assert health.silenced(h)["health"] == "silent"
    off = health.merge_status(UNKNOWN, {"state": "offline"}, 0, **KW)
    assert not health.overdue(off, 10**9)


def test_label_order():
    assert health.label(None) == "unknown"
    assert health.label({"health": "online", "state": "online"}, suspended=True) == "suspended"
    assert health.label({"health": "silent", "state": "online", "low_battery": 1}) == "silent"
    assert health.label({"health": "online", "state": "online", "low_battery": 1}) == "low_battery"
    assert health.label({"health": "online", "state": "online"}) == "online"
    assert health.label({"health": "unknown", "state": "unknown"}) == "unknown"
