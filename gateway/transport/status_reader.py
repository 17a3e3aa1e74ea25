"""The gateway's status connection: one QoS 0 subscription, read in large chunks (lean.py).

A fleet's heartbeats are most of the messages a gateway receives, and a status is superseded
by the next one: the connection has no session (clean session), so the retained statuses
(and wills) replay at every (re)connect, which is what the health monitor builds on.
"""
from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from .lean import PUBLISH, SUBACK, LeanLink, ProtocolError, pubacks, publish_parts, suback_refused, subscribe_packet

log = logging.getLogger("panic.ingest")


class StatusReader(LeanLink):
    """Subscribe `topic` at QoS 0 and hand each device's newest status of every read, as one
    block of (topic, payload, retained), to `on_statuses`."""

    KIND = "status"
    # A fleet's heartbeats trickle in a few at a time: read every 50 ms, each wake-up then
    # takes a block of them (and the newest of each device's), for a delay no health rule
    # can see (a device is silent after 1.5 heartbeats).
    PACE_S = 0.05

    def __init__(self, *, host: str, port: int, client_id: str, username: str, password: str, topic: str,
                 on_statuses: Callable[[list[tuple[str, bytes, bool]]], None], keepalive: int = 15,
                 name: str = "status-reader", on_superseded: Callable[[int], None] = lambda n: None) -> None:
        super().__init__(host=host, port=port, client_id=client_id, username=username, password=password,
                         keepalive=keepalive, name=name)
        self.topic = topic
        self.on_statuses = on_statuses
        self.on_superseded = on_superseded  # how many a newer status of the same device replaced in one read

    def _opening(self) -> bytes:
        return subscribe_packet(self.topic)

    def _control(self, head: int, body: bytes) -> None:
        super()._control(head, body)
        if head >> 4 == SUBACK and suback_refused(body):
            raise ProtocolError(f"broker refused the subscription to {self.topic}")

    def _packets(self, sock: socket.socket, packets: list[tuple[int, bytes]]) -> None:
        """Of several statuses of one device in one read only the newest is handed on (a
        status supersedes the older ones, as in the StatusGate): a device flooding its topic
        then costs a split per message, not a hand-over each (docs/security.md, row 4)."""
        latest: dict[str, tuple[bytes, bool]] = {}
        n = 0
        for head, body in packets:
            if head >> 4 != PUBLISH:
                self._control(head, body)
                continue
            topic, payload, retain, qos, pid = publish_parts(head, body)
            if qos == 1:  # the broker never upgrades a QoS 0 subscription; acked anyway
                self._send(sock, pubacks([pid]))
            n += 1
            latest.pop(topic, None)  # in the order of each topic's newest
            latest[topic] = (payload, retain)
        if n > len(latest):
            self.on_superseded(n - len(latest))
        if not latest:
            return
        try:
            self.on_statuses([(topic, payload, retain) for topic, (payload, retain) in latest.items()])
        except Exception:
            log.exception("%d status(es) not handed on", len(latest))
