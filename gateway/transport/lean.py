"""A lean MQTT 3.1.1 link for the gateway's two high-volume, simple connections: the status
reader (subscribe and read) and the ack writer (publish a batch in one write).

paho reads each packet with several small `recv` calls after a `select`, and builds and
tracks a message object per packet through its generic machinery: about 0.14 ms of CPU per
message on the bench machine (docs/benchmarks.md), more than the rest of a status's path.
These connections need none of that: clean session, read up to 64 KB per `recv`, split every
complete packet out of the buffer. The alert connection, with its session, in-flight window
and PUBACK-after-commit, stays on paho (transport/mqtt.py).
"""
from __future__ import annotations

import logging
import socket
import struct
import threading
import time

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


def connect_packet(client_id: str, username: str, password: str, keepalive: int, clean: bool = True) -> bytes:
    flags = (0x02 if clean else 0) | (0x80 if username else 0) | (0x40 if password else 0)
    body = b"\x00\x04MQTT\x04" + bytes((flags,)) + struct.pack("!H", keepalive) + _str(client_id.encode())
    if username:
        body += _str(username.encode())
    if password:
        body += _str(password.encode())
    return _packet(0x10, body)


def subscribe_packet(topic: str, pid: int = 1, qos: int = 0) -> bytes:
    return _packet(0x82, struct.pack("!H", pid) + _str(topic.encode()) + bytes((qos,)))


def publish_packet(topic: bytes, payload: bytes, pid: int, qos: int = 1) -> bytes:
    """A QoS 1 (or QoS 0: no packet id) PUBLISH, not retained."""
    if qos == 0:
        return _packet(0x30, _str(topic) + payload)
    return _packet(0x32, _str(topic) + struct.pack("!H", pid) + payload)


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




class LeanLink:
    """One clean-session connection run by its own thread: connect, read in large chunks,
    ping, reconnect with backoff whenever the link fails. A subclass says what follows the
    CONNECT (`_opening`) and what to do with each read's packets (`_packets`)."""

    KIND = "lean"  # the connection's name in logs
    CLEAN = True  # False: the broker keeps the session (QoS 1 messages wait for a reconnect)

    def __init__(self, *, host: str, port: int, client_id: str, username: str, password: str,
                 keepalive: int = 15, name: str = "lean-link") -> None:
        self.host, self.port = host, port
        self.client_id, self.username, self.password = client_id, username, password
        self.keepalive = keepalive
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._last_sent = 0.0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        sock = self._sock
        if sock is not None:
            try:
                self._send(sock, b"\xe0\x00")  # DISCONNECT: no will, a clean goodbye
            except OSError:
                pass
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)

    def _send(self, sock: socket.socket, data: bytes) -> None:
        with self._send_lock:
            sock.sendall(data)
            self._last_sent = time.monotonic()

    def _opening(self) -> bytes:
        """What goes out right after the CONNECT (a SUBSCRIBE, say)."""
        return b""

    def _packets(self, sock: socket.socket, packets: list[tuple[int, bytes]]) -> None:
        for head, body in packets:
            self._control(head, body)

    def _control(self, head: int, body: bytes) -> None:
        """CONNACK: up, or refused; PUBACK, SUBACK and PINGRESP need nothing here."""
        if head >> 4 == CONNACK:
            if len(body) < 2 or body[1] != 0:
                raise ProtocolError(f"broker refused the gateway's {self.KIND} connection (code {body[1:2].hex()})")
            self.connected.set()
            log.info("%s connection up: %s:%s", self.KIND, self.host, self.port)

    def _run(self) -> None:
        delay = 0.2
        while not self._stop.is_set():
            try:
                self._session()
                delay = 0.2
            except (OSError, ProtocolError) as exc:
                if not self._stop.is_set():
                    log.warning("%s connection to %s:%s: %s", self.KIND, self.host, self.port, exc)
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
        self._sock = sock
        # The broker closes a connection that sent nothing for 1.5 x keepalive.
        ping_every = max(1.0, self.keepalive * PING_FRACTION)
        sock.settimeout(ping_every)
        self._send(sock, connect_packet(self.client_id, self.username, self.password, self.keepalive, self.CLEAN)
                   + self._opening())
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
                self._packets(sock, packets)
            if time.monotonic() - self._last_sent >= ping_every:
                self._send(sock, b"\xc0\x00")
