"""How the 10-minute promise is measured: one answer for the report, the API, the console
dashboard, the simulator and the benchmarks.

Percentile: **nearest rank** (the smallest observed value with at least q of the values at
or below it). Every figure is a time some incident really took, so "p90 is 9m40s" reads
literally as "nine in ten incidents took at most 9m40s", and the figure does not move
when the report's resolution changes. `percentile(values, q)` takes q as a fraction in
[0, 1] and refuses anything else, so a caller passing 90 for 0.9 fails loudly.

Which incidents count: incidents of the reported kinds (`panic`; drills with `test`) except
those cancelled before an officer reached them (a cancel from the button, or a false alarm
closed from the desk before arrival): nobody needed an officer there, so they neither keep
nor break the promise. An incident an officer reached counts even when it was later marked a
false alarm: the police did come, and the response time is real. The same incidents feed
every step's percentiles and the share, so the figures on one line describe one population.

The share within the promise: an incident is *within* when on scene no later than `sla_s`
after the press, *missed* when on scene later or still without an officer once `sla_s` has
passed, and *pending* while its clock is still running (not counted either way); share =
within / (within + missed).

Period window: by **received time** (the gateway's own clock). A report for a closed period
then never changes afterwards: a press held in a button's outbox through an outage lands in
the period the gateway learnt of it, instead of rewriting a period already reported. Press
times come partly from device clocks or `age`, which must not decide which report an
incident belongs to.

The one setting is `[gateway] sla_s` (default 600).

Standard timers, reported beside the promise: **answer** (received -> acknowledged) 90 % within
15 s, as NENA's call-answering standard asks, and **dispatch** (received -> dispatched) 90 %
within 60 s, as NFPA 1225 asks of call processing. For each counted incident a timer is
*within* when its step happened no later than the limit, *missed* when it happened later or
had not happened once the limit passed (or the incident closed without it), and *pending*
otherwise; share = within / (within + missed), and the timer is met when the share reaches
its target.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from .lifecycle import FINAL

SLA_S = 600
STEPS = ("press_to_received", "received_to_acknowledged", "received_to_dispatched", "press_to_on_scene")
UNREGISTERED = "(unregistered)"
N = TypeVar("N", int, float)


class Timed(Protocol):
    """What the rules read from an incident (gateway.models.Incident has these)."""
    @property
    def kind(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def press_ms(self) -> int: ...
    @property
    def received_ms(self) -> int: ...
    @property
    def acknowledged_ms(self) -> int | None: ...
    @property
    def dispatched_ms(self) -> int | None: ...
    @property
    def on_scene_ms(self) -> int | None: ...


@dataclass(frozen=True)
class Times:
    """An incident's timestamps, for callers holding JSON rather than gateway records."""
    kind: str
    state: str
    press_ms: int
    received_ms: int
    acknowledged_ms: int | None = None
    dispatched_ms: int | None = None
    on_scene_ms: int | None = None
    false_alarm: int = 0
    escalated: int = 0

    @classmethod
    def from_json(cls, d: dict) -> Times:
        """From an incident as the API serves it (`Incident.to_json()`)."""
        return cls(kind=d["kind"], state=d["state"], press_ms=d["press_ms"], received_ms=d["received_ms"],
                   acknowledged_ms=d.get("acknowledged_ms"), dispatched_ms=d.get("dispatched_ms"),
                   on_scene_ms=d.get("on_scene_ms"), false_alarm=int(d.get("false_alarm") or 0),
                   escalated=int(d.get("escalated") or 0))


def percentile(values: Sequence[N], q: float) -> N | None:
    """Nearest-rank percentile, q in [0, 1]; None for no values."""
    if not 0 <= q <= 1:
        raise ValueError(f"q is a fraction in [0, 1], not {q!r}")
    if not values:
        return None
    v = sorted(values)
    return v[max(0, math.ceil(q * len(v)) - 1)]


def in_window(received_ms: int, since_ms: int, until_ms: int) -> bool:
    """The period an incident belongs to: [since, until) by received time."""
    return since_ms <= received_ms < until_ms


def counts(inc: Timed, kinds: Iterable[str] = ("panic",)) -> bool:
    """Whether an incident counts for the promise (see the module's docstring)."""
    return inc.kind in kinds and not (inc.state == "cancelled" and inc.on_scene_ms is None)


def step_ms(inc: Timed, step: str) -> int | None:
    """One step's latency in ms, None while the step has not happened."""
    # A plain chain: Incident.to_json calls this four times for every incident it serialises.
    if step == "press_to_received":
        return inc.received_ms - inc.press_ms
    if step == "received_to_acknowledged":
        end, start = inc.acknowledged_ms, inc.received_ms
    elif step == "received_to_dispatched":
        end, start = inc.dispatched_ms, inc.received_ms
    elif step == "press_to_on_scene":
        end, start = inc.on_scene_ms, inc.press_ms
    else:
        raise ValueError(f"no SLA step {step!r}; one of {', '.join(STEPS)}")
    return None if end is None else end - start


