"""How many SMS one number may send the gateway: a sliding hour, kept in memory (no I/O).

Every message counts, accepted or not, so a sender guessing MACs is stopped long before the
64-bit tag could matter; the number of senders kept is bounded, the stalest forgotten first."""
from __future__ import annotations

import threading
from collections import OrderedDict, deque

HOUR_MS = 3_600_000


class PerNumberLimit:
    def __init__(self, *, per_hour: int, max_numbers: int = 10_000) -> None:
        self.per_hour = per_hour
        self.max_numbers = max_numbers
        self._seen: OrderedDict[str, deque[int]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, number: str, now_ms: int) -> bool:
        """Count one message from `number` at `now_ms`; False when it is one too many."""
        with self._lock:
            times = self._seen.pop(number, None) or deque()
            while times and times[0] <= now_ms - HOUR_MS:
                times.popleft()
            allowed = len(times) < self.per_hour
            if allowed:
                times.append(now_ms)
            self._seen[number] = times  # most recent last
            while len(self._seen) > self.max_numbers:
                self._seen.popitem(last=False)
            return allowed
