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
import socket
import struct
import threading
import time

from .status_reader import CONNACK, ProtocolError, connect_packet, split

log = logging.getLogger("panic.ingest")

READ_SIZE = 65536


def publish_packet(topic: bytes, payload: bytes, pid: int) -> bytes:
    """A QoS 1 PUBLISH (not retained)."""
    n = 2 + len(topic) + 2 + len(payload)
    length = bytearray()
    while True:
        b, n = n % 128, n // 128
        length.append(b | (0x80 if n else 0))
        if not n:
            break
    return b"\x32" + bytes(length) + struct.pack("!H", len(topic)) + topic + struct.pack("!H", pid) + payload


class AckWriter:
    def __init__(self, *, host: str, port: int, client_id: str, username: str, password: str,
                 keepalive: int = 15, name: str = "acks") -> None:
        self.host, self.port = host, port
        self.client_id, self.username, self.password = client_id, username, password
        self.keepalive = keepalive
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._pid = 0
        self._last_sent = 0.0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        sock = self._sock
        if sock is not None:
            try:
                with self._send_lock:
                    sock.sendall(b"\xe0\x00")  # DISCONNECT
            except OSError:
                pass
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)

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

    # --- the connection's own thread: connect, read and drop PUBACKs, ping, reconnect ----
    def _run(self) -> None:
        delay = 0.2
        while not self._stop.is_set():
            try:
                self._session()
                delay = 0.2
            except (OSError, ProtocolError) as exc:
                if not self._stop.is_set():
                    log.warning("ack connection to %s:%s: %s", self.host, self.port, exc)
            finally:
                self.connected.clear()
                sock, self._sock = self._sock, None
                if sock is not None:
                    sock.close()
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, 5.0)

    def _session(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ping_every = max(1.0, self.keepalive * 0.5)
        sock.settimeout(ping_every)
        sock.sendall(connect_packet(self.client_id, self.username, self.password, self.keepalive))
        self._sock = sock
        self._last_sent = time.monotonic()
        buf = bytearray()
        while not self._stop.is_set():
            try:
                data = sock.recv(READ_SIZE)
            except TimeoutError:
                data = None
            if data == b"":
                raise OSError("closed by the broker")
            if data:
                buf += data
                packets, used = split(buf)
                del buf[:used]
                for head, body in packets:
                    if head >> 4 == CONNACK:
                        if len(body) < 2 or body[1] != 0:
                            raise ProtocolError(f"broker refused the gateway's ack connection "
                                                f"(code {body[1:2].hex()})")
                        self.connected.set()
                        log.info("ack connection up: %s:%s", self.host, self.port)
                    # PUBACK, PINGRESP: nothing to do
            if time.monotonic() - self._last_sent >= ping_every:
                with self._send_lock:
                    sock.sendall(b"\xc0\x00")
                    self._last_sent = time.monotonic()
