"""A lean MQTT link (3.1.1, or 5 where the connection needs a Receive Maximum) for the
gateway's high-volume connections: alerts in (alert_reader.py), statuses in
(status_reader.py), acks and incident state out (publisher.py), the fleet's commands.

paho reads each packet with several small `recv` calls after a `select`, and builds and
tracks a message object per packet through its generic machinery: 0.05-0.14 ms of CPU per
message on the bench machine (docs/benchmarks.md), about as much as the rest of an alert's
path. These connections need none of that: read up to 64 KB per `recv`, split every complete
packet out of the buffer, write a batch's packets (PUBACKs, acks) in one `send`.
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


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(head: int, body: bytes) -> bytes:
    return bytes((head,)) + _varint(len(body)) + body


def connect_packet(client_id: str, username: str, password: str, keepalive: int, clean: bool = True,
                   properties: bytes | None = None) -> bytes:
    """CONNECT: MQTT 3.1.1, or MQTT 5 when `properties` is given (b"" for none)."""
    flags = (0x02 if clean else 0) | (0x80 if username else 0) | (0x40 if password else 0)
    level, props = (b"\x04", b"") if properties is None else (b"\x05", _varint(len(properties)) + properties)
    body = b"\x00\x04MQTT" + level + bytes((flags,)) + struct.pack("!H", keepalive) + props + _str(client_id.encode())
    if username:
        body += _str(username.encode())
    if password:
        body += _str(password.encode())
    return _packet(0x10, body)


def v5_properties(*, session_expiry_s: int, receive_maximum: int) -> bytes:
    return b"\x11" + struct.pack("!I", session_expiry_s) + b"\x21" + struct.pack("!H", receive_maximum)


def subscribe_packet(topic: str, pid: int = 1, qos: int = 0, v5: bool = False) -> bytes:
    return _packet(0x82, struct.pack("!H", pid) + (b"\x00" if v5 else b"") + _str(topic.encode()) + bytes((qos,)))


def unsubscribe_packet(topic: str, pid: int, v5: bool = False) -> bytes:
    return _packet(0xA2, struct.pack("!H", pid) + (b"\x00" if v5 else b"") + _str(topic.encode()))


def suback_refused(body: bytes) -> bool:
    """A SUBACK (3.1.1 or 5) whose last reason code is a failure (0x80 and above)."""
    return not body or body[-1] >= 0x80


def publish_packet(topic: bytes, payload: bytes, pid: int, qos: int = 1, retain: bool = False) -> bytes:
    """An MQTT 3.1.1 PUBLISH (QoS 0: no packet id)."""
    head = 0x30 | (qos << 1) | (1 if retain else 0)
    return _packet(head, _str(topic) + (struct.pack("!H", pid) if qos else b"") + payload)


def pubacks(pids: list[int]) -> bytes:
    """PUBACKs for these packet ids, ready for one `send` (the same bytes in 3.1.1 and 5:
    a v5 PUBACK of remaining length 2 means success, no properties)."""
    return b"".join(b"\x40\x02" + struct.pack("!H", pid) for pid in pids)


def _varint_at(buf: bytes | bytearray, i: int) -> tuple[int, int] | None:
    """The variable byte integer at `buf[i]` (a remaining length, a property length) and
    where it ends; None when `buf` ends inside it."""
    n, mult = 0, 1
    while i < len(buf):
        b = buf[i]
        n += (b & 0x7F) * mult
        i += 1
        if not b & 0x80:
            return n, i
        mult *= 128
        if mult > 128 ** 3:
            raise ProtocolError("variable byte integer longer than 4 bytes")
    return None


def split(buf: bytes | bytearray) -> tuple[list[tuple[int, bytes]], int]:
    """Every complete packet at the start of `buf` as (first byte, body), and how many bytes
    they took; an incomplete packet at the end is left for the next read."""
    out: list[tuple[int, bytes]] = []
    pos, end = 0, len(buf)
    while end - pos >= 2:
        head = buf[pos]
        got = _varint_at(buf, pos + 1)
        if got is None:
            return out, pos
        n, i = got
        if n > MAX_PACKET:
            raise ProtocolError(f"packet of {n} bytes")
        if end - i < n:
            return out, pos
        out.append((head, bytes(buf[i:i + n])))
        pos = i + n
    return out, pos


def publish_parts(head: int, body: bytes, v5: bool = False) -> tuple[str, bytes, bool, int, int]:
    """(topic, payload, retain, qos, packet id) of a PUBLISH's body; `v5`: skip its properties."""
    if len(body) < 2:
        raise ProtocolError("PUBLISH without a topic")
    tlen = (body[0] << 8) | body[1]
    qos = (head >> 1) & 3
    start = 2 + tlen + (2 if qos else 0)
    if len(body) < start:
        raise ProtocolError("PUBLISH shorter than its topic")
    pid = ((body[2 + tlen] << 8) | body[3 + tlen]) if qos else 0
    if v5:
        got = _varint_at(body, start)
        if got is None:
            raise ProtocolError("PUBLISH with broken properties")
        n, start = got
        start += n
        if start > len(body):
            raise ProtocolError("PUBLISH shorter than its properties")
    return body[2:2 + tlen].decode("utf-8", "replace"), body[start:], bool(head & 1), qos, pid


