"""Everything the gateway publishes to a mosquitto broker: signed acks to buttons, each
incident's retained state, ops events. MQTT 3.1.1 on a connection of its own (lean.py), QoS 1,
a batch's messages written in one `send`.

Through paho each publish cost a message object and its tracking, a wake-up of paho's network
thread through its socket pair, a `send`, and later the broker's PUBACK read and matched byte
by byte: about 0.15 ms of CPU (docs/benchmarks.md), as much as the rest of an alert's path.
Here a publish is one dict entry until its PUBACK comes back in a bulk read.

A message the broker has not confirmed is written again whenever the connection comes back
(as paho does with its queue): an ack published while the broker restarts still reaches the
button, and a retained incident state still reaches dispatch. Written twice is harmless for
both (a button dedupes acks by alert id; a retained state is replaced by itself).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

from .. import metrics
from .lean import PUBACK, LeanLink, publish_packet

log = logging.getLogger("panic.ingest")

# Unconfirmed messages kept for the next connection. A broker down for hours must not grow
# the gateway without bound: past this, the oldest are given up (and counted). The forwarder
# publishes an incident's state again until it is confirmed, and a button retransmits an
# alert until it holds its ack, so what is given up here is sent again by its owner.
MAX_UNCONFIRMED = 50_000


class Pending:
    """One publish: `wait_for_publish` returns once the broker confirmed it (or the timeout).
    Most publishes (acks) are never waited on: the Event is made only for a waiter."""
    __slots__ = ("_event", "_lock", "done", "packet")

    def __init__(self, packet: bytes, qos: int, lock: threading.Lock) -> None:
        self.packet, self._lock = packet, lock
        self.done = qos == 0
        self._event: threading.Event | None = None

    def wait_for_publish(self, timeout: float | None = None) -> None:
        with self._lock:  # the lock the PUBACKs are matched under: no confirmation slips past
            if self.done:
                return
            if self._event is None:
                self._event = threading.Event()
        self._event.wait(timeout)

    def is_published(self) -> bool:
        return self.done


class Publisher(LeanLink):
    KIND = "publish"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._pid = 0
        self._unconfirmed: OrderedDict[int, Pending] = OrderedDict()

    def publish_many(self, items: list[tuple[str, bytes]], *, retain: bool = False) -> list[Pending]:
        """Each (topic, payload) as a QoS 1 PUBLISH, all in one write (or, while the
        connection is down, kept for the next one)."""
        return self._write([(topic, payload, 1, retain) for topic, payload in items])

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> Pending:
        return self._write([(topic, payload.encode() if isinstance(payload, str) else payload, qos, retain)])[0]

    def _write(self, items: list[tuple[str, bytes, int, bool]]) -> list[Pending]:
        out: list[Pending] = []
        with self._send_lock:
            pid = self._pid
            for topic, payload, qos, retain in items:
                if qos:
                    pid = pid % 65535 + 1
                    while pid in self._unconfirmed:  # 65,535 unconfirmed: the oldest id is still taken
                        self._give_up(next(iter(self._unconfirmed)))
                    p = Pending(publish_packet(topic.encode(), payload, pid, 1, retain), 1, self._send_lock)
                    self._unconfirmed[pid] = p
                else:
                    p = Pending(publish_packet(topic.encode(), payload, 0, 0, retain), 0, self._send_lock)
                out.append(p)
            self._pid = pid
            while len(self._unconfirmed) > MAX_UNCONFIRMED:
                self._give_up(next(iter(self._unconfirmed)))
            sock = self._sock
            if sock is not None and self.connected.is_set():
                try:
                    sock.sendall(b"".join(p.packet for p in out))
                    self._last_sent = time.monotonic()
                except OSError as exc:
                    # The reader thread sees the broken link and reconnects; what was not
                    # confirmed is written again then.
                    log.warning("publish connection: %s", exc)
        return out

    def _give_up(self, pid: int) -> None:
        self._unconfirmed.pop(pid, None)
        metrics.publishes_dropped.inc()

    def unconfirmed(self) -> int:
        return len(self._unconfirmed)

    def _up(self) -> None:
        # A clean session: whatever the broker had not confirmed is ours to send again.
        sock = self._sock
        with self._send_lock:
            again = b"".join(p.packet for p in self._unconfirmed.values())
            if again and sock is not None:
                sock.sendall(again)
                self._last_sent = time.monotonic()
        super()._up()

    def _packets(self, sock, packets: list[tuple[int, bytes]]) -> None:
        waiting: list[threading.Event] = []
        with self._send_lock:
            for head, body in packets:
                if head >> 4 == PUBACK and len(body) >= 2:
                    p = self._unconfirmed.pop((body[0] << 8) | body[1], None)
                    if p is not None:
                        p.done = True
                        if p._event is not None:
                            waiting.append(p._event)
        for event in waiting:
            event.set()
        for head, body in packets:
            if head >> 4 != PUBACK:
                self._control(head, body)
