"""An asyncio MQTT 3.1.1 load client that speaks the exact device protocol.

One process holds thousands of device connections: each is an `asyncio.Protocol` with
the device's own login (client id = username = device id), `clean_session=0`, the will
(retained `{"v":1,"dev":…,"state":"offline"}` on `<root>/<dev>/status`), a QoS 1
subscription to its own `ack`, signed QoS 1 alerts and retained QoS 1 status heartbeats
(bodies and signatures from `protocol`, as the firmware's). Every incoming ack is
PUBACKed and checked by `protocol.parse_ack`, as the firmware checks it, before it counts.

Keepalive pings for all connections come from one timer (a task per connection would
cost more than the connections); a connection can "vanish" (stop sending anything, socket
left open, as a device whose power or WiFi died) so the broker's keepalive timeout and
the will are what reveal it.
"""
from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import protocol

ROOT = protocol.TOPIC_ROOT


# --- codec -------------------------------------------------------------------------------
def _varlen(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: bytes) -> bytes:
    return struct.pack("!H", len(s)) + s


def connect_packet(cid: str, user: str, password: str, keepalive: int, will_topic: str | None,
                   will_msg: bytes | None, clean: bool = False) -> bytes:
    flags = 0xC0 | (0x02 if clean else 0)  # username + password
    payload = _str(cid.encode())
    if will_topic:
        flags |= 0x04 | (1 << 3) | 0x20  # will, QoS 1, retained
        payload += _str(will_topic.encode()) + _str(will_msg or b"")
    payload += _str(user.encode()) + _str(password.encode())
    var = b"\x00\x04MQTT\x04" + bytes((flags, keepalive >> 8, keepalive & 0xFF))
    body = var + payload
    return b"\x10" + _varlen(len(body)) + body


def publish_packet(topic: str, payload: bytes, pid: int, qos: int = 1, retain: bool = False) -> bytes:
    head = 0x30 | (qos << 1) | (1 if retain else 0)
    body = _str(topic.encode()) + (struct.pack("!H", pid) if qos else b"") + payload
    return bytes((head,)) + _varlen(len(body)) + body


def subscribe_packet(topic: str, pid: int, qos: int = 1) -> bytes:
    body = struct.pack("!H", pid) + _str(topic.encode()) + bytes((qos,))
    return b"\x82" + _varlen(len(body)) + body


PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


def alert_body(dev: str, boot: int, seq: int, kind: str = "panic", age: int = 3) -> bytes:
    """A bench button's alert: pressed now, at Kauman's fixed location."""
    return protocol.alert_body(dev=dev, boot=boot, seq=seq, kind=kind, t=time.time_ns() // 1_000_000, age=age,
                               lat6=-7982600, lon6=112627000, acc=25, src="fixed", batt=87, rssi=-61)


def status_body(dev: str, boot: int, up: int, state: str = "online") -> bytes:
    return protocol.status_body(dev=dev, state=state, fw="bench", boot=boot, up=up, batt=87, rssi=-61, outbox=0)


will_body = protocol.will_body


# --- one device connection ---------------------------------------------------------------
@dataclass
class Creds:
    dev: str
    secret: str
    password: str

    @classmethod
    def from_import(cls, c: dict) -> Creds:
        return cls(c["id"], c["secret"], c["mqtt_password"])


