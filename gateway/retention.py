"""The forwarding queue's housekeeping: prune what is done, keep a picture of the rest.

Delivered entries are deleted after `forward_retention_days` (a sink deduplicates by
Idempotency-Key, so nothing needs them once delivered); dead letters stay until an operator
retries them, or after `forward_dead_retention_days` when set. The per-sink counts it reads
after pruning are what /healthz reports, so an unauthenticated probe never scans the queue.
"""
from __future__ import annotations

import logging
import threading

from .config import Config
from .store import Store
from .store.forwards import SinkQueue
from .timeutil import now_ms

log = logging.getLogger("panic.retention")

EVERY_S = 60.0
DAY_MS = 86_400_000


class ForwardRetention:
    def __init__(self, store: Store, cfg: Config, *, every_s: float = EVERY_S) -> None:
        self.store = store
        self.keep_ms = cfg.forward_retention_days * DAY_MS
        self.keep_dead_ms = cfg.forward_dead_retention_days * DAY_MS or None
        self.every_s = every_s
        self.pruned = 0
        self._stats: list[SinkQueue] = []
        self._stats_ms: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="forward-retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def run_once(self) -> int:
        now = now_ms()
        n = self.store.prune_forwards(delivered_before_ms=now - self.keep_ms,
                                      dead_before_ms=now - self.keep_dead_ms if self.keep_dead_ms else None)
        self.pruned += n
        if n:
            log.info("pruned %d forwards past retention", n)
        self._stats, self._stats_ms = self.store.forward_stats(), now_ms()
        return n

    def snapshot(self) -> dict:
        """The queue as last counted: {"sinks": [...], "at_ms": when (None before the first count), "pruned": n}."""
        return {"sinks": [s._asdict() for s in self._stats], "at_ms": self._stats_ms, "pruned": self.pruned}

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("forward retention failed; retrying")
            self._stop.wait(self.every_s)
