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
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from gateway.domain import dispatch as rules

from .geo import haversine_m
from .scenario import Post
from .sched import Scheduler
from .units import (
    DISPATCH_MODES,
    Pick,
    Unit,
    drive_s,
    follow,
    lognormal,
    make_units,
    offered,
    pick_free_text,
    traffic_kmh,
)

# A recommendation whose every unit another operator has just sent is read again after
# REREAD_S wall seconds, REREAD_TRIES times at most (the gateway records a dispatch within
# milliseconds; a loaded machine may take a second).
REREAD_S = 0.5
REREAD_TRIES = 4


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
    dispatch: str = "free"            # free | recommend: how the operator picks a unit (units.py)
    override: float = 0.0             # recommend: chance the operator sends another offered unit
    fix_interval_s: float = 15.0      # simulated seconds between a unit phone's position reports

    def __post_init__(self) -> None:
        if self.dispatch not in DISPATCH_MODES:
            raise ValueError(f"dispatch is one of {', '.join(DISPATCH_MODES)}, not {self.dispatch!r}")
        if not 0.0 <= self.override <= 1.0:
            raise ValueError(f"override is a probability in [0, 1], not {self.override!r}")
        if self.fix_interval_s <= 0:
            raise ValueError("fix_interval_s must be positive")

    def dispatch_rules(self) -> rules.DispatchConfig:
        """The gateway's ETA approximation with this world's road factor and median speed."""
        return rules.DispatchConfig(road_factor=self.road_factor, car_kmh=self.speed_kmh)


@dataclass
class Case:
    inc: str
    alert_id: str
    dev: str
    kind: str
    lat: float
    lon: float
    seen_t: float                     # monotonic, when the people first heard of it
    sector: str = rules.COMMAND_CENTRE
    mark: float = 0.0                 # end of the last real-time step
    compressed_s: float = 0.0         # wall seconds spent in compressed waits
    state: str = "new"
    unit: str | None = None
    false_alarm: bool = False
    distance_m: float | None = None
    drive_sim_s: float | None = None
    pick: Pick | None = None          # how the operator chose the unit (rank, override, ETA)
    waited_for_unit_s: float = 0.0    # simulated seconds with no unit free
    steps: dict = field(default_factory=dict)   # action -> monotonic time it was posted
    comp_at: dict = field(default_factory=dict)  # action -> compressed_s when it was posted
    conflicts: list = field(default_factory=list)

    def real_step_begins(self, now: float) -> None:
        self.compressed_s += max(0.0, now - self.mark)

    def real_step_ends(self, now: float) -> None:
        self.mark = now



class Api:
    """The gateway's HTTP API as the desk (an operator's token) and as each unit's phone (a
    responder token bound to that unit: a responder acts only on its own unit's incidents)."""

    def __init__(self, base: str, operator_token: str, unit_tokens: dict[str, str] | None = None) -> None:
        self.base = base
        self.operator_token = operator_token
        self.unit_tokens = dict(unit_tokens or {})
        self.client = httpx.Client(timeout=10, limits=httpx.Limits(max_connections=32))
        self.calls = 0
        self.failures: list[str] = []

    def _auth(self, unit: str | None) -> dict[str, str]:
        token = self.operator_token if unit is None else self.unit_tokens[unit]
        return {"Authorization": f"Bearer {token}"}

    def _post(self, path: str, body: dict, *, unit: str | None, ok: tuple[int, ...] = (200,)) -> httpx.Response:
        self.calls += 1
        r = self.client.post(f"{self.base}{path}", json=body, headers=self._auth(unit))
        if r.status_code not in ok:
            self.failures.append(f"POST {path}: {r.status_code} {r.text[:200]}")
        return r

    def act(self, inc: str, action: str, *, as_unit: str | None = None, **body) -> httpx.Response:
        """An incident action as the desk, or (with `as_unit`) as that unit's responder."""
        return self._post(f"/api/incidents/{inc}/{action}", body, unit=as_unit, ok=(200, 409))

    def position(self, unit: str, lat: float, lon: float, acc: int = 10) -> httpx.Response:
        return self._post(f"/api/units/{unit}/position", {"lat": round(lat, 6), "lon": round(lon, 6), "acc": acc},
                          unit=unit)

    def status(self, unit: str, status: str) -> httpx.Response:
        return self._post(f"/api/units/{unit}/status", {"status": status}, unit=unit)

    def recommendation(self, inc: str) -> dict | None:
        """The gateway's recommendation for an incident, None when it has none to give."""
        self.calls += 1
        r = self.client.get(f"{self.base}/api/incidents/{inc}/recommendation", headers=self._auth(None))
        if r.status_code != 200:
            self.failures.append(f"recommendation {inc}: {r.status_code} {r.text[:200]}")
            return None
        return r.json()


