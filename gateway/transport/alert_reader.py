"""The gateway's alert connection: MQTT 5, a persistent session, one shared QoS 1 subscription,
read in large chunks (lean.py), PUBACKs written per committed batch in one `send`.

What each choice keeps:
- a persistent session (clean start off, Session Expiry an hour): alerts published while the
  gateway restarts wait for it in the broker;
- a shared subscription (`$share/<group>/...`): several gateways of a group split the alerts,
  and an alert one of them never PUBACKed goes to another when it dies;
- Receive Maximum: the broker keeps at most that many unacked alerts in flight to the
  gateway, the rest of a burst waits in the session, not in the gateway's memory;
- a PUBACK only once the alert's incident is committed (ingest.py), written for the whole
  batch at once: paho sent each on its own and read each alert with several `recv` calls,
  together about a fifth of the gateway's CPU per alert (docs/benchmarks.md).

A packet id means something only on the connection it came in on: an alert received on a
connection that has since dropped is not PUBACKed on the next one (the broker sends it again
there, with the same id, and that copy is acked once it is stored, as a duplicate).
"""
from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from .lean import (
    PUBLISH,
    SUBACK,
    LeanLink,
    ProtocolError,
    pubacks,
    publish_parts,
    suback_refused,
    subscribe_packet,
    unsubscribe_packet,
    v5_properties,
)

log = logging.getLogger("panic.ingest")

SESSION_EXPIRY_S = 3600


class AlertReader(LeanLink):
    """Subscribe `topic` (shared) at QoS 1 and hand every alert to `on_alert(topic, payload,
    qos, retain, packet id, connection generation)`; `ack` PUBACKs them once they are stored."""

    KIND = "alert"
    CLEAN = False

    def __init__(self, *, topic: str, unsubscribe: str, receive_maximum: int,
                 on_alert: Callable[[str, bytes, int, bool, int, int], None], **kw) -> None:
        super().__init__(**kw)
        self.topic = topic
        self.old_topic = unsubscribe  # an older gateway's session may still carry it
        self.receive_maximum = receive_maximum
        self.on_alert = on_alert

    def _properties(self) -> bytes:
        return v5_properties(session_expiry_s=SESSION_EXPIRY_S, receive_maximum=self.receive_maximum)

    def _opening(self) -> bytes:
        return subscribe_packet(self.topic, pid=1, qos=1, v5=True) + unsubscribe_packet(self.old_topic, pid=2, v5=True)

    def _control(self, head: int, body: bytes) -> None:
        super()._control(head, body)
        if head >> 4 == SUBACK and suback_refused(body):
            raise ProtocolError(f"broker refused the subscription to {self.topic}")

    def _packets(self, sock: socket.socket, packets: list[tuple[int, bytes]]) -> None:
        gen = self.generation
        stray: list[int] = []
        for head, body in packets:
            if head >> 4 != PUBLISH:
                self._control(head, body)
                continue
            topic, payload, retain, qos, pid = publish_parts(head, body, v5=True)
            if not topic.endswith("/alert"):
                if qos:
                    stray.append(pid)  # e.g. a status under an older session's subscription
                continue
            self.on_alert(topic, payload, qos, retain, pid, gen)
        if stray:
            self._send(sock, pubacks(stray))

    def ack(self, pids: list[int], generation: int) -> None:
        """PUBACK these packet ids of connection `generation`, in one write; nothing if that
        connection has gone (the broker sends those alerts again on the next)."""
        sock = self._sock
        if not pids or sock is None or generation != self.generation:
            return
        try:
            self._send(sock, pubacks(pids))
        except OSError as exc:
            log.warning("alert connection: PUBACKs not written (%s); the broker sends those alerts again", exc)
