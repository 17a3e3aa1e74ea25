"""`panic-sim plan`: the fewest units, and where to station them, that keep the promise.

Search. Candidate sites are the scenario's posts and, with `sites="all"`, a post at every
kelurahan centre (a Bhabinkamtibmas post, say), each in its kecamatan's sector; Polresta's
posts serve every sector, as the gateway's recommendation lets them. Starting from no unit,
the search adds one unit at a time where it helps most (to the sector furthest below the
target: its own sites and Polresta's), until every sector keeps `target` of presses on scene
within 10 minutes; then it takes away any unit the target does not need. Each staffing is
judged by the discrete-event model (model.py) over several seeds with common random numbers,
so two staffings are compared on the same presses. The answer is then checked on fresh
seeds it was not searched on, and that check, with a 95 % Wilson interval, is what to quote.

Rate. The realistic rate is the headline (shared/DESIGN.md): Polres Malang Kota's app logged
618 reports from January to September 2016 (274 days) from about 5,000 installs, i.e. about
4.5e-4 reports per holder per day; with one button per RT that is 0.30 a day for Klojen's 675
and 1.9 a day for the city's 4,278. At that rate units almost never queue, so the answer is
about coverage (distances); a stress rate (`rate_per_h`) shows what load adds.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from gateway.domain import dispatch as rules
from gateway.domain.sla import SLA_S

from . import model, scenario
from .people import PeopleConfig
from .scenario import Post

APP_REPORTS_2016 = 618          # January to September 2016, citywide
APP_DAYS_2016 = 274
APP_INSTALLS_2016 = 5000
REPORTS_PER_HOLDER_PER_DAY = APP_REPORTS_2016 / APP_DAYS_2016 / APP_INSTALLS_2016
RATE_SOURCE = ("618 reports Jan-Sep 2016 (274 days) from ~5,000 app installs (shared/DESIGN.md): "
               f"{REPORTS_PER_HOLDER_PER_DAY:.2e} per holder per day, one holder per button")


def realistic_rate_per_h(buttons: int) -> float:
    return REPORTS_PER_HOLDER_PER_DAY * buttons / 24


@dataclass(frozen=True)
class PlanSettings:
    target: float = 0.9
    seeds: int = 5
    calls: int = 300              # presses per seed
    seed: int = 1                 # first search seed; the check uses the next `seeds` after them
    rate_per_h: float | None = None   # None: the realistic rate
    sites: str = "all"            # posts | all (posts + a post at each kelurahan centre)
    max_units: int = 200
    rounds: int = 3               # searches at most: one more on the union when fresh seeds fall short

    def __post_init__(self) -> None:
        if not 0 < self.target < 1:
            raise ValueError(f"target is a share in (0, 1), not {self.target!r}")
        if self.seeds < 1 or self.calls < 10 or self.rounds < 1:
            raise ValueError("seeds >= 1, calls >= 10 and rounds >= 1")
        if self.sites not in ("posts", "all"):
            raise ValueError(f"sites is posts or all, not {self.sites!r}")
        if self.rate_per_h is not None and self.rate_per_h <= 0:
            raise ValueError("rate_per_h must be positive")


def candidate_sites(scn: dict, sites: str) -> list[Post]:
    """The scenario's posts (their units not counted: the search decides), plus a post at
    each kelurahan centre when `sites` is all."""
    default = scn.get("kecamatan", "")
    out = [Post(p.name, p.lat, p.lon, 0, p.sector or _sector_by_name(p, default))
           for p in scenario.posts(scn)]
    if sites == "all":
        for k in scn["kelurahan"]:
            out.append(Post(f"Pos {k['name']}", k["lat"], k["lon"], 0,
                            rules.sector_of(k.get("kecamatan", default))))
    return out


def _sector_by_name(p: Post, default_kecamatan: str) -> str:
    from .units import post_sector
    return post_sector(p, default_kecamatan)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a share k/n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


@dataclass(frozen=True)
class Evaluation:
    overall: model.Summary
    by_sector: dict[str, model.Summary]
    per_seed: tuple[float, ...]          # overall share per seed

    def meets(self, target: float) -> bool:
        return all(s.share >= target for s in self.by_sector.values())

    def covered(self, target: float) -> float:
        """Presses on scene in time, each sector counted up to the target only: more in
        a sector already above it does not excuse one below."""
        return sum(min(s.within, target * s.n) for s in self.by_sector.values())

    def to_json(self) -> dict:
        lo, hi = wilson(self.overall.within, self.overall.n)
        return {"overall": dict(self.overall.to_json(), ci95=[round(lo, 4), round(hi, 4)]),
                "by_sector": {k: dict(v.to_json(), ci95=[round(x, 4) for x in wilson(v.within, v.n)])
                              for k, v in sorted(self.by_sector.items())},
                "per_seed_share": [round(x, 4) for x in self.per_seed]}


class Evaluator:
    """Staffings judged on fixed presses (per seed), cached by staffing."""

    def __init__(self, scn: dict, sites: Sequence[Post], cfg: PeopleConfig, *, seeds: Sequence[int], calls: int,
                 rate_per_h: float) -> None:
        buttons = scenario.buttons(scn)
        self.sites, self.cfg = list(sites), cfg
        self.kecamatan = scn.get("kecamatan", "")
        self.calls = {s: model.calls(buttons, rate_per_h=rate_per_h, n=calls, seed=s) for s in seeds}
        self.cache: dict[tuple[int, ...], Evaluation] = {}

    def posts(self, counts: Sequence[int]) -> list[Post]:
        return [replace(s, units=n) for s, n in zip(self.sites, counts, strict=True) if n > 0]

    def __call__(self, counts: Sequence[int]) -> Evaluation:
        key = tuple(counts)
        if key not in self.cache:
            self.cache[key] = self._evaluate(self.posts(counts))
        return self.cache[key]

    def _evaluate(self, posts: list[Post]) -> Evaluation:
        pooled: list[model.Outcome] = []
        per_seed = []
        for seed, cs in self.calls.items():
            out = model.simulate(cs, posts, self.cfg, seed=seed, kecamatan=self.kecamatan)
            per_seed.append(model.summary(out).share)
            pooled += out
        sectors: dict[str, list[model.Outcome]] = {}
        for o in pooled:
            sectors.setdefault(o.call.sector, []).append(o)
        return Evaluation(model.summary(pooled), {k: model.summary(v) for k, v in sectors.items()}, tuple(per_seed))


@dataclass
class Plan:
    scenario: str
    settings: PlanSettings
    rate_per_h: float
    rate_source: str
    dispatch: str
    override: float
    sites: list[Post]
    counts: list[int]
    met: bool
    searched: Evaluation
    checked: Evaluation
    curve: list[dict] = field(default_factory=list)     # the search's path: units -> share
    today: dict = field(default_factory=dict)           # the scenario's own staffing, same check seeds
    rounds: int = 1                                     # searches: another one when fresh seeds disagreed
    seeds_searched: int = 0

    @property
    def units(self) -> int:
        return sum(self.counts)

    def stations(self) -> list[dict]:
        return [{"post": s.name, "sector": s.sector, "units": n, "lat": s.lat, "lon": s.lon}
                for s, n in zip(self.sites, self.counts, strict=True) if n > 0]

    def by_sector_units(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s, n in zip(self.sites, self.counts, strict=True):
            if n:
                out[s.sector] = out.get(s.sector, 0) + n
        return dict(sorted(out.items()))

    def to_json(self) -> dict:
        st = self.settings
        return {"scenario": self.scenario, "target": st.target, "met": self.met, "units": self.units,
                "units_by_sector": self.by_sector_units(), "stations": self.stations(),
                "rate_per_h": round(self.rate_per_h, 5), "rate_per_day": round(self.rate_per_h * 24, 3),
                "rate_source": self.rate_source, "dispatch": self.dispatch, "override": self.override,
                "sla_s": SLA_S, "seeds_searched": self.seeds_searched, "rounds": self.rounds, "calls_per_seed": st.calls, "sites": st.sites,
                "searched": self.searched.to_json(), "checked_on_fresh_seeds": self.checked.to_json(),
                "today": self.today, "curve": self.curve,
                "model": "discrete-event model (simulator/model.py): operators, the gateway's recommendation, "
                         "turnout, straight-line distance x road factor at lognormal traffic speeds; "
                         "network time and drills/false alarms left out"}


def search(scn: dict, settings: PlanSettings, cfg: PeopleConfig) -> Plan:
    buttons = scenario.buttons(scn)
    rate = settings.rate_per_h or realistic_rate_per_h(len(buttons))
    source = RATE_SOURCE if settings.rate_per_h is None else "given on the command line (a stress rate)"
    sites = candidate_sites(scn, settings.sites)
    target, k = settings.target, settings.seeds
    searched = list(range(settings.seed, settings.seed + k))
    counts = [0] * len(sites)
    curve: list[dict] = []
    for attempt in range(1, settings.rounds + 1):
        ev = Evaluator(scn, sites, cfg, seeds=searched, calls=settings.calls, rate_per_h=rate)
        counts = _grow(ev, counts, target, settings.max_units, curve, attempt)
        met = ev(counts).meets(target)
        if met:
            counts = _prune(ev, counts, target)
        fresh = range(searched[-1] + 1, searched[-1] + 1 + k)
        check = Evaluator(scn, sites, cfg, seeds=fresh, calls=settings.calls, rate_per_h=rate)
        if not met or check(counts).meets(target):
            break
        # The answer fit the searched presses but not fresh ones: search again on both.
        searched += list(fresh)
    today_sites = scenario.posts(scn)
    today_counts = [p.units for p in today_sites]
    # The scenario's own staffing under each dispatch rule, on the same presses: the model's
    # paired free-text vs recommendation comparison.
    rules_today = {}
    for mode in ("free", "recommend"):
        e = Evaluator(scn, today_sites, replace(cfg, dispatch=mode, override=cfg.override if mode == "recommend"
                                                else 0.0), seeds=fresh, calls=settings.calls, rate_per_h=rate)
        rules_today[mode] = e(today_counts).to_json()["overall"]
    today = Evaluator(scn, today_sites, cfg, seeds=fresh, calls=settings.calls, rate_per_h=rate)(today_counts)
    return Plan(scn["name"], settings, rate, source, cfg.dispatch, cfg.override, sites, counts, met, ev(counts),
                check(counts), curve,
                {"units": sum(today_counts), **today.to_json(), "by_rule": rules_today}, rounds=attempt,
                seeds_searched=len(searched))


def _grow(ev: Evaluator, counts: list[int], target: float, max_units: int, curve: list[dict],
          attempt: int) -> list[int]:
    """Add one unit at a time where it helps the sector furthest below the target most."""
    counts = list(counts)
    sites = ev.sites
    while True:
        now = ev(counts)
        curve.append({"units": sum(counts), "share": round(now.overall.share, 4), "round": attempt,
                      "worst_sector_share": round(min(s.share for s in now.by_sector.values()), 4)})
        if now.meets(target) or sum(counts) >= max_units:
            return counts
        worst = min(now.by_sector, key=lambda k: now.by_sector[k].share)
        helpers = [i for i, s in enumerate(sites) if s.sector in (worst, rules.COMMAND_CENTRE)] or range(len(sites))

        def gain(i: int) -> tuple[float, int, float]:
            trial = ev([n + (j == i) for j, n in enumerate(counts)])
            return trial.covered(target), trial.overall.within, -(trial.overall.p90_s or math.inf)
        counts[max(helpers, key=gain)] += 1


def _prune(ev: Evaluator, counts: list[int], target: float) -> list[int]:
    """Take away units the target does not need, the least useful first."""
    counts = list(counts)
    while True:
        options = []
        for i, n in enumerate(counts):
            if n:
                trial = [m - (j == i) for j, m in enumerate(counts)]
                e = ev(trial)
                if e.meets(target):
                    options.append((e.covered(target), e.overall.within, i))
        if not options:
            return counts
        counts[max(options)[2]] -= 1


def text(plan: Plan) -> str:
    st, c = plan.settings, plan.checked
    lo, hi = wilson(c.overall.within, c.overall.n)
    L = [f"plan for {plan.scenario}: {'fewest' if plan.met else 'NOT MET with'} {plan.units} units keep "
         f"{st.target:.0%} on scene within {SLA_S // 60} min in every sector"
         + ("" if plan.met else f" (search stopped at {st.max_units} units)"),
         f"press rate {plan.rate_per_h * 24:.2f} a day ({plan.rate_source})",
         f"operators follow: {plan.dispatch}" + (f", override {plan.override:g}" if plan.dispatch == "recommend" else ""),
         "", f"{'post':28} {'sector':14} units"]
    for row in plan.stations():
        L.append(f"{row['post'][:28]:28} {row['sector']:14} {row['units']:>5}")
    L.append(f"by sector: {plan.by_sector_units()}")
    L.append("")
    L.append(f"checked on {st.seeds} fresh seeds x {st.calls} presses: {c.overall.share:.1%} within 10 min "
             f"(95% CI {lo:.1%}-{hi:.1%}), p90 {_min(c.overall.p90_s)}; per seed "
             + ", ".join(f"{x:.1%}" for x in c.per_seed))
    for k, v in sorted(c.by_sector.items()):
        slo, shi = wilson(v.within, v.n)
        L.append(f"  {k:14} n {v.n:>5}  {v.share:.1%} (95% CI {slo:.1%}-{shi:.1%})  p90 {_min(v.p90_s)}")
    found = plan.searched.overall
    L.append(f"on the {plan.seeds_searched} search seeds: {found.share:.1%}, p90 {_min(found.p90_s)}"
             + (f" ({plan.rounds} searches: fresh seeds fell short before)" if plan.rounds > 1 else ""))
    if plan.met and not c.meets(st.target):
        L.append(f"WARNING: fresh seeds fall short of the target after {plan.rounds} searches: "
                 "more seeds (--seeds) or presses (--calls) would settle it")
    t = plan.today
    L.append(f"the scenario's own staffing ({t['units']} units), same fresh seeds: "
             f"{t['overall']['share']:.1%} within 10 min, p90 {t['overall']['p90_min']} min")
    for mode, o in t["by_rule"].items():
        L.append(f"  with {mode:9} dispatch: {o['share']:.1%} within 10 min, p90 {o['p90_min']} min")
    return "\n".join(L)


def _min(s: float | None) -> str:
    return "-" if s is None else f"{s / 60:.1f} min"
