"""Signed acks to devices over a connection of their own: MQTT 3.1.1, every ack of an ingest
batch written in one `send`, the broker's PUBACKs read in bulk.

Through paho each ack cost a publish on its own: the message object and its tracking, a
wake-up of paho's network thread through its socket pair, a `send`, and later the broker's
PUBACK read and matched byte by byte (docs/benchmarks.md: about as much CPU as the rest of
an alert's path). An ack needs none of that tracking: the button retransmits its alert until
it holds a verified ack, and the gateway answers a retransmission with the same ack. So the
acks are still QoS 1 (the broker queues them in the session of a button that is away), but
what the broker confirms is only read and dropped. While this connection is down, `publish`
says so and the caller publishes through paho as before.
"""
from __future__ import annotations

import logging
import time

from .lean import LeanLink, publish_packet

log = logging.getLogger("panic.ingest")


class AckWriter(LeanLink):
    KIND = "ack"

    def __init__(self, *, host: str, port: int, client_id: str, username: str, password: str,
                 keepalive: int = 15, name: str = "acks") -> None:
        super().__init__(host=host, port=port, client_id=client_id, username=username, password=password,
                         keepalive=keepalive, name=name)
        self._pid = 0

    def publish(self, items: list[tuple[str, bytes]]) -> bool:
        """Write every (topic, payload) as a QoS 1 PUBLISH in one send; False (nothing
        written) while the connection is down."""
        sock = self._sock
        if sock is None or not self.connected.is_set():
            return False
        with self._send_lock:
            packets = []
            pid = self._pid
            for topic, payload in items:
                pid = pid % 65535 + 1
                packets.append(publish_packet(topic.encode(), payload, pid))
            self._pid = pid
            try:
                sock.sendall(b"".join(packets))
            except OSError as exc:
                # A send cut short may have delivered some of them: the buttons whose ack is
                # lost retransmit, and are answered again.
                log.warning("ack connection: %s; acks go through the main connection", exc)
                self.connected.clear()
                return False
            self._last_sent = time.monotonic()
        return True