def verdict(inc: Timed, *, now_ms: int, sla_s: int) -> str:
    """within | missed | pending, for an incident that counts."""
    sla_ms = sla_s * 1000
    if inc.on_scene_ms is not None:
        return "within" if inc.on_scene_ms - inc.press_ms <= sla_ms else "missed"
    return "missed" if now_ms - inc.press_ms > sla_ms else "pending"


@dataclass(frozen=True)
class Timer:
    name: str       # answer | dispatch
    step: str       # the step it times (one of STEPS)
    limit_s: int
    target: float   # the share that must be within the limit
    standard: str


TIMERS = (Timer("answer", "received_to_acknowledged", 15, 0.9, "NENA call answering"),
          Timer("dispatch", "received_to_dispatched", 60, 0.9, "NFPA 1225"))


def timer_verdict(inc: Timed, timer: Timer, *, now_ms: int) -> str:
    """within | missed | pending for one standard timer (see the module's docstring)."""
    limit_ms = timer.limit_s * 1000
    took = step_ms(inc, timer.step)
    if took is not None:
        return "within" if took <= limit_ms else "missed"
    if inc.state in FINAL or now_ms - inc.received_ms > limit_ms:
        return "missed"
    return "pending"


@dataclass(frozen=True)
class TimerResult:
    timer: Timer
    within: int
    missed: int
    pending: int

    @property
    def share(self) -> float | None:
        decided = self.within + self.missed
        return self.within / decided if decided else None

    @property
    def met(self) -> bool | None:
        """None while no incident is decided."""
        return None if self.share is None else self.share >= self.timer.target


@dataclass(frozen=True)
class Step:
    values: tuple[int, ...]  # sorted, ms

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def p50(self) -> int | None:
        return percentile(self.values, 0.5)

    @property
    def p90(self) -> int | None:
        return percentile(self.values, 0.9)

    @property
    def p99(self) -> int | None:
        return percentile(self.values, 0.99)


@dataclass(frozen=True)
class SlaSummary:
    incidents: int       # every incident of the kinds in the window, counted or not
    n: int               # incidents that count (see `counts`)
    cancelled: int
    false_alarms: int
    escalated: int
    open: int            # counted incidents not yet resolved
    within: int
    missed: int
    pending: int
    steps: dict[str, Step] = field(default_factory=dict)
    timers: dict[str, TimerResult] = field(default_factory=dict)

    @property
    def decided(self) -> int:
        return self.within + self.missed

    @property
    def share_within(self) -> float | None:
        return self.within / self.decided if self.decided else None

    @property
    def p50(self) -> int | None:
        """Press to on scene, the promise's own step."""
        return self.steps["press_to_on_scene"].p50

    @property
    def p90(self) -> int | None:
        return self.steps["press_to_on_scene"].p90

    @property
    def p99(self) -> int | None:
        return self.steps["press_to_on_scene"].p99


def summarize(incidents: Iterable[Timed], *, sla_s: int = SLA_S, now_ms: int,
              kinds: Iterable[str] = ("panic",)) -> SlaSummary:
    kinds = tuple(kinds)
    every = [i for i in incidents if i.kind in kinds]
    counted = [i for i in every if counts(i, kinds)]
    verdicts = [verdict(i, now_ms=now_ms, sla_s=sla_s) for i in counted]
    steps = {s: Step(tuple(sorted(v for i in counted if (v := step_ms(i, s)) is not None))) for s in STEPS}
    timers = {}
    for t in TIMERS:
        tv = [timer_verdict(i, t, now_ms=now_ms) for i in counted]
        timers[t.name] = TimerResult(t, tv.count("within"), tv.count("missed"), tv.count("pending"))
    return SlaSummary(
        incidents=len(every), n=len(counted),
        cancelled=sum(1 for i in every if i.state == "cancelled"),
        false_alarms=sum(1 for i in every if getattr(i, "false_alarm", 0)),
        escalated=sum(1 for i in every if getattr(i, "escalated", 0)),
        open=sum(1 for i in counted if i.state not in FINAL),
        within=verdicts.count("within"), missed=verdicts.count("missed"), pending=verdicts.count("pending"),
        steps=steps, timers=timers)


def by_kelurahan(rows: Iterable[tuple[Timed, str]], *, sla_s: int = SLA_S, now_ms: int,
                 kinds: Iterable[str] = ("panic",)) -> tuple[SlaSummary, dict[str, SlaSummary]]:
    """(overall, {kelurahan: summary}) sorted by name; devices without one are `(unregistered)`."""
    kinds = tuple(kinds)
    rows = list(rows)
    groups: dict[str, list[Timed]] = {}
    for inc, kel in rows:
        groups.setdefault(kel or UNREGISTERED, []).append(inc)
    overall = summarize([i for i, _ in rows], sla_s=sla_s, now_ms=now_ms, kinds=kinds)
    return overall, {k: summarize(v, sla_s=sla_s, now_ms=now_ms, kinds=kinds) for k, v in sorted(groups.items())}
