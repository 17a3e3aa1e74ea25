"""`panic-sim compare`'s arithmetic and options (the runs themselves are tests/simulator's
live tests and `make` targets' business)."""
from __future__ import annotations

from pathlib import Path

from simulator import compare
from simulator.people import PeopleConfig
from simulator.run import RunOptions


def report(within: float | None, p90: float | None, *, n: int = 20) -> dict:
    stats = {"n": n, "p50": 10.0, "p90": 30.0, "p99": 40.0}
    return {"scenario": "klojen", "seed": 1, "speed": 10.0, "duration_s": 120.0, "devices": {"total": 60},
            "pressed": n, "lost": 0,
            "sla": {"overall": {"n": n, "on_scene": n, "within_10_min_pct": within, "p50_min": 4.0, "p90_min": p90}},
            "latency": {"received_to_acknowledged_s": stats, "received_to_dispatched_s": stats, "drive_min": stats},
            "dispatch": {"mode": "x"}}


def test_the_difference_is_recommend_minus_free():
    c = compare.summarise(report(60.0, 12.5), report(75.0, 9.25))
    assert c["difference"]["within_10_min_pp"] == 15.0 and c["difference"]["p90_min"] == -3.25
    assert "+15.0" not in compare.text(c) and "15.0 pp" in compare.text(c)
    none = compare.summarise(report(None, None, n=0), report(50.0, 8.0))
    assert none["difference"]["within_10_min_pp"] is None and "- pp" in compare.text(none)


def test_each_run_gets_its_rule_and_its_own_state():
    base = RunOptions(state=Path("/tmp/x"), people=PeopleConfig(override=0.0))
    free = compare.options_for(base, "free", override=0.3)
    rec = compare.options_for(base, "recommend", override=0.3)
    assert (free.people.dispatch, free.people.override, free.state) == ("free", 0.0, Path("/tmp/x/free"))
    assert (rec.people.dispatch, rec.people.override, rec.state) == ("recommend", 0.3, Path("/tmp/x/recommend"))
    assert base.people.dispatch == "free", "the base options are not changed"