class DeviceConn(asyncio.Protocol):
    def __init__(self, load: Load, creds: Creds, boot: int) -> None:
        self.load = load
        self.creds = creds
        self.dev = creds.dev
        self.secret = creds.secret.encode()
        self.boot = boot
        self.seq = 0
        self.pid = 0
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.connack: asyncio.Future = load.loop.create_future()
        self.suback: asyncio.Future = load.loop.create_future()
        self.inflight: dict[int, str] = {}  # packet id -> alert id (or "" for a status)
        self.vanished = False
        self.observer: Callable[[bytes, bytes, float], None] | None = None
        self.observer_login: tuple[str, str] | None = None   # (user, password) of a plain subscriber
        self.closed = load.loop.create_future()
        self.t_io = 0.0
        self.t_status = 0.0
        self.started = time.monotonic()

    # -- transport ----------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.observer_login is not None:
            user, password = self.observer_login
            self._write(connect_packet(self.dev, user, password, self.load.keepalive, None, None, clean=True))
            return
        c = self.creds
        self._write(connect_packet(c.dev, c.dev, c.password, self.load.keepalive,
                                   protocol.status_topic(c.dev, self.load.root), will_body(c.dev)))

    def connection_lost(self, exc) -> None:
        self.load.conns.pop(self.dev, None)
        self.load.lost += 1
        for fut in (self.connack, self.suback):
            if not fut.done():
                fut.set_exception(ConnectionError(f"{self.dev}: connection lost"))
        if not self.closed.done():
            self.closed.set_result(time.perf_counter())

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.vanished:
            self.transport.write(data)
            self.t_io = time.monotonic()

    def _next_pid(self) -> int:
        self.pid = self.pid % 65535 + 1
        return self.pid

    def data_received(self, data: bytes) -> None:
        if self.vanished:
            return  # a dead device reads nothing and answers nothing
        buf = self.buf
        buf += data
        while len(buf) >= 2:
            # remaining length
            mult, n, i = 1, 0, 1
            while True:
                if i >= len(buf):
                    return
                b = buf[i]
                n += (b & 0x7F) * mult
                mult *= 128
                i += 1
                if not b & 0x80:
                    break
            if len(buf) < i + n:
                return
            head = buf[0]
            body = bytes(buf[i:i + n])
            del buf[:i + n]
            self._packet(head, body)

    def _packet(self, head: int, body: bytes) -> None:
        kind = head & 0xF0
        if kind == 0x30:
            qos = (head >> 1) & 3
            tlen = struct.unpack_from("!H", body)[0]
            topic = body[2:2 + tlen]
            off = 2 + tlen
            if qos:
                pid = body[off:off + 2]
                off += 2
                self._write(b"\x40\x02" + pid)  # PUBACK first, as the firmware does
            self.load._incoming(self, topic, body[off:])
        elif kind == 0x40:
            pid = struct.unpack_from("!H", body)[0]
            aid = self.inflight.pop(pid, None)
            if aid:
                self.load._puback(self, aid)
        elif kind == 0x20:
            if not self.connack.done():
                if body[1] == 0:
                    self.connack.set_result(True)
                else:
                    self.connack.set_exception(ConnectionError(f"{self.dev}: CONNACK rc={body[1]}"))
        elif kind == 0x90 and not self.suback.done():
            self.suback.set_result(body[2:])
        # PINGRESP (0xD0) needs nothing

    # -- device actions -----------------------------------------------------------------
    def send_alert(self, kind: str = "panic") -> str:
        self.seq += 1
        body = alert_body(self.dev, self.boot, self.seq, kind)
        aid = protocol.alert_id(self.dev, self.boot, self.seq)
        pid = self._next_pid()
        self.inflight[pid] = aid
        self.load.sent[aid] = time.perf_counter()
        self._write(publish_packet(protocol.alert_topic(self.dev, self.load.root),
                                   protocol.sign(body, self.creds.secret), pid))
        return aid

    def send_status(self) -> None:
        pid = self._next_pid()
        self.inflight[pid] = ""
        up = int(time.monotonic() - self.started)
        self._write(publish_packet(protocol.status_topic(self.dev, self.load.root),
                                   status_body(self.dev, self.boot, up), pid, retain=True))
        self.t_status = time.monotonic()
        self.load.statuses += 1

    def vanish(self) -> None:
        """Die silently: no DISCONNECT, no FIN, no more pings; the broker must time us out."""
        self.vanished = True

    def disconnect(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._write(DISCONNECT)
            self.transport.close()


# --- many devices --------------------------------------------------------------------------
@dataclass
class AckRecord:
    id: str
    stage: str
    t: float  # perf_counter when the verified ack arrived


@dataclass
class Load:
    port: int
    host: str = "127.0.0.1"
    root: str = ROOT
    keepalive: int = 30
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_event_loop)
    on_ack: Callable[[AckRecord], None] | None = None

    def __post_init__(self) -> None:
        self.conns: dict[str, DeviceConn] = {}
        self.sent: dict[str, float] = {}        # alert id -> perf_counter at publish
        self.pubacked: dict[str, float] = {}    # alert id -> perf_counter at the broker's PUBACK
        self.acked: dict[str, AckRecord] = {}   # alert id -> first verified `received` (or final) ack
        self.ack_count = 0
        self.bad_acks = 0
        self.lost = 0
        self.statuses = 0
        self._ack_waiters: list[tuple[int, asyncio.Future]] = []
        self._tick: asyncio.Task | None = None
        self.heartbeat_s: float | None = None
        self.connect_failures = 0

    # -- connecting ---------------------------------------------------------------------
    async def connect_one(self, creds: Creds, boot: int = 1, retries: int = 5) -> DeviceConn:
        for attempt in range(retries):
            conn = DeviceConn(self, creds, boot)
            try:
                await self._dial(conn)
                await asyncio.wait_for(conn.connack, 20)
                conn._write(subscribe_packet(protocol.ack_topic(creds.dev, self.root), conn._next_pid()))
                await asyncio.wait_for(conn.suback, 20)
            except (TimeoutError, OSError, ConnectionError):
                self.connect_failures += 1
                if conn.transport is not None:
                    conn.transport.abort()
                await asyncio.sleep(0.05 * (attempt + 1))
                continue
            self.conns[creds.dev] = conn
            return conn
        raise ConnectionError(f"{creds.dev}: could not connect after {retries} tries")

    async def _dial(self, conn: DeviceConn) -> None:
        await self.loop.create_connection(lambda: conn, self.host, self.port)

    async def connect_all(self, creds: list[Creds], concurrency: int = 200, boot: int = 1) -> float:
        """Connect every device (at most `concurrency` handshakes at once); returns seconds."""
        t0 = time.perf_counter()
        sem = asyncio.Semaphore(concurrency)

        async def one(c: Creds) -> None:
            async with sem:
                await self.connect_one(c, boot)
        await asyncio.gather(*(one(c) for c in creds))
        if self._tick is None:
            self._tick = self.loop.create_task(self._ticker())
        return time.perf_counter() - t0

    async def _ticker(self) -> None:
        """Keepalive pings and heartbeats for every connection, spread out in time."""
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            ka = self.keepalive * 0.75
            hb = self.heartbeat_s
            for conn in list(self.conns.values()):
                if conn.vanished:
                    continue
                if hb and now - conn.t_status >= hb:
                    conn.send_status()
                elif now - conn.t_io >= ka:
                    conn._write(PINGREQ)

    def start_heartbeats(self, every_s: float) -> None:
        """Status every `every_s`, each device at its own phase (as a real fleet spreads)."""
        now = time.monotonic()
        conns = list(self.conns.values())
        for i, conn in enumerate(conns):
            # as if each had last sent a status at a random-ish point of the last period
            conn.t_status = now - every_s * (i / max(1, len(conns)))
        self.heartbeat_s = every_s

    async def close(self) -> None:
        if self._tick:
            self._tick.cancel()
        for conn in list(self.conns.values()):
            if conn.vanished and conn.transport is not None:
                conn.transport.abort()
            else:
                conn.disconnect()
        await asyncio.sleep(0.05)

    # -- traffic ------------------------------------------------------------------------
    def _puback(self, conn: DeviceConn, aid: str) -> None:
        self.pubacked[aid] = time.perf_counter()

    async def observe(self, user: str, password: str, topic: str,
                      callback: Callable[[bytes, bytes, float], None]) -> DeviceConn:
        """A plain subscriber on the same event loop (paho's select() cannot take a file
        descriptor above 1024, which a process holding 10,000 connections hands out)."""
        conn = DeviceConn(self, Creds(f"bench-observer-{id(callback) % 10000}", "", password), 1)
        conn.observer = callback
        conn.observer_login = (user, password)
        await self.loop.create_connection(lambda: conn, self.host, self.port)
        await asyncio.wait_for(conn.connack, 20)
        conn._write(subscribe_packet(topic, conn._next_pid()))
        await asyncio.wait_for(conn.suback, 20)
        self.conns[conn.dev] = conn
        return conn

    def _incoming(self, conn: DeviceConn, topic: bytes, payload: bytes) -> None:
        t = time.perf_counter()
        if conn.observer is not None:
            conn.observer(topic, payload, t)
            return
        _, ack = protocol.parse_ack(payload, conn.creds.secret)
        if ack is None:
            self.bad_acks += 1
            return
        aid, stage = ack["id"], ack["stage"]
        self.ack_count += 1
        if aid not in self.acked:
            rec = AckRecord(aid, stage, t)
            self.acked[aid] = rec
            if self.on_ack:
                self.on_ack(rec)
            n = len(self.acked)
            while self._ack_waiters and self._ack_waiters[0][0] <= n:
                _, fut = self._ack_waiters.pop(0)
                if not fut.done():
                    fut.set_result(t)

    async def wait_acks(self, n: int, timeout: float) -> float:
        """Wait until `n` distinct alerts are acked; returns the perf_counter of the n-th."""
        if len(self.acked) >= n:
            return max(r.t for r in self.acked.values())
        fut = self.loop.create_future()
        self._ack_waiters.append((n, fut))
        self._ack_waiters.sort(key=lambda x: x[0])
        return await asyncio.wait_for(fut, timeout)
