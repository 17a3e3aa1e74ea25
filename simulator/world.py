"""The physical world as a plan: what happens when, decided up front from a seed.

Presses arrive as a Poisson process at a rate per *simulated* hour, plus bursts (a
city-wide event: many RT heads press within minutes). Around them: pocket bumps that must
not trigger, false alarms, WiFi outages, broker restarts, power cuts, batteries running
down, GPS with and without a fix.

Time: the plan is in wall seconds from the start of the run. Intervals of the physical
world (time between presses, how long until a holder cancels) are simulated time divided
by `speed`; network outages, power-off times and button holds are real wall time, because
the firmware and the network run in real time and must not be fooled about them.

A neighbourhood power cut is the exception among outages: PLN takes a whole kelurahan off
the grid for an hour, and an hour of real time would not fit a run, so its length is
simulated time divided by `speed`, like the gaps between presses. What the firmware must
get right inside it (the modem's attach, the SMS network's delay, the acks) still runs in
real time, so a cut of a simulated hour at x20 is three real minutes in which every
cellular and SMS delivery is measured unscaled. Buttons keep running through it (mains
buttons carry a backup cell): only the home routers of that kelurahan go dark.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from .scenario import Button, carrier_settings


@dataclass
class WorldConfig:
    # Defaults keep Klojen's 11 units busy but not saturated outside the burst; the burst
    # is meant to saturate them (that is what a city-wide event does).
    rate_per_h: float = 30.0          # presses per simulated hour, Poisson
    bursts: list[tuple[float, int, float]] = field(default_factory=lambda: [(0.5, 15, 120.0)])
    # (fraction of the run, presses, within simulated seconds)
    bumps_per_h: float = 60.0         # pocket bumps per simulated hour (short holds, 1-2 taps)
    drill_share: float = 0.05         # presses that are drills: `trigger test`, kind "test"
    holder_cancel_share: float = 0.08  # false alarms the RT head cancels (5 s hold)
    operator_false_share: float = 0.05  # false alarms the operator closes after calling back
    triple_share: float = 0.2         # buttons configured for triple press instead of a long hold
    gps_share: float = 0.3            # buttons with a GPS receiver ...
    gps_nofix_share: float = 0.3      # ... of which this share has no fix when pressed
    drain_share: float = 0.05         # buttons whose battery runs down during the run
    outages_per_h: float = 12.0       # WiFi outages per simulated hour (each 5-25 s wall)
    outage_press_share: float = 0.5   # outages during which the holder presses
    power_cut_press_share: float = 0.05  # presses followed by a power cut before the ack
    power_cuts_per_h: float = 6.0     # power cuts on idle buttons per simulated hour
    broker_restarts: int = 1          # broker restarts, evenly spread (own stack only)
    broker_down_s: float = 3.0
    neighbourhood_cuts: int = 0       # PLN cuts: every home router of one kelurahan down
    neighbourhood_cut_sim_s: float = 3600.0  # each, simulated seconds (wall = / speed)
    # Presses per simulated hour on the dark kelurahan's buttons while it is dark, beside the
    # city's own presses; None: the scenario's rate (an hour of crime does not stop for PLN,
    # and a dark street has reasons to press).
    cut_press_rate_per_h: float | None = None
    modem_share: float = 0.0          # buttons fitted with an LTE modem (cellular data and SMS)
    # The phone network (scenario.carrier_settings): coverage per kelurahan, attach time, SMS
    # delay and loss. Real time, never scaled: the firmware waits on it in real time.
    carrier: dict = field(default_factory=lambda: carrier_settings({}))


@dataclass(order=True)
class Happening:
    at: float                       # wall seconds from the start
    what: str = field(compare=False)
    args: dict = field(default_factory=dict, compare=False)


@dataclass
class Profile:
    """A button's hardware and habits, stable per device id."""
    trigger: str = "long"           # long | triple
    gps: str | None = None          # None, "fix" or "nofix"
    drains: bool = False
    modem: bool = False             # an LTE modem on the UART
    coverage: bool = False          # ... with cellular signal where the button hangs
    attach_ms: int = 0              # ... and this long from power-on to registration
    data: bool = False              # ... and a working data call (else SMS only)


def coverage_of(carrier: dict, kelurahan: str) -> float:
    cov = carrier["coverage"]
    return cov.get(kelurahan, cov.get("*", 1.0))


def profiles(buttons: list[Button], cfg: WorldConfig, seed: int) -> dict[str, Profile]:
    out = {}
    for b in buttons:
        r = random.Random(f"{seed}:{b.id}")
        gps = None
        if r.random() < cfg.gps_share:
            gps = "nofix" if r.random() < cfg.gps_nofix_share else "fix"
        p = Profile("triple" if r.random() < cfg.triple_share else "long", gps, r.random() < cfg.drain_share)
        # Own draws: fitting modems leaves the rest of every profile as it was.
        m = random.Random(f"{seed}:{b.id}:modem")
        if m.random() < cfg.modem_share:
            c = cfg.carrier
            p.modem = True
            p.coverage = m.random() < coverage_of(c, b.kelurahan)
            attach = m.lognormvariate(math.log(c["attach_median_s"]), c["attach_sigma"])
            p.attach_ms = round(1000 * min(c["attach_max_s"], attach))
            p.data = p.coverage and m.random() < c["data_share"]
        out[b.id] = p
    return out


