"""Status traffic between the broker and the health worker, bounded per device.

A status only ever says what a device is like now, so a newer one supersedes an older one
still waiting. Per device the gate keeps at most one status in the health worker's hands
and the newest one waiting, and hands on at most `rate_per_s` a second (with a small burst),
so one device flooding its own status topic costs a dict entry, never a queue that grows
or store writes that take the lock from alert ingest. Statuses come and go in blocks (a
read's worth, a health batch's worth): one lock and one hand-over per block, not per
status. Statuses arrive at QoS 0 on a connection of their own, so nothing waits for them to
be acknowledged (a status is never worth holding the gateway's in-flight window, which
alerts need); each one superseded before the health worker saw it is counted."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import metrics

REASONS = ("superseded", "too_many_topics")
# Bound once: a flood counts one per message.
_LIMITED = {reason: metrics.status_limited.labels(reason) for reason in REASONS}


@dataclass
class _Slot:
    tokens: float
    stamp: float
    busy: bool = False  # one status of this device is with the health worker
    waiting: Any = None  # the newest status not yet handed on


class StatusGate:
    def __init__(self, submit: Callable[[list[Any]], object], *,
                 rate_per_s: float = 1.0, burst: int = 5, max_devices: int = 200_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.submit = submit  # hand a block of statuses to the health worker
        self.rate = rate_per_s
        self.burst = float(burst)
        self.max_devices = max_devices
        self.clock = clock
        self._slots: dict[str, _Slot] = {}
        # The devices with a status held back: the flush visits these, not every device (a
        # 100,000-device fleet would cost a walk of 100,000 slots four times a second).
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-gate", daemon=True)

    # --- the MQTT thread -------------------------------------------------------------
    def offer(self, msgs: list[Any]) -> None:
        hands = []
        superseded = refused = 0
        with self._lock:
            for msg in msgs:
                topic = msg.topic
                slot = self._slots.get(topic)
                if slot is None:
                    if len(self._slots) >= self.max_devices:
                        refused += 1
                        continue
                    slot = self._slots[topic] = _Slot(tokens=self.burst, stamp=self.clock())
                if slot.waiting is not None:
                    superseded += 1
                slot.waiting = msg
                hand = self._take(topic, slot)
                if hand is not None:
                    hands.append(hand)
        if superseded:
            _LIMITED["superseded"].inc(superseded)
        if refused:
            _LIMITED["too_many_topics"].inc(refused)
        if hands:
            self.submit(hands)

    # --- the health worker ----------------------------------------------------------
    def done(self, msgs: list[Any]) -> None:
        """The health worker has handled `msgs`: hand on each device's next one if due."""
        hands = []
        with self._lock:
            for msg in msgs:
                slot = self._slots.get(msg.topic)
                if slot is not None:
                    slot.busy = False
                    hand = self._take(msg.topic, slot)
                    if hand is not None:
                        hands.append(hand)
        if hands:
            self.submit(hands)

    def pending(self) -> int:
        """Statuses held back (waiting for their device's turn)."""
        with self._lock:
            return len(self._held)

    def _take(self, topic: str, slot: _Slot) -> Any:
        """The waiting status, when the device has none with the worker and a token to spend;
        else None, and the device is remembered as holding one (if it does)."""
        if slot.waiting is None:
            return None
        if not slot.busy:
            now = self.clock()
            slot.tokens = min(self.burst, slot.tokens + (now - slot.stamp) * self.rate)
            slot.stamp = now
            if slot.tokens >= 1.0:
                slot.tokens -= 1.0
                slot.busy = True
                msg, slot.waiting = slot.waiting, None
                self._held.discard(topic)
                return msg
        self._held.add(topic)
        return None

    # --- held-back statuses go on when their device's rate allows ------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def flush(self) -> None:
        with self._lock:
            hands = [m for m in (self._take(t, self._slots[t]) for t in list(self._held)) if m is not None]
        if hands:
            self.submit(hands)

    def _run(self) -> None:
        tick = min(0.25, 1.0 / self.rate) if self.rate > 0 else 0.25
        while not self._stop.wait(tick):
            self.flush()
