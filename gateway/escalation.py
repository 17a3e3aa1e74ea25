"""Escalation: an incident nobody acknowledged climbs the ladder (domain/ladder.py).

Each step (by default one: to Polresta after `escalate_after_s`) raises the incident's
`escalated` level, stamps `escalated_ms` and queues the step's event (`escalated`, then
`escalated_112` for Ngalam 112) to the sinks that take it; the counter
`panic_escalations_total{kind}` counts every step. Every gateway sweeps; the store's
conditional update makes exactly one of them take each step of each incident.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from . import metrics
from .domain import ladder
from .store import Store
from .timeutil import now_ms

log = logging.getLogger("panic.escalation")


def check_interval(escalate_after_s: float) -> float:
    """A quarter of the deadline, between 0.25 s and 5 s: late by at most that much."""
    return min(5.0, max(0.25, escalate_after_s / 4))


class Escalator:
    def __init__(self, store: Store, after_s: int, *, steps: tuple[ladder.Step, ...] | None = None,
                 on_escalated: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.steps = steps or ladder.default(after_s)
        self.on_escalated = on_escalated
        self.interval = check_interval(ladder.first_check_s(self.steps))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="escalation", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:
                metrics.store_errors.labels("escalation").inc()
                log.exception("escalation check failed")

    def check(self) -> int:
        escalated = []
        for level, step in enumerate(self.steps):
            for inc in self.store.escalate_step(now_ms(), level, step):
                escalated.append(inc)
                metrics.escalations.labels(inc.kind).inc()
                log.warning("incident %s from %s not acknowledged after %d s: escalated to %s", inc.id, inc.dev,
                            ((inc.escalated_ms or 0) - inc.received_ms) // 1000, step.to)
        if escalated:
            self.on_escalated()
        return len(escalated)