def _poisson(rng: random.Random, rate_per_h: float, sim_s: float) -> list[float]:
    """Arrival times in simulated seconds."""
    out: list[float] = []
    t = 0.0
    if rate_per_h <= 0:
        return out
    while True:
        t += rng.expovariate(rate_per_h / 3600.0)
        if t >= sim_s:
            return out
        out.append(t)


def plan(cfg: WorldConfig, duration_s: float, speed: float, seed: int,
         can_restart_broker: bool = True, kelurahan: list[str] | None = None) -> list[Happening]:
    """`kelurahan`: the names a neighbourhood cut may pick from (the run's buttons'); without
    them the plan has no neighbourhood cuts."""
    rng = random.Random(seed)
    # The first seconds are kept quiet so every button is linked before the world starts.
    lead = min(5.0, duration_s * 0.05)
    span = max(1.0, duration_s - lead)
    sim_s = span * speed
    out: list[Happening] = []

    def wall(sim_t: float) -> float:
        return lead + sim_t / speed

    def press_args(burst: bool = False) -> dict:
        u = rng.random()
        a: dict[str, Any] = {"kind": "panic", "false": None, "burst": burst}
        if u < cfg.drill_share and not burst:
            a["kind"] = "test"
        elif u < cfg.drill_share + cfg.holder_cancel_share:
            a["false"] = "holder"
            a["cancel_after_sim_s"] = rng.uniform(20, 90)   # holder realises and cancels
        elif u < cfg.drill_share + cfg.holder_cancel_share + cfg.operator_false_share:
            a["false"] = "operator"
        a["power_cut"] = a["false"] is None and rng.random() < cfg.power_cut_press_share
        a["power_off_s"] = rng.uniform(2, 6)
        a["hold_s"] = rng.uniform(0.3, 1.2)     # held on beyond the trigger threshold
        return a

    for t in _poisson(rng, cfg.rate_per_h, sim_s):
        out.append(Happening(wall(t), "press", press_args()))
    for frac, n, within in cfg.bursts:
        start = frac * sim_s
        for _ in range(n):
            out.append(Happening(wall(min(sim_s, start + rng.uniform(0, within))), "press", press_args(True)))
    for t in _poisson(rng, cfg.bumps_per_h, sim_s):
        out.append(Happening(wall(t), "bump", {"taps": rng.choice((1, 1, 2)), "hold_s": rng.uniform(0.05, 1.2)}))
    for t in _poisson(rng, cfg.outages_per_h, sim_s):
        out.append(Happening(wall(t), "wifi_outage", {"off_s": rng.uniform(5, 25),
                                                       "press": rng.random() < cfg.outage_press_share,
                                                       "press_args": press_args()}))
    for t in _poisson(rng, cfg.power_cuts_per_h, sim_s):
        out.append(Happening(wall(t), "power_cut", {"off_s": rng.uniform(2, 10)}))
    if can_restart_broker:
        for i in range(cfg.broker_restarts):
            at = wall(sim_s * (i + 1) / (cfg.broker_restarts + 1) * 0.8)
            out.append(Happening(at, "broker_restart", {"down_s": cfg.broker_down_s}))
            # Someone presses while the broker is down: the alert must wait in flash.
            out.append(Happening(at + cfg.broker_down_s * 0.3, "press", press_args()))
    out += neighbourhood_cuts(cfg, lead, span, speed, seed, kelurahan or [], press_args)
    # Batteries run down in steps over the run (each step a `battery N` to the board).
    steps = 5
    for i in range(1, steps + 1):
        out.append(Happening(lead + span * i / (steps + 1), "battery", {"step": i, "steps": steps}))
    out.sort()
    return out


def neighbourhood_cuts(cfg: WorldConfig, lead: float, span: float, speed: float, seed: int,
                       kelurahan: list[str], press_args) -> list[Happening]:
    """Each cut: `router_cut` at its start, `router_restore` at its end (clipped to the end of
    the world, so the drain never waits on a dark kelurahan), and Poisson presses on that
    kelurahan's buttons in between. Cuts are spread evenly from a tenth of the run on, a
    kelurahan at most once; their own seeded draws leave the rest of the plan unchanged."""
    if cfg.neighbourhood_cuts <= 0 or not kelurahan:
        return []
    rng = random.Random(f"{seed}:neighbourhood")
    picks = rng.sample(sorted(kelurahan), min(cfg.neighbourhood_cuts, len(kelurahan)))
    wall_len = cfg.neighbourhood_cut_sim_s / speed
    rate = cfg.rate_per_h if cfg.cut_press_rate_per_h is None else cfg.cut_press_rate_per_h
    out = []
    for i, kel in enumerate(picks):
        start = lead + span * (0.1 + 0.8 * i / len(picks))
        end = min(start + wall_len, lead + span)
        out.append(Happening(start, "router_cut", {"kelurahan": kel, "cut": i + 1,
                                                   "sim_s": cfg.neighbourhood_cut_sim_s}))
        out.append(Happening(end, "router_restore", {"kelurahan": kel, "cut": i + 1}))
        # Presses begin once the routers are surely down (a second on) and stop before the
        # power returns, so each one was made in the dark.
        for t in _poisson(rng, rate, max(0.0, end - start - 2.0) * speed):
            a = press_args()
            a.update(kelurahan=kel, cut=i + 1, power_cut=False)
            out.append(Happening(start + 1.0 + t / speed, "press", a))
    return out
