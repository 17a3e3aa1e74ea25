"""domain/sla.py: the one percentile, the one inclusion rule, the verdicts and the window."""
from __future__ import annotations

import pytest

from gateway.domain import sla
from gateway.domain.sla import Times, by_kelurahan, counts, in_window, percentile, summarize

MIN = 60_000
NOW = 1_000 * MIN


def inc(*, scene: float | None, state: str | None = None, kind: str = "panic", press: int = 0,
        false_alarm: int = 0, ack: int | None = None) -> Times:
    on = None if scene is None else press + int(scene * MIN)
    return Times(kind=kind, state=state or ("on_scene" if on else "new"), press_ms=press, received_ms=press + 200,
                 acknowledged_ms=ack, dispatched_ms=None, on_scene_ms=on, false_alarm=false_alarm)


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert [percentile(values, q) for q in (0.5, 0.9, 0.99, 1.0)] == [50, 90, 99, 100]
    assert percentile([7], 0.99) == 7 and percentile([], 0.5) is None
    assert percentile([4, 1, 3, 2], 0.5) == 2  # an observed value, never interpolated (2.5)
    assert percentile([1.5, 0.5], 0.0) == 0.5


def test_percentile_refuses_percent_for_fraction():
    with pytest.raises(ValueError, match="fraction"):
        percentile([1, 2, 3], 50)


def test_inclusion_rule():
    assert counts(inc(scene=3))
    assert counts(inc(scene=None))  # still open: counts (pending or missed)
    assert not counts(inc(scene=None, state="cancelled"))  # cancelled before anyone arrived
    assert counts(inc(scene=4, state="cancelled", false_alarm=1))  # reached, then a false alarm
    assert not counts(inc(scene=3, kind="test"))
    assert counts(inc(scene=3, kind="test"), kinds=("test",))


def test_verdicts_and_share():
    incs = [inc(scene=4), inc(scene=10), inc(scene=10.01), inc(scene=None, press=NOW - 11 * MIN),
            inc(scene=None, press=NOW - 9 * MIN), inc(scene=None, state="cancelled")]
    s = summarize(incs, sla_s=600, now_ms=NOW)
    assert (s.incidents, s.n, s.cancelled) == (6, 5, 1)
    assert (s.within, s.missed, s.pending) == (2, 2, 1)  # exactly 10 min is within
    assert s.share_within == 0.5 and s.open == 5  # on scene is not closed yet
    assert s.steps["press_to_on_scene"].values == (4 * MIN, 10 * MIN, int(10.01 * MIN))
    assert s.p50 == 10 * MIN and s.p90 == int(10.01 * MIN)
    assert s.steps["press_to_received"].n == 5  # the same population for every step


def test_no_decided_incident_has_no_share():
    s = summarize([inc(scene=None, press=NOW)], sla_s=600, now_ms=NOW)
    assert s.share_within is None and s.pending == 1 and s.p50 is None


def test_per_kelurahan_and_unregistered():
    rows = [(inc(scene=3), "Kauman"), (inc(scene=12), "Kauman"), (inc(scene=5), ""), (inc(scene=2), "Samaan")]
    overall, per = by_kelurahan(rows, sla_s=600, now_ms=NOW)
    assert list(per) == [sla.UNREGISTERED, "Kauman", "Samaan"]
    assert per["Kauman"].share_within == 0.5 and overall.share_within == 0.75 and overall.n == 4


def test_window_is_by_received_time():
    assert in_window(100, 100, 200) and not in_window(200, 100, 200) and not in_window(99, 100, 200)


def test_from_json_matches_the_api_shape():
    t = Times.from_json({"kind": "panic", "state": "resolved", "press_ms": 1, "received_ms": 2,
                         "acknowledged_ms": 3, "dispatched_ms": None, "on_scene_ms": 9, "false_alarm": 0,
                         "escalated": 1})
    assert sla.step_ms(t, "press_to_on_scene") == 8 and sla.step_ms(t, "received_to_dispatched") is None
    assert t.escalated == 1
