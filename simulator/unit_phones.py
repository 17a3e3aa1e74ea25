"""The units' phones: each unit is in the gateway's registry with a responder token bound to
it, goes on duty through the API, and reports its position every few (simulated) seconds
as the responder view does with the browser's Geolocation API.

Enrolment uses the gateway's own CLI (`panic-gateway unit add`, `token create --role
responder --unit`), as a deployment's admin would. Reports go through the HTTP API with
each unit's own token, never the desk's, so the gateway's rule that a phone speaks only for
its own unit is exercised by every run.

Rate: one report per unit per `fix_interval_s` simulated seconds, i.e. fix_interval_s /
speed wall seconds, capped at `max_per_s` requests a second for the whole fleet (a slower
round is the cap doing its job, not an error).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from .units import Unit

log = logging.getLogger("panic-sim")


class GatewayCli(Protocol):
    def cli(self, *args: str, check: bool = True): ...


class PhoneApi(Protocol):
    def position(self, unit: str, lat: float, lon: float, acc: int = 10): ...

    def status(self, unit: str, status: str): ...


def enrol(stack: GatewayCli, units: Iterable[Unit]) -> dict[str, str]:
    """Register every unit at its home post (a re-run keeps the registered ones) and create
    a responder token bound to it; call sign -> token."""
    tokens = {}
    for u in units:
        made = stack.cli("unit", "add", u.name, "--kind", u.kind, "--sector", u.sector, "--post", u.post.name,
                         "--lat", f"{u.post.lat:.6f}", "--lon", f"{u.post.lon:.6f}", check=False)
        if made.returncode != 0 and "exists" not in made.stderr:
            raise RuntimeError(f"panic-gateway unit add {u.name} failed: {made.stderr.strip()}")
        tokens[u.name] = stack.cli("token", "create", "--role", "responder", "--unit", u.name,
                                   "--name", f"phone-{u.name}").stdout.strip()
    return tokens


class PositionReporter:
    """One thread reporting every unit's position (as its phone would) round after round."""

    def __init__(self, api: PhoneApi, units: list[Unit], sim_now: Callable[[], float], *, speed: float,
                 fix_interval_s: float, max_per_s: float = 20.0, lock: threading.RLock | None = None) -> None:
        if fix_interval_s <= 0 or max_per_s <= 0 or speed <= 0:
            raise ValueError("fix_interval_s, max_per_s and speed must be positive")
        self.api, self.units, self.sim_now = api, units, sim_now
        self.round_s = fix_interval_s / speed
        self.gap_s = 1.0 / max_per_s
        self.lock = lock or threading.RLock()
        self.sent = 0
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="unit-phones", daemon=True)

    def start(self) -> None:
        for u in self.units:
            self._refused_if(self.api.status(u.name, "available"))
        self.report_round()
        self._thread.start()

    def stop(self, *, off_duty: bool = True) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if off_duty:
            for u in self.units:
                if u.available:
                    self._refused_if(self.api.status(u.name, "off_duty"))

    def report_round(self) -> None:
        for u in self.units:
            if self._stop.is_set():
                return
            t = self.sim_now()
            with self.lock:
                lat, lon = u.where(t)
            if self._refused_if(self.api.position(u.name, lat, lon)):
                continue
            self.sent += 1
            with self.lock:
                u.fix = (lat, lon, t)
            self._stop.wait(self.gap_s)

    def _refused_if(self, r) -> bool:
        if r.status_code != 200:
            self.refused += 1
            log.warning("unit phone: %s %s", r.status_code, r.text[:120])
            return True
        return False

    def _loop(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            self.report_round()
            self._stop.wait(max(0.0, self.round_s - (time.monotonic() - began)))
