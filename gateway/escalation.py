"""Escalation: an incident nobody acknowledged within `escalate_after_s` escalates.

The store flags it (`escalated`, `escalated_ms`) and queues an `escalated` event to the
sinks that take it (a webhook with `events = ["escalated"]` is the escalation webhook);
the counter `panic_escalations_total{kind}` counts them. Every gateway sweeps; the
store's conditional update makes exactly one of them escalate each incident.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from . import metrics
from .store import Store
from .timeutil import now_ms

log = logging.getLogger("panic.escalation")


def check_interval(escalate_after_s: float) -> float:
    """A quarter of the deadline, between 0.25 s and 5 s: late by at most that much."""
    return min(5.0, max(0.25, escalate_after_s / 4))


class Escalator:
    def __init__(self, store: Store, after_s: int, *, on_escalated: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.after_ms = after_s * 1000
        self.on_escalated = on_escalated
        self.interval = check_interval(after_s)
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
        escalated = self.store.escalate_due(now_ms(), self.after_ms)
        for inc in escalated:
            metrics.escalations.labels(inc.kind).inc()
            log.warning("incident %s from %s not acknowledged after %d s: escalated", inc.id, inc.dev,
                        ((inc.escalated_ms or 0) - inc.received_ms) // 1000)
        if escalated:
            self.on_escalated()
        return len(escalated)
