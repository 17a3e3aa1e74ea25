"""The gateway's status connection: MQTT 3.1.1, one QoS 0 subscription, read in large chunks.

A fleet's heartbeats are most of the messages a gateway receives. paho reads each packet
with several small `recv` calls after a `select` and builds a message object per packet
through its generic machinery: about 0.14 ms of CPU per status on the bench machine, more
than the whole health path after it. This connection only ever subscribes and reads, so
it needs none of that: it reads up to 64 KB per `recv` and splits every complete PUBLISH
out of the buffer. The connection has no session (clean session): the retained statuses
(and wills) replay at every (re)connect, which is what the health monitor builds on.
"""
from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Callable

log = logging.getLogger("panic.ingest")

READ_SIZE = 65536
# The broker closes a connection that sent nothing for 1.5 x keepalive: ping well before.
PING_FRACTION = 0.5
MAX_PACKET = 1 << 20  # a status is at most 1 KB; anything this large is a broken stream

CONNACK, PUBLISH, PUBACK, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 2, 3, 4, 9, 12, 13, 14


class ProtocolError(ValueError):
    pass


def _str(s: bytes) -> bytes:
    return struct.pack("!H", len(s)) + s


def _packet(head: int, body: bytes) -> bytes:
    out = bytearray((head,))
    n = len(body)
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out) + body


def connect_packet(client_id: str, username: str, password: str, keepalive: int) -> bytes:
    flags = 0x02 | (0x80 if username else 0) | (0x40 if password else 0)  # clean session
    body = b"\x00\x04MQTT\x04" + bytes((flags,)) + struct.pack("!H", keepalive) + _str(client_id.encode())
    if username:
        body += _str(username.encode())
    if password:
        body += _str(password.encode())
    return _packet(0x10, body)


def subscribe_packet(topic: str, pid: int = 1, qos: int = 0) -> bytes:
    return _packet(0x82, struct.pack("!H", pid) + _str(topic.encode()) + bytes((qos,)))


def split(buf: bytes | bytearray) -> tuple[list[tuple[int, bytes]], int]:
    """Every complete packet at the start of `buf` as (first byte, body), and how many bytes
    they took; an incomplete packet at the end is left for the next read."""
    out: list[tuple[int, bytes]] = []
    pos, end = 0, len(buf)
    while end - pos >= 2:
        head = buf[pos]
        n, mult, i = 0, 1, pos + 1
        while True:
            if i >= end:
                return out, pos
            b = buf[i]
            n += (b & 0x7F) * mult
            i += 1
            if not b & 0x80:
                break
            mult *= 128
            if mult > 128 ** 3:
                raise ProtocolError("remaining length longer than 4 bytes")
        if n > MAX_PACKET:
            raise ProtocolError(f"packet of {n} bytes")
        if end - i < n:
            return out, pos
        out.append((head, bytes(buf[i:i + n])))
        pos = i + n
    return out, pos


def publish_parts(head: int, body: bytes) -> tuple[str, bytes, bool, int, int]:
    """(topic, payload, retain, qos, packet id) of a PUBLISH's body."""
    if len(body) < 2:
        raise ProtocolError("PUBLISH without a topic")
    tlen = (body[0] << 8) | body[1]
    qos = (head >> 1) & 3
    start = 2 + tlen + (2 if qos else 0)
    if len(body) < start:
        raise ProtocolError("PUBLISH shorter than its topic")
    pid = ((body[2 + tlen] << 8) | body[3 + tlen]) if qos else 0
    return body[2:2 + tlen].decode("utf-8", "replace"), body[start:], bool(head & 1), qos, pid


class StatusReader:
    """One thread: connect, subscribe `topic` at QoS 0, hand every PUBLISH to `on_message(topic,
    payload, retained)`, ping, and reconnect with backoff whenever the link fails."""

    def __init__(self, *, host: str, port: int, client_id: str, username: str, password: str, topic: str,
                 on_message: Callable[[str, bytes, bool], None], keepalive: int = 15,
                 name: str = "status-reader", on_superseded: Callable[[int], None] = lambda n: None) -> None:
        self.host, self.port = host, port
        self.client_id, self.username, self.password = client_id, username, password
        self.topic = topic
        self.on_message = on_message
        self.on_superseded = on_superseded  # how many a newer status of the same device replaced in one read
        self.keepalive = keepalive
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        sock = self._sock
        if sock is not None:
            try:
                sock.sendall(b"\xe0\x00")  # DISCONNECT: no will, a clean goodbye
            except OSError:
                pass
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)

    def _run(self) -> None:
        delay = 0.2
        while not self._stop.is_set():
            try:
                self._session()
                delay = 0.2
            except (OSError, ProtocolError) as exc:
                if not self._stop.is_set():
                    log.warning("status connection to %s:%s: %s", self.host, self.port, exc)
            finally:
                self.connected.clear()
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, 5.0)

    def _session(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=10)
        self._sock = sock
        sock.sendall(connect_packet(self.client_id, self.username, self.password, self.keepalive))
        sock.sendall(subscribe_packet(self.topic))
        ping_every = max(1.0, self.keepalive * PING_FRACTION)
        sock.settimeout(ping_every)
        last_sent = time.monotonic()
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
                self._hand_on(sock, packets)
            if time.monotonic() - last_sent >= ping_every:
                sock.sendall(b"\xc0\x00")
                last_sent = time.monotonic()

    def _hand_on(self, sock: socket.socket, packets: list[tuple[int, bytes]]) -> None:
        """Of several statuses of one device in one read only the newest is handed on (a
        status supersedes the older ones, as in the StatusGate): a device flooding its topic
        then costs a split per message, not a hand-over each (docs/security.md, row 4)."""
        latest: dict[str, tuple[bytes, bool]] = {}
        n = 0
        for head, body in packets:
            if head >> 4 != PUBLISH:
                self._handle(head, body)
                continue
            topic, payload, retain, qos, pid = publish_parts(head, body)
            if qos == 1:  # the broker never upgrades a QoS 0 subscription; acked anyway
                sock.sendall(b"\x40\x02" + struct.pack("!H", pid))
            n += 1
            latest.pop(topic, None)  # in the order of each topic's newest
            latest[topic] = (payload, retain)
        if n > len(latest):
            self.on_superseded(n - len(latest))
        for topic, (payload, retain) in latest.items():
            try:
                self.on_message(topic, payload, retain)
            except Exception:
                log.exception("status on %s not handed on", topic[:120])

    def _handle(self, head: int, body: bytes) -> None:
        kind = head >> 4
        if kind == CONNACK:
            if len(body) < 2 or body[1] != 0:
                raise ProtocolError(f"broker refused the gateway's status connection (code {body[1:2].hex()})")
            self.connected.set()
            log.info("status connection up: %s:%s", self.host, self.port)
        elif kind == SUBACK and body[-1:] == b"\x80":
            raise ProtocolError(f"broker refused the subscription to {self.topic}")
