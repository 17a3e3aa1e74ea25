"""The desk and the units as a discrete-event model in simulated seconds: no firmware, no
broker, no gateway, so thousands of presses take well under a second.

It plays exactly what people.py plays against the real gateway, with the same config
(PeopleConfig), the same random models (units.lognormal, traffic_kmh, drive_s) and the same
unit choice (units.pick_free_text, units.pick_recommended, which calls the gateway's own
ranking in gateway.domain.dispatch):
  press -> an operator (FIFO, `operators` of them) acknowledges after a lognormal reaction
  and decides after a lognormal delay -> picks a unit, or the call waits for the first unit
  to free -> the unit turns out (lognormal), drives the straight line x road factor at a
  lognormal traffic speed -> on scene -> handles (lognormal) -> free where it is, driving
  back to its post at the median speed (available on the way).
Left out, because they are real time and take milliseconds against minutes: the network,
broker, gateway and webhook path (press -> received). Drills and false alarms are left out
too: they take an operator's time but never a unit's.

Each press draws its own delays from a generator seeded by (seed, press number), so two
runs that differ only in the dispatch rule or the staffing see the same presses, the same
human delays and the same traffic (common random numbers: their difference is the rule's).
Units report their position every `fix_interval_s` (each unit at its own phase), and the
recommendation sees only the last report, as the gateway does.
"""
from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.domain import dispatch as rules
from gateway.domain.sla import SLA_S, percentile

from .geo import haversine_m
from .people import PeopleConfig
from .scenario import Button, Post
from .units import Unit, drive_s, lognormal, make_units, pick_free_text, pick_recommended, traffic_kmh


@dataclass(frozen=True)
class Call:
    n: int
    t: float              # press, simulated seconds from the start
    lat: float
    lon: float
    sector: str
    kelurahan: str


@dataclass
class Outcome:
    call: Call
    on_scene_s: float | None = None     # press -> on scene; None: never reached
    unit: str | None = None
    rank: int = 0                       # which offered unit was sent (0 = the first)
    waited_for_unit: bool = False


def calls(buttons: Sequence[Button], *, rate_per_h: float, n: int, seed: int) -> list[Call]:
    """`n` presses, Poisson in time at `rate_per_h`, each from a button drawn at random (every
    RT head equally likely)."""
    if rate_per_h <= 0 or n < 0 or not buttons:
        raise ValueError("calls need a positive rate, n >= 0 and some buttons")
    rng = random.Random(f"calls:{seed}")
    out, t = [], 0.0
    for i in range(n):
        t += rng.expovariate(rate_per_h / 3600.0)
        b = rng.choice(buttons)
        out.append(Call(i, t, b.lat6 / 1e6, b.lon6 / 1e6, rules.sector_of(b.kecamatan), b.kelurahan))
    return out


@dataclass
class _Draws:
    """One press's human and traffic randomness, drawn in a fixed order."""
    ack: float
    decide: float
    turnout: float
    kmh: float
    handle: float
    rng: random.Random        # what remains: the operator's override draws

    @classmethod
    def of(cls, cfg: PeopleConfig, seed: int, n: int) -> _Draws:
        rng = random.Random(f"press:{seed}:{n}")
        return cls(lognormal(rng, cfg.ack_median_s, cfg.ack_sigma),
                   lognormal(rng, cfg.dispatch_median_s, cfg.dispatch_sigma),
                   lognormal(rng, cfg.turnout_median_s, cfg.turnout_sigma),
                   traffic_kmh(rng, cfg.speed_kmh, cfg.traffic_sigma),
                   lognormal(rng, cfg.on_scene_median_s, cfg.on_scene_sigma), rng)


