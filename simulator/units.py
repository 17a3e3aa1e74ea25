"""Police units on the map, and the operator's choice of one: the rules both the live run
(people.py, real time against the gateway) and the staffing model (model.py, a discrete-event
model in simulated seconds) follow, so the two cannot drift apart.

Time here is simulated seconds on the caller's clock; nothing in this module reads a clock.

How an operator picks a unit (`PeopleConfig.dispatch`):
- `free` (free text, the console without a recommendation): the operator types the call sign
  of the free unit nearest the incident in a straight line, from where the unit really is
  at that moment, whatever its sector. A real operator without AVL does not know that, so
  this baseline is generous to free text: it is the best a well-informed desk could do
  without ETA ranking, sector rules or stale positions.
- `recommend`: the operator takes the gateway's recommendation (gateway.domain.dispatch:
  the incident's sector and Polresta's available units ranked by ETA from their last reported
  fix, or their home post when the fix is stale; when none can arrive in time, the
  neighbouring sectors' available units beside them). With probability `override` the
  operator overrides it and sends another offered unit, picked at random.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gateway.domain import dispatch as rules
from gateway.domain.sla import SLA_S

from .geo import haversine_m
from .scenario import Post

DISPATCH_MODES = ("free", "recommend")


def lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


@dataclass(frozen=True)
class Leg:
    """A move from one point to another: at the start point until t0, on the straight line
    between t0 and t1 (the road is longer, the drive time says so), at the end after t1.
    `since` is when the unit began following this leg (a turnout waits in place)."""
    lat0: float
    lon0: float
    lat1: float
    lon1: float
    since: float
    t0: float
    t1: float

    def at(self, t: float) -> tuple[float, float]:
        if t <= self.t0 or self.t1 <= self.t0:
            f = 0.0 if t <= self.t0 else 1.0
        else:
            f = min(1.0, (t - self.t0) / (self.t1 - self.t0))
        return self.lat0 + (self.lat1 - self.lat0) * f, self.lon0 + (self.lon1 - self.lon0) * f


@dataclass
class Unit:
    """A police unit: home post, sector, kind, where it goes, what it reported."""
    name: str
    post: Post
    sector: str = rules.COMMAND_CENTRE
    kind: str = "car"
    legs: list[Leg] = field(default_factory=list)     # the last moves: enough to place any recent time
    fix: tuple[float, float, float] | None = None     # last reported (lat, lon, t)
    case: object | None = None                        # what it is busy with; None = available
    dispatches: int = 0

    def where(self, t: float) -> tuple[float, float]:
        for leg in reversed(self.legs):
            if t >= leg.since:
                return leg.at(t)
        return self.post.lat, self.post.lon

    def move(self, lat: float, lon: float, *, since: float, start: float, seconds: float) -> Leg:
        """Head for (lat, lon): decided at `since`, rolling at `start`, there `seconds` later."""
        lat0, lon0 = self.where(since)
        leg = Leg(lat0, lon0, lat, lon, since, start, start + seconds)
        self.legs = [*self.legs[-3:], leg]
        return leg

    @property
    def available(self) -> bool:
        return self.case is None


def post_sector(post: Post, default_kecamatan: str) -> str:
    """A post's stated sector; else Polresta's posts patrol the city, a Polsek's name says
    its kecamatan, and any other post belongs to the scenario's kecamatan."""
    if post.sector:
        return rules.check_sector(post.sector)
    name = post.name.lower()
    if "polresta" in name:
        return rules.COMMAND_CENTRE
    for k in rules.KECAMATAN:
        if k.lower() in name:
            return rules.sector_of(k)
    return rules.sector_of(default_kecamatan)


def make_units(posts: Iterable[Post], default_kecamatan: str) -> list[Unit]:
    return [Unit(f"{short(p.name)}-{i + 1}", p, post_sector(p, default_kecamatan))
            for p in posts for i in range(p.units)]


def short(post_name: str) -> str:
    words = [w for w in post_name.lower().replace("-", " ").split() if w not in ("polisi", "pos", "kota")]
    return "-".join(words)[:24]


def drive_s(distance_m: float, *, road_factor: float, kmh: float) -> float:
    """Seconds to drive a straight-line distance at `kmh` on roads `road_factor` longer."""
    return distance_m * road_factor / (kmh / 3.6)


def traffic_kmh(rng: random.Random, median_kmh: float, sigma: float) -> float:
    return median_kmh * math.exp(rng.gauss(0.0, sigma))


# --- the operator's pick -------------------------------------------------------------------------
@dataclass(frozen=True)
class Pick:
    unit: Unit
    rank: int            # 0 = the first recommendation (free text: always 0)
    overridden: bool
    eta_s: int | None    # the recommendation's ETA (None in free text)


def pick_free_text(units: Iterable[Unit], lat: float, lon: float, t: float) -> Pick | None:
    """The free unit nearest in a straight line from where it really is (see the docstring)."""
    free = [u for u in units if u.available]
    if not free:
        return None

    def distance(u: Unit) -> float:
        ulat, ulon = u.where(t)
        return haversine_m(ulat, ulon, lat, lon)
    best = min(free, key=distance)
    return Pick(best, 0, False, None)


def view(u: Unit, now_s: float) -> rules.UnitView:
    """The unit as the gateway sees it: status and last reported fix, never the truth."""
    fix = u.fix
    return rules.UnitView(u.name, u.kind, u.sector, "available" if u.available else "dispatched",
                          round(u.post.lat * 1e6), round(u.post.lon * 1e6),
                          round(fix[0] * 1e6) if fix else None, round(fix[1] * 1e6) if fix else None,
                          round(fix[2] * 1000) if fix else None)


def offered(rec: rules.Recommendation) -> list[rules.Candidate]:
    """What the operator can send with one click: the recommendation, and when it cannot
    make the promise, the neighbouring sectors' free units beside it, best ETA first."""
    options = list(rec.candidates)
    if not rec.in_time:
        options = sorted([*options, *rec.neighbours], key=lambda c: (c.eta_s, c.call_sign))
    return options


def pick_recommended(units: Iterable[Unit], *, lat: float, lon: float, sector: str, press_s: float, now_s: float,
                     cfg: rules.DispatchConfig, override: float, rng: random.Random,
                     recommendation: Callable[..., rules.Recommendation] = rules.recommend) -> Pick | None:
    """The operator follows the gateway's ranking, overriding it with probability `override`."""
    units = list(units)
    rec = recommendation([view(u, now_s) for u in units], lat6=round(lat * 1e6), lon6=round(lon * 1e6),
                         sector=sector, press_ms=round(press_s * 1000), now_ms=round(now_s * 1000),
                         sla_s=SLA_S, cfg=cfg)
    return follow(offered(rec), {u.name: u for u in units}, override=override, rng=rng)


def follow(options: list[rules.Candidate], by_name: dict[str, Unit], *, override: float,
           rng: random.Random) -> Pick | None:
    """The first offered unit, or with probability `override` another offered one. The
    override draw is made for every decision, so a run with override 0 and one with 0.2
    see the same random stream."""
    options = [c for c in options if c.call_sign in by_name]
    draw, other = rng.random(), rng.random()
    if not options:
        return None
    rank = 0
    if draw < override and len(options) > 1:
        rank = 1 + int(other * (len(options) - 1))
    c = options[rank]
    return Pick(by_name[c.call_sign], rank, rank > 0, c.eta_s)
