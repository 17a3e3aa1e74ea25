"""The people: operators at the command centre and police units on the road.

They learn of incidents only as a dispatch system would (the gateway's webhook or its
API, see feed.py) and act only through the gateway's HTTP API with their own tokens:
operators acknowledge, dispatch the nearest free unit, close drills and false alarms;
a unit hears its dispatch, turns out, drives (haversine distance times a road factor,
at a speed with traffic variance), marks en route, on scene, and resolved.

Time compression: every human or driving interval is drawn in simulated seconds and
waited for as simulated / speed in wall time. Each incident (a Case) adds up the wall
time spent in such compressed waits (`compressed_s`, queueing for an operator or a unit
included); the API calls and the feed's delivery are real time and are not added. The
report turns a gateway interval into simulated time as
    simulated = gateway interval + compressed_s * (speed - 1).
"""
from __future__ import annotations

import functools
import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import httpx

from .geo import haversine_m
from .scenario import Post
from .sched import Scheduler


@dataclass
class PeopleConfig:
    operators: int = 3
    ack_median_s: float = 15.0        # operator sees the alarm and acknowledges
    ack_sigma: float = 0.6
    dispatch_median_s: float = 25.0   # calls back / reads the map / picks a unit
    dispatch_sigma: float = 0.5
    callback_median_s: float = 60.0   # a false alarm found out on the call back
    callback_sigma: float = 0.4
    drill_close_s: float = 45.0       # drills are acknowledged and closed, never dispatched
    turnout_median_s: float = 45.0    # from hearing the dispatch to rolling
    turnout_sigma: float = 0.4
    speed_kmh: float = 30.0           # city traffic, median
    traffic_sigma: float = 0.35       # lognormal spread of the speed
    road_factor: float = 1.35         # road distance / straight-line distance in a city grid
    on_scene_median_s: float = 300.0  # handling before the unit is free again
    on_scene_sigma: float = 0.4


@dataclass
class Case:
    inc: str
    alert_id: str
    dev: str
    kind: str
    lat: float
    lon: float
    seen_t: float                     # monotonic, when the people first heard of it
    mark: float = 0.0                 # end of the last real-time step
    compressed_s: float = 0.0         # wall seconds spent in compressed waits
    state: str = "new"
    unit: str | None = None
    false_alarm: bool = False
    distance_m: float | None = None
    drive_sim_s: float | None = None
    waited_for_unit_s: float = 0.0    # simulated seconds with no unit free
    steps: dict = field(default_factory=dict)   # action -> monotonic time it was posted
    comp_at: dict = field(default_factory=dict)  # action -> compressed_s when it was posted
    conflicts: list = field(default_factory=list)

    def real_step_begins(self, now: float) -> None:
        self.compressed_s += max(0.0, now - self.mark)

    def real_step_ends(self, now: float) -> None:
        self.mark = now


@dataclass
class Unit:
    name: str
    post: Post
    lat: float
    lon: float
    case: Case | None = None
    dispatches: int = 0


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


class Api:
    """The gateway's HTTP API with an operator's and a responder's token."""

    def __init__(self, base: str, operator_token: str, responder_token: str) -> None:
        self.base = base
        self.tokens = {"operator": operator_token, "responder": responder_token}
        self.client = httpx.Client(timeout=10, limits=httpx.Limits(max_connections=32))
        self.calls = 0
        self.failures: list[str] = []

    def act(self, inc: str, action: str, role: str = "operator", **body) -> httpx.Response:
        self.calls += 1
        r = self.client.post(f"{self.base}/api/incidents/{inc}/{action}", json=body,
                             headers={"Authorization": f"Bearer {self.tokens[role]}"})
        if r.status_code not in (200, 409):
            self.failures.append(f"{action} {inc}: {r.status_code} {r.text[:200]}")
        return r


