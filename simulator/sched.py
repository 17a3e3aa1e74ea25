"""A wall-clock scheduler: one timer thread hands due work to a small pool, so a slow
HTTP call or a power cut's process wait never delays the next press."""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("panic-sim")


class Scheduler:
    def __init__(self, workers: int = 16) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sim")
        self._stopped = False
        self.errors: list[str] = []
        self.lateness_max = 0.0      # how far behind the plan work started, seconds
        self._thread = threading.Thread(target=self._run, name="sim-clock", daemon=True)
        self._thread.start()

    def at(self, when: float, fn: Callable[[], None]) -> None:
        """Run fn at time.monotonic() == when (or as soon after as possible)."""
        with self._cv:
            heapq.heappush(self._heap, (when, next(self._seq), fn))
            self._cv.notify()

    def after(self, delay: float, fn: Callable[[], None]) -> None:
        self.at(time.monotonic() + max(0.0, delay), fn)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cv.wait(None if not self._heap else max(0.0, self._heap[0][0] - time.monotonic()))
                if self._stopped:
                    return
                when, _, fn = heapq.heappop(self._heap)
            self.lateness_max = max(self.lateness_max, time.monotonic() - when)
            self._pool.submit(self._call, fn)

    def _call(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:
            log.exception("scheduled action failed")
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def pending(self) -> int:
        with self._cv:
            return len(self._heap)

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify()
        self._thread.join(timeout=2)
        self._pool.shutdown(wait=True, cancel_futures=True)
