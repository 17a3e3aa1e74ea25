"""Durable forwarding to dispatch sinks.

Every incident event is queued per sink in the same transaction that stores it, so a
sink that is down loses nothing: one thread per sink delivers the queue in order,
retrying with exponential backoff, and gives an entry up as dead only after a
configured age (dead entries stay visible in the API). An entry the sink refuses for
good (DeliveryError(permanent=True)) is dead at once, so it does not hold up the rest.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from . import metrics
from .sinks import DeliveryError, Forward, Sink
from .store import Store
from .store.forwards import ClaimedForward
from .timeutil import now_ms

log = logging.getLogger("panic.forward")

POLL_S = 0.5  # also picks up work another gateway queued, and retries that fall due


class Forwarder:
    """Drains one sink's queue through `sink.deliver`.

    Entries are claimed with a lease (see Store.claim_forwards), so any number of
    gateways may run a forwarder for the same sink on one PostgreSQL queue and each
    entry still goes out once; a forwarder that dies mid-delivery leaves its lease to
    run out, after which another (or its own restart, same owner) takes the entry."""

    def __init__(self, sink: Sink, store: Store, *, dead_after_s: int, owner: str = "gateway-1",
                 backoff_ms: int = 1000, backoff_max_s: int = 300, lease_s: int = 60) -> None:
        self.sink = sink
        self.name = sink.name
        self.store = store
        self.dead_after_ms = dead_after_s * 1000
        self.owner = owner
        self.backoff_ms = backoff_ms
        self.backoff_max_ms = backoff_max_s * 1000
        self.lease_ms = lease_s * 1000
        self.wake = threading.Event()
        self._ok = metrics.forwards.labels(sink.name, "ok")
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=f"forward-{sink.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self.wake.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop:
            self.wake.clear()
            try:
                wait = self._drain()
            except Exception:
                log.exception("forwarder %s failed; retrying", self.name)
                wait = POLL_S
            if wait > 0:
                self.wake.wait(wait)

    def _drain(self) -> float:
        """Deliver what is due; return how long to wait before looking again (0: at once)."""
        if not self.store.has_due(self.name, now_ms()):
            return POLL_S
        rows = self.store.claim_forwards(self.name, self.owner, now_ms(), self.lease_ms)
        done: list[int] = []
        handled = 0
        try:
            for row, err in zip(rows, self._outcomes(rows), strict=False):  # the outcomes end early on stop
                if err is None:
                    done.append(row.id)
                elif isinstance(err, DeliveryError) and err.permanent:
                    # Refused for good: says nothing about the sink's health, so go on with the next.
                    self.store.forward_failed(row.id, now_ms(), str(err), dead=True)
                    metrics.forwards.labels(self.name, "refused").inc()
                    log.warning("forward %s to %s refused: %s; dead-lettered", row.idem_key, self.name, err)
                else:
                    return self._failed(rows, handled, err)
                handled += 1
            if handled < len(rows):  # told to stop
                self.store.release_forwards([r.id for r in rows[handled:]])
                return POLL_S
        finally:
            # One transaction for the batch: a mark lost to a crash only means a redelivery,
            # which the Idempotency-Key lets the sink drop.
            self.store.forwards_done(done, now_ms())
            self._ok.inc(len(done))
        return 0 if rows else POLL_S

    def _outcomes(self, rows: list[ClaimedForward]) -> Iterator[Exception | None]:
        """Each claimed entry's outcome, in order: from the sink's `deliver_many` where it has
        one, else `deliver` one at a time until the forwarder is told to stop."""
        items = [Forward(r.idem_key, r.payload, r.created_ms, r.attempts) for r in rows]
        many = getattr(self.sink, "deliver_many", None)
        if many is not None and not self._stop:
            yield from many(items)
            return
        for item in items:
            if self._stop:
                return
            try:
                self.sink.deliver(item)
            except Exception as exc:
                yield exc
            else:
                yield None

    def _failed(self, rows: list[ClaimedForward], n: int, exc: Exception) -> float:
        """Entry n failed: back it off (or dead-letter it when too old), hand the rest back."""
        row = rows[n]
        now = now_ms()
        dead = now - row.created_ms > self.dead_after_ms
        delay = min(self.backoff_ms * 2 ** min(row.attempts, 30), self.backoff_max_ms)
        self.store.forward_failed(row.id, now + delay, str(exc), dead=dead)
        # The sink is most likely down: hand the rest back rather than fail each in turn.
        self.store.release_forwards([r.id for r in rows[n + 1:]])
        metrics.forwards.labels(self.name, "dead" if dead else "retry").inc()
        log.warning("forward %s to %s failed (attempt %d): %s%s", row.idem_key, self.name,
                    row.attempts + 1, exc, "; dead-lettered" if dead else "")
        return min(delay / 1000, POLL_S)