class People:
    def __init__(self, api: Api, posts: list[Post], cfg: PeopleConfig, speed: float,
                 sched: Scheduler, seed: int, operator_false: set[str] | None = None) -> None:
        self.api, self.cfg, self.speed, self.sched = api, cfg, speed, sched
        self.rng = random.Random(f"people:{seed}")
        self.lock = threading.RLock()
        self.cases: dict[str, Case] = {}
        self.op_queue: deque[Case] = deque()
        self.free_operators = cfg.operators
        self.unit_queue: deque[Case] = deque()
        self.units = [Unit(f"{_short(p.name)}-{i + 1}", p, p.lat, p.lon) for p in posts for i in range(p.units)]
        self.by_unit = {u.name: u for u in self.units}
        # Alert ids whose holder will admit, on the call back, that it was a false alarm.
        self.operator_false = operator_false if operator_false is not None else set()

    # --- time --------------------------------------------------------------------------
    def wait(self, sim_s: float) -> float:
        return sim_s / self.speed

    # --- feed ----------------------------------------------------------------------------
    def on_event(self, event: str, inc: dict) -> None:
        now = time.monotonic()
        with self.lock:
            case = self.cases.get(inc["id"])
            if case is None and event in ("new", "acknowledged", "dispatched"):
                if inc.get("kind") == "cancel":
                    return
                case = Case(inc["id"], inc["alert_id"], inc["dev"], inc["kind"], inc["lat6"] / 1e6,
                            inc["lon6"] / 1e6, seen_t=now, mark=now, state=inc["state"])
                self.cases[case.inc] = case
                self.op_queue.append(case)
                self._next_operator()
            if case is None:
                return
            if event == "cancelled":
                case.state = "cancelled"
                self._release(case)
            elif event == "dispatched" and inc.get("unit") and case.unit == inc["unit"]:
                unit = self.by_unit.get(case.unit or "")
                if unit is not None and unit.case is case and "heard" not in case.steps:
                    case.steps["heard"] = now
                    # The dispatch reached the unit: the feed's delay was real time.
                    case.real_step_ends(now)
                    self.sched.after(self.wait(_lognormal(self.rng, self.cfg.turnout_median_s,
                                                          self.cfg.turnout_sigma)),
                                     lambda: self._en_route(case, unit))

    # --- operators -----------------------------------------------------------------------
    def _next_operator(self) -> None:
        while self.free_operators > 0 and self.op_queue:
            case = self.op_queue.popleft()
            if case.state == "cancelled":
                continue
            self.free_operators -= 1
            delay = _lognormal(self.rng, self.cfg.ack_median_s, self.cfg.ack_sigma)
            self.sched.after(self.wait(delay), functools.partial(self._acknowledge, case))

    def _operator_done(self) -> None:
        with self.lock:
            self.free_operators += 1
            self._next_operator()

    def _post(self, case: Case, action: str, role: str = "operator", **body) -> bool:
        now = time.monotonic()
        with self.lock:
            if case.state == "cancelled" and action != "false_alarm":
                return False
            case.real_step_begins(now)
            case.comp_at[action] = case.compressed_s
        r = self.api.act(case.inc, action, role, **body)
        with self.lock:
            case.real_step_ends(time.monotonic())
            case.steps[action] = now
            if r.status_code == 200:
                case.state = r.json()["state"]
                return True
            case.conflicts.append(f"{action}: {r.status_code} {r.text[:120]}")
            if r.status_code == 409 and "cancelled" in r.text:
                case.state = "cancelled"
                self._release(case)
            return False

    def _acknowledge(self, case: Case) -> None:
        if not self._post(case, "acknowledge"):
            return self._operator_done()
        if case.kind == "test":
            self.sched.after(self.wait(self.cfg.drill_close_s), lambda: self._close_drill(case))
        elif case.alert_id in self.operator_false:
            case.false_alarm = True
            delay = _lognormal(self.rng, self.cfg.callback_median_s, self.cfg.callback_sigma)
            self.sched.after(self.wait(delay), lambda: self._false_alarm(case))
        else:
            delay = _lognormal(self.rng, self.cfg.dispatch_median_s, self.cfg.dispatch_sigma)
            self.sched.after(self.wait(delay), lambda: self._dispatch(case))

    def _close_drill(self, case: Case) -> None:
        self._post(case, "resolve", note="drill")
        self._operator_done()

    def _false_alarm(self, case: Case) -> None:
        self._post(case, "false_alarm", note="false alarm: holder confirmed on the call back")
        self._operator_done()

    def _dispatch(self, case: Case) -> None:
        # The operator is done deciding either way; a case with no free unit waits in the
        # unit queue and is dispatched the moment one frees (the desk keeps watching).
        self._operator_done()
        with self.lock:
            if case.state == "cancelled":
                return
            unit = self._nearest_free(case)
            if unit is None:
                case.steps["queued"] = time.monotonic()
                self.unit_queue.append(case)
                return
            unit.case = case
        self._send_unit(case, unit)

    def _nearest_free(self, case: Case) -> Unit | None:
        free = [u for u in self.units if u.case is None]
        return min(free, key=lambda u: haversine_m(u.lat, u.lon, case.lat, case.lon)) if free else None

    def _send_unit(self, case: Case, unit: Unit) -> None:
        case.unit = unit.name
        unit.dispatches += 1
        case.distance_m = haversine_m(unit.lat, unit.lon, case.lat, case.lon)
        if not self._post(case, "dispatch", unit=unit.name):
            with self.lock:
                if unit.case is case:
                    unit.case = None
                    self._unit_free(unit)

    # --- units ---------------------------------------------------------------------------
    def _en_route(self, case: Case, unit: Unit) -> None:
        if not self._post(case, "en_route", role="responder"):
            return
        kmh = self.cfg.speed_kmh * math.exp(self.rng.gauss(0.0, self.cfg.traffic_sigma))
        drive = (case.distance_m or 0.0) * self.cfg.road_factor / (kmh / 3.6)
        case.drive_sim_s = drive
        self.sched.after(self.wait(drive), lambda: self._on_scene(case, unit))

    def _on_scene(self, case: Case, unit: Unit) -> None:
        if not self._post(case, "on_scene", role="responder"):
            return
        with self.lock:
            unit.lat, unit.lon = case.lat, case.lon
        handle = _lognormal(self.rng, self.cfg.on_scene_median_s, self.cfg.on_scene_sigma)
        self.sched.after(self.wait(handle), lambda: self._resolve(case, unit))

    def _resolve(self, case: Case, unit: Unit) -> None:
        self._post(case, "resolve", role="responder", note=f"handled by {unit.name}")
        with self.lock:
            self._release(case)

    def _release(self, case: Case) -> None:
        """The case no longer holds its unit (resolved or cancelled); call with the lock."""
        unit = self.by_unit.get(case.unit or "")
        if unit is not None and unit.case is case:
            unit.case = None
            self._unit_free(unit)
        if case in self.unit_queue:
            self.unit_queue.remove(case)

    def _unit_free(self, unit: Unit) -> None:
        # A freed unit takes the oldest case waiting for one, from where it stands;
        # otherwise it drives back to its post.
        while self.unit_queue:
            case = self.unit_queue.popleft()
            if case.state == "cancelled":
                continue
            case.waited_for_unit_s = (time.monotonic() - case.steps.get("queued", time.monotonic())) * self.speed
            unit.case = case
            self.sched.after(0, functools.partial(self._send_unit, case, unit))
            return
        back = haversine_m(unit.lat, unit.lon, unit.post.lat, unit.post.lon) * self.cfg.road_factor / (
            self.cfg.speed_kmh / 3.6)

        def at_post(u=unit):
            with self.lock:
                if u.case is None:
                    u.lat, u.lon = u.post.lat, u.post.lon
        self.sched.after(self.wait(back), at_post)

    # --- views ---------------------------------------------------------------------------
    def busy_units(self) -> int:
        with self.lock:
            return sum(1 for u in self.units if u.case is not None)

    def open_cases(self) -> int:
        with self.lock:
            return sum(1 for c in self.cases.values() if c.state not in ("resolved", "cancelled"))


def _short(post_name: str) -> str:
    words = [w for w in post_name.lower().replace("-", " ").split() if w not in ("polisi", "pos", "kota")]
    return "-".join(words)[:24]