class LeanLink:
    """One clean-session connection run by its own thread: connect, read in large chunks,
    ping, reconnect with backoff whenever the link fails. A subclass says what follows the
    CONNECT (`_opening`) and what to do with each read's packets (`_packets`)."""

    KIND = "lean"  # the connection's name in logs
    CLEAN = True  # False: the broker keeps the session (QoS 1 messages wait for a reconnect)
    # Seconds to let the next packets gather after a read that emptied the socket (0: read
    # again at once). A read that filled READ_SIZE is followed at once, so a pause never
    # lowers what the connection can carry; it only stops a trickle costing a wake-up each.
    PACE_S = 0.0

    def __init__(self, *, host: str, port: int, client_id: str, username: str, password: str,
                 keepalive: int = 15, name: str = "lean-link",
                 on_connection: Callable[[bool], None] | None = None) -> None:
        self.host, self.port = host, port
        self.client_id, self.username, self.password = client_id, username, password
        self.keepalive = keepalive
        self.on_connection = on_connection  # told when the link comes up (CONNACK) and goes down
        # Counts connections: a packet id is only meaningful on the connection it came in on.
        self.generation = 0
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

    def _properties(self) -> bytes | None:
        """MQTT 5 CONNECT properties; None: the connection speaks MQTT 3.1.1."""
        return None

    def _opening(self) -> bytes:
        """What goes out right after the CONNECT (a SUBSCRIBE, say)."""
        return b""

    def _packets(self, sock: socket.socket, packets: list[tuple[int, bytes]]) -> None:
        for head, body in packets:
            self._control(head, body)

    def _control(self, head: int, body: bytes) -> None:
        """CONNACK: up, or refused; a DISCONNECT from the broker (MQTT 5) ends the session;
        PUBACK, SUBACK and PINGRESP need nothing here."""
        kind = head >> 4
        if kind == CONNACK:
            if len(body) < 2 or body[1] != 0:
                raise ProtocolError(f"broker refused the gateway's {self.KIND} connection (code {body[1:2].hex()})")
            self.connected.set()
            self._up()
            log.info("%s connection up: %s:%s", self.KIND, self.host, self.port)
        elif kind == DISCONNECT:
            raise ProtocolError(f"broker disconnected the {self.KIND} connection (reason {body[:1].hex() or '00'})")

    def _up(self) -> None:
        if self.on_connection is not None:
            self.on_connection(True)

    def _down(self) -> None:
        """The connection ended (after it was up)."""
        if self.on_connection is not None:
            self.on_connection(False)

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
                was_up = self.connected.is_set()
                self.connected.clear()
                sock, self._sock = self._sock, None
                if sock is not None:
                    sock.close()
                if was_up:
                    self._down()
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, 5.0)

    def _session(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.generation += 1
        self._sock = sock
        # The broker closes a connection that sent nothing for 1.5 x keepalive.
        ping_every = max(1.0, self.keepalive * PING_FRACTION)
        sock.settimeout(ping_every)
        self._send(sock, connect_packet(self.client_id, self.username, self.password, self.keepalive, self.CLEAN,
                                        self._properties()) + self._opening())
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
                if self.PACE_S and len(data) < READ_SIZE:
                    self._stop.wait(self.PACE_S)
            if time.monotonic() - self._last_sent >= ping_every:
                self._send(sock, b"\xc0\x00")
