"""The world's plan: seeded, at the configured rates, time compressed by --speed, and
pocket bumps that the firmware's own gesture logic never turns into an alert."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

import protocol
from simulator import scenario
from simulator.mpcompat import firmware_module
from simulator.world import WorldConfig, plan, profiles

QUIET = WorldConfig(rate_per_h=0.0, bursts=[], bumps_per_h=0.0, outages_per_h=0.0, power_cuts_per_h=0.0,
                    broker_restarts=0)
# 205 wall seconds: 5 quiet lead seconds, then 200 s; at speed 18 that is one simulated hour.
DURATION, SPEED, LEAD = 205.0, 18.0, 5.0


def of(p, what):
    return [h for h in p if h.what == what]


def test_same_seed_same_plan_other_seed_other_plan():
    cfg = WorldConfig()
    a, b = plan(cfg, DURATION, SPEED, seed=7), plan(cfg, DURATION, SPEED, seed=7)
    assert [(h.at, h.what, h.args) for h in a] == [(h.at, h.what, h.args) for h in b]
    c = plan(cfg, DURATION, SPEED, seed=8)
    assert [h.at for h in a] != [h.at for h in c]
    assert [h.at for h in a] == sorted(h.at for h in a)


@pytest.mark.parametrize("rate", [60.0, 400.0])
def test_presses_follow_the_rate(rate):
    # One simulated hour: a Poisson count with mean `rate` and sd sqrt(rate); 4 sd is far
    # outside what a working generator gives for any seed, and far inside a wrong rate.
    counts = [len(of(plan(replace(QUIET, rate_per_h=rate), DURATION, SPEED, seed=s), "press"))
              for s in range(5)]
    mean = sum(counts) / len(counts)
    assert abs(mean - rate) < 4 * (rate / len(counts)) ** 0.5, counts
    assert len(set(counts)) > 1, "seeds must change the count"


def test_presses_stay_inside_the_run_after_the_quiet_lead():
    p = of(plan(replace(QUIET, rate_per_h=400.0), DURATION, SPEED, seed=1), "press")
    assert all(LEAD <= h.at < DURATION for h in p)


def test_speed_compresses_simulated_intervals_into_wall_time():
    # The same simulated hour at twice the speed in half the wall time: the same draws, and
    # every happening twice as close to the start (after the quiet lead).
    cfg = replace(QUIET, rate_per_h=100.0, bumps_per_h=50.0)
    slow = plan(cfg, DURATION, SPEED, seed=3)
    fast = plan(cfg, LEAD + (DURATION - LEAD) / 2, SPEED * 2, seed=3)
    slow_p = [h for h in slow if h.what in ("press", "bump")]
    fast_p = [h for h in fast if h.what in ("press", "bump")]
    assert [h.what for h in slow_p] == [h.what for h in fast_p]
    for s, f in zip(slow_p, fast_p, strict=True):
        assert f.at - LEAD == pytest.approx((s.at - LEAD) / 2)
        # Holds are real wall time: the firmware runs in real time and must not be fooled.
        assert f.args["hold_s"] == s.args["hold_s"]


def test_bursts_put_their_presses_in_their_window():
    cfg = replace(QUIET, bursts=[(0.5, 12, 120.0)])
    burst = [h for h in of(plan(cfg, DURATION, SPEED, seed=2), "press") if h.args["burst"]]
    assert len(burst) == 12
    start = LEAD + 0.5 * (DURATION - LEAD)
    assert all(start <= h.at <= start + 120.0 / SPEED + 1e-9 for h in burst)
    assert all(h.args["kind"] == "panic" for h in burst), "a burst is never a drill"


def test_power_cuts_outages_and_broker_restarts_as_configured():
    cfg = replace(QUIET, power_cuts_per_h=120.0, outages_per_h=120.0, broker_restarts=3, broker_down_s=4.0)
    p = plan(cfg, DURATION, SPEED, seed=4)
    cuts, outages, restarts = of(p, "power_cut"), of(p, "wifi_outage"), of(p, "broker_restart")
    assert 60 < len(cuts) < 180 and 60 < len(outages) < 180
    assert all(2 <= h.args["off_s"] <= 10 for h in cuts)
    assert all(5 <= h.args["off_s"] <= 25 for h in outages)
    assert len(restarts) == 3 and all(h.args["down_s"] == 4.0 for h in restarts)
    # Someone presses while each restart has the broker down.
    presses = {round(h.at, 6) for h in of(p, "press")}
    assert all(round(r.at + 4.0 * 0.3, 6) in presses for r in restarts)
    assert len(of(p, "battery")) == 5
    no_broker = plan(cfg, DURATION, SPEED, seed=4, can_restart_broker=False)
    assert not of(no_broker, "broker_restart")


def test_press_shares_drills_false_alarms_and_power_cuts():
    cfg = replace(QUIET, rate_per_h=4000.0, power_cut_press_share=0.1)
    args = [h.args for h in of(plan(cfg, DURATION, SPEED, seed=5), "press")]
    n = len(args)
    kinds = Counter(a["kind"] for a in args)
    false = Counter(a["false"] for a in args)
    assert kinds["test"] / n == pytest.approx(cfg.drill_share, abs=0.02)
    assert false["holder"] / n == pytest.approx(cfg.holder_cancel_share, abs=0.02)
    assert false["operator"] / n == pytest.approx(cfg.operator_false_share, abs=0.02)
    cut = [a for a in args if a["power_cut"]]
    assert all(a["false"] is None for a in cut), "a false alarm is never also a power-cut test"
    assert len(cut) / n == pytest.approx(0.1 * (1 - cfg.holder_cancel_share - cfg.operator_false_share), abs=0.03)
    assert all(20 <= a["cancel_after_sim_s"] <= 90 for a in args if a["false"] == "holder")


def _replay(g, taps: int, hold_s: float) -> list:
    """A bump as simulator/run.py plays it: `taps` holds of hold_s, 0.3 s apart, on the
    firmware's monotonic ms clock (the tick wrap is the clock's job, tested in test_mpcompat)."""
    events, t = [], 10_000
    for _ in range(taps):
        events.append(g.edge(True, t))
        for step in range(0, int(hold_s * 1000), 10):
            events.append(g.tick(t + step))
        t += int(hold_s * 1000)
        events.append(g.edge(False, t))
        t += 300
    return [e for e in events if e]


@pytest.mark.parametrize("mode", ["long", "triple"])
def test_bumps_never_become_alerts_under_the_firmware_gesture(mode):
    gesture = firmware_module("gesture")
    d = protocol.DEVICE_DEFAULTS
    bumps = of(plan(replace(QUIET, bumps_per_h=2000.0), DURATION, SPEED, seed=6), "bump")
    assert len(bumps) > 1000
    for b in bumps:
        g = gesture.Gesture(mode, d["long_press_ms"], d["triple_window_ms"], d["cancel_hold_ms"])
        assert _replay(g, b.args["taps"], b.args["hold_s"]) == [], b.args


@pytest.mark.parametrize("mode", ["long", "triple"])
def test_a_press_as_planned_does_trigger(mode):
    # The control for the bump test: the same replay with a real press pattern fires once.
    gesture = firmware_module("gesture")
    d = protocol.DEVICE_DEFAULTS
    g = gesture.Gesture(mode, d["long_press_ms"], d["triple_window_ms"], d["cancel_hold_ms"])
    taps, hold = (1, d["long_press_ms"] / 1000 + 0.3) if mode == "long" else (3, 0.1)
    assert _replay(g, taps, hold) == [gesture.TRIGGER]


def test_profiles_are_stable_per_button_and_follow_the_shares():
    buttons = scenario.buttons(scenario.load("klojen"))
    cfg = WorldConfig()
    a, b = profiles(buttons, cfg, seed=1), profiles(buttons, cfg, seed=1)
    assert a == b
    assert a != profiles(buttons, cfg, seed=2)
    n = len(buttons)
    assert sum(p.trigger == "triple" for p in a.values()) / n == pytest.approx(cfg.triple_share, abs=0.06)
    assert sum(p.gps is not None for p in a.values()) / n == pytest.approx(cfg.gps_share, abs=0.06)
    # A button keeps its profile when the fleet around it changes.
    assert profiles(buttons[:10], cfg, seed=1) == {k: a[k] for k in [x.id for x in buttons[:10]]}