@dataclass
class _Desk:
    cfg: PeopleConfig
    units: list[Unit]
    seed: int
    clock: float = 0.0
    free_operators: int = 0
    op_queue: deque = field(default_factory=deque)
    unit_queue: deque = field(default_factory=deque)
    events: list = field(default_factory=list)
    seq: itertools.count = field(default_factory=itertools.count)
    draws: dict[int, _Draws] = field(default_factory=dict)
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    phase: dict[str, float] = field(default_factory=dict)

    def at(self, t: float, what: str, *args) -> None:
        heapq.heappush(self.events, (t, next(self.seq), what, args))

    def run(self) -> None:
        while self.events:
            self.clock, _, what, args = heapq.heappop(self.events)
            getattr(self, f"_{what}")(*args)

    # --- the desk ----------------------------------------------------------------------------
    def _press(self, call: Call) -> None:
        self.draws[call.n] = _Draws.of(self.cfg, self.seed, call.n)
        self.outcomes[call.n] = Outcome(call)
        self.op_queue.append(call)
        self._next_operator()

    def _next_operator(self) -> None:
        while self.free_operators > 0 and self.op_queue:
            call = self.op_queue.popleft()
            self.free_operators -= 1
            d = self.draws[call.n]
            self.at(self.clock + d.ack + d.decide, "decide", call)

    def _decide(self, call: Call) -> None:
        self.free_operators += 1
        self._next_operator()
        unit = self._pick(call)
        if unit is None:
            self.outcomes[call.n].waited_for_unit = True
            self.unit_queue.append(call)
            return
        self._send(call, unit)

    def _pick(self, call: Call) -> Unit | None:
        t = self.clock
        if self.cfg.dispatch == "free":
            pick = pick_free_text(self.units, call.lat, call.lon, t)
        else:
            for u in self.units:
                u.fix = self._last_fix(u, t)
            pick = pick_recommended(self.units, lat=call.lat, lon=call.lon, sector=call.sector, press_s=call.t,
                                    now_s=t, cfg=self.cfg.dispatch_rules(), override=self.cfg.override,
                                    rng=self.draws[call.n].rng)
        if pick is None:
            return None
        self.outcomes[call.n].rank = pick.rank
        return pick.unit

    def _last_fix(self, u: Unit, t: float) -> tuple[float, float, float]:
        """The position the unit's phone last reported (every fix_interval_s, at its phase)."""
        step = self.cfg.fix_interval_s
        t_fix = t - ((t - self.phase[u.name]) % step)
        lat, lon = u.where(t_fix)
        return lat, lon, t_fix

    # --- the units ---------------------------------------------------------------------------
    def _send(self, call: Call, unit: Unit) -> None:
        t = self.clock
        unit.case = call
        unit.dispatches += 1
        self.outcomes[call.n].unit = unit.name
        lat, lon = unit.where(t)
        unit.move(lat, lon, since=t, start=t, seconds=0.0)
        self.at(t + self.draws[call.n].turnout, "roll", call, unit, haversine_m(lat, lon, call.lat, call.lon))

    def _roll(self, call: Call, unit: Unit, distance_m: float) -> None:
        d = self.draws[call.n]
        drive = drive_s(distance_m, road_factor=self.cfg.road_factor, kmh=d.kmh)
        unit.move(call.lat, call.lon, since=self.clock, start=self.clock, seconds=drive)
        self.at(self.clock + drive, "on_scene", call, unit)

    def _on_scene(self, call: Call, unit: Unit) -> None:
        self.outcomes[call.n].on_scene_s = self.clock - call.t
        self.at(self.clock + self.draws[call.n].handle, "free", unit)

    def _free(self, unit: Unit) -> None:
        unit.case = None
        if self.unit_queue:
            self._send(self.unit_queue.popleft(), unit)
            return
        t = self.clock
        lat, lon = unit.where(t)
        back = drive_s(haversine_m(lat, lon, unit.post.lat, unit.post.lon), road_factor=self.cfg.road_factor,
                       kmh=self.cfg.speed_kmh)
        unit.move(unit.post.lat, unit.post.lon, since=t, start=t, seconds=back)


def simulate(call_list: Sequence[Call], posts: Sequence[Post], cfg: PeopleConfig, *, seed: int,
             kecamatan: str = "") -> list[Outcome]:
    """Every call's outcome with units stationed at `posts` (Post.units each)."""
    units = make_units(posts, kecamatan)
    phase_rng = random.Random(f"phase:{seed}")
    desk = _Desk(cfg, units, seed, free_operators=cfg.operators,
                 phase={u.name: phase_rng.uniform(0, cfg.fix_interval_s) for u in units})
    for c in call_list:
        desk.at(c.t, "press", c)
    desk.run()
    return [desk.outcomes[c.n] for c in call_list]


@dataclass(frozen=True)
class Summary:
    n: int
    within: int
    p50_s: float | None
    p90_s: float | None      # over every call: one never reached counts as later than any

    @property
    def share(self) -> float:
        return self.within / self.n if self.n else 1.0

    def to_json(self) -> dict:
        return {"n": self.n, "within_10_min": self.within, "share": round(self.share, 4),
                "p50_min": None if self.p50_s is None else round(self.p50_s / 60, 2),
                "p90_min": None if self.p90_s is None else round(self.p90_s / 60, 2)}


def summary(outcomes: Sequence[Outcome], sla_s: int = SLA_S) -> Summary:
    times = sorted(float("inf") if o.on_scene_s is None else o.on_scene_s for o in outcomes)
    p50, p90 = percentile(times, 0.5), percentile(times, 0.9)
    return Summary(len(times), sum(1 for x in times if x <= sla_s),
                   None if p50 is None or p50 == float("inf") else p50,
                   None if p90 is None or p90 == float("inf") else p90)