class People:
    def __init__(self, api: Api, posts: list[Post], cfg: PeopleConfig, speed: float,
                 sched: Scheduler, seed: int, operator_false: set[str] | None = None,
                 sector_of: Callable[[str], str] | None = None, kecamatan: str = "") -> None:
        self.api, self.cfg, self.speed, self.sched = api, cfg, speed, sched
        self.rng = random.Random(f"people:{seed}")
        self.lock = threading.RLock()
        self.cases: dict[str, Case] = {}
        self.op_queue: deque[Case] = deque()
        self.free_operators = cfg.operators
        self.unit_queue: deque[Case] = deque()
        self.units = make_units(posts, kecamatan)
        self.by_unit = {u.name: u for u in self.units}
        # Alert ids whose holder will admit, on the call back, that it was a false alarm.
        self.operator_false = operator_false if operator_false is not None else set()
        # Device id -> the sector its incident belongs to (the gateway's rule on its kecamatan).
        self.sector_of = sector_of or (lambda dev: rules.COMMAND_CENTRE)
        self.t_start = time.monotonic()
        self.picks: list[Pick] = []

    def sim_now(self, now: float | None = None) -> float:
        """Simulated seconds since the people started (the units' clock)."""
        return ((time.monotonic() if now is None else now) - self.t_start) * self.speed

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
                            inc["lon6"] / 1e6, seen_t=now, mark=now, state=inc["state"],
                            sector=self.sector_of(inc["dev"]))
                self.cases[case.inc] = case
                self.op_queue.append(case)
                self._next_operator()
            if case is None:
                return
            if event == "cancelled":
                case.state = "cancelled"
                self._release(case)
            elif event == "cancel_requested" and "cancel_requested" not in case.steps:
                case.steps["cancel_requested"] = now
                delay = lognormal(self.rng, self.cfg.callback_median_s, self.cfg.callback_sigma)
                self.sched.after(self.wait(delay), functools.partial(self._confirm_cancel, case))
            elif event == "dispatched" and inc.get("unit") and case.unit == inc["unit"]:
                unit = self.by_unit.get(case.unit or "")
                if unit is not None and unit.case is case and "heard" not in case.steps:
                    case.steps["heard"] = now
                    # The dispatch reached the unit: the feed's delay was real time.
                    case.real_step_ends(now)
                    self.sched.after(self.wait(lognormal(self.rng, self.cfg.turnout_median_s,
                                                          self.cfg.turnout_sigma)),
                                     lambda: self._en_route(case, unit))

    # --- operators -----------------------------------------------------------------------
    def _next_operator(self) -> None:
        while self.free_operators > 0 and self.op_queue:
            case = self.op_queue.popleft()
            if case.state == "cancelled":
                continue
            self.free_operators -= 1
            delay = lognormal(self.rng, self.cfg.ack_median_s, self.cfg.ack_sigma)
            self.sched.after(self.wait(delay), functools.partial(self._acknowledge, case))

    def _operator_done(self) -> None:
        with self.lock:
            self.free_operators += 1
            self._next_operator()

    def _post(self, case: Case, action: str, *, by: Unit | None = None, **body) -> bool:
        """An action on the case as the desk, or as unit `by`'s phone."""
        now = time.monotonic()
        with self.lock:
            if case.state == "cancelled" and action != "false_alarm":
                return False
            case.real_step_begins(now)
            case.comp_at[action] = case.compressed_s
        r = self.api.act(case.inc, action, as_unit=by.name if by else None, **body)
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
            delay = lognormal(self.rng, self.cfg.callback_median_s, self.cfg.callback_sigma)
            self.sched.after(self.wait(delay), lambda: self._false_alarm(case))
        else:
            delay = lognormal(self.rng, self.cfg.dispatch_median_s, self.cfg.dispatch_sigma)
            self.sched.after(self.wait(delay), lambda: self._dispatch(case))

    def _close_drill(self, case: Case) -> None:
        self._post(case, "resolve", note="drill")
        self._operator_done()

    def _false_alarm(self, case: Case) -> None:
        self._post(case, "false_alarm", note="false alarm: holder confirmed on the call back")
        self._operator_done()

    def _confirm_cancel(self, case: Case) -> None:
        """The holder cancelled on the button: a cancel is only a request until the desk has
        called back and found them safe (the gateway's rule). The call-back is made beside
        the queue, without holding an operator: it is short and the holder expects it."""
        verified = self._post(case, "verify", note="safe: the holder cancelled on the button, confirmed on the call back")
        if verified and self._post(case, "confirm_cancel", note="cancelled by the holder"):
            with self.lock:
                self._release(case)

    def _dispatch(self, case: Case) -> None:
        # The operator is done deciding either way; a case with no free unit waits in the
        # unit queue and is dispatched the moment one frees (the desk keeps watching).
        self._operator_done()
        self._choose(case, tries=0)

    def _choose(self, case: Case, *, tries: int) -> None:
        if case.state == "cancelled":
            return
        # The gateway's recommendation is an HTTP call: made outside the lock.
        offer = self._recommended(case) if self.cfg.dispatch == "recommend" else None
        with self.lock:
            if case.state == "cancelled":
                return
            if offer is None:
                pick = pick_free_text(self.units, case.lat, case.lon, self.sim_now())
            else:
                free = {u.name: u for u in self.units if u.available}
                pick = follow(offer, free, override=self.cfg.override, rng=self.rng)
                if pick is None and offer and free and tries < REREAD_TRIES:
                    # Every offered unit was just sent by another operator, whose dispatch the
                    # gateway has not recorded yet: read the recommendation again, as an
                    # operator refreshes the console, before leaving the case to wait.
                    self.sched.after(REREAD_S, functools.partial(self._choose, case, tries=tries + 1))
                    return
            if pick is None:
                case.steps["queued"] = time.monotonic()
                self.unit_queue.append(case)
                return
            case.pick = pick
            self.picks.append(pick)
            pick.unit.case = case
        self._send_unit(case, pick.unit)

    def _recommended(self, case: Case) -> list[rules.Candidate]:
        """What the console offers for the case (units.offered), read from the gateway's API."""
        rec = self.api.recommendation(case.inc)
        if rec is None:
            return []
        return offered(rules.Recommendation(
            rec["sector"], rec["remaining_s"], rec["in_time"],
            tuple(rules.Candidate(**c) for c in rec["candidates"]),
            tuple(rules.Candidate(**c) for c in rec.get("busy", ())),
            tuple(rules.Candidate(**c) for c in rec.get("neighbours", ()))))

    def _send_unit(self, case: Case, unit: Unit) -> None:
        t = self.sim_now()
        with self.lock:
            case.unit = unit.name
            unit.dispatches += 1
            lat, lon = unit.where(t)
            case.distance_m = haversine_m(lat, lon, case.lat, case.lon)
            unit.move(lat, lon, since=t, start=t, seconds=0.0)    # stops where it is to take the call
        if not self._post(case, "dispatch", unit=unit.name):
            with self.lock:
                if unit.case is case:
                    unit.case = None
                    self._unit_free(unit)

    # --- units ---------------------------------------------------------------------------
    def _en_route(self, case: Case, unit: Unit) -> None:
        if not self._post(case, "en_route", by=unit):
            return
        kmh = traffic_kmh(self.rng, self.cfg.speed_kmh, self.cfg.traffic_sigma)
        drive = drive_s(case.distance_m or 0.0, road_factor=self.cfg.road_factor, kmh=kmh)
        case.drive_sim_s = drive
        t = self.sim_now()
        with self.lock:
            unit.move(case.lat, case.lon, since=t, start=t, seconds=drive)
        self.sched.after(self.wait(drive), lambda: self._on_scene(case, unit))

    def _on_scene(self, case: Case, unit: Unit) -> None:
        if not self._post(case, "on_scene", by=unit):
            return
        handle = lognormal(self.rng, self.cfg.on_scene_median_s, self.cfg.on_scene_sigma)
        self.sched.after(self.wait(handle), lambda: self._resolve(case, unit))

    def _resolve(self, case: Case, unit: Unit) -> None:
        self._post(case, "resolve", by=unit, note=f"handled by {unit.name}")
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
        # otherwise it drives back to its post (at the median speed), available on the way.
        while self.unit_queue:
            case = self.unit_queue.popleft()
            if case.state == "cancelled":
                continue
            case.waited_for_unit_s = (time.monotonic() - case.steps.get("queued", time.monotonic())) * self.speed
            unit.case = case
            self.sched.after(0, functools.partial(self._send_unit, case, unit))
            return
        t = self.sim_now()
        lat, lon = unit.where(t)
        back = drive_s(haversine_m(lat, lon, unit.post.lat, unit.post.lon), road_factor=self.cfg.road_factor,
                       kmh=self.cfg.speed_kmh)
        unit.move(unit.post.lat, unit.post.lon, since=t, start=t, seconds=back)

    # --- views ---------------------------------------------------------------------------
    def busy_units(self) -> int:
        with self.lock:
            return sum(1 for u in self.units if u.case is not None)

    def open_cases(self) -> int:
        with self.lock:
            return sum(1 for c in self.cases.values() if c.state not in ("resolved", "cancelled"))
