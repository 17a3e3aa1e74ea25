# MQTT client link rules under micropython, on a socket with mbedTLS's write semantics:
# a stuck write is retried with the same bytes; PUBACK timeout -> DUP of the same packet id
# -> reconnect; a refused SUBACK is an error; in-flight messages capped; DNS looked up once.
import gc
import time

from mp_util import check, done, eq  # puts firmware/ on sys.path

# isort: split
import mqtt


class MbedtlsSock:
    """Writes as mbedTLS does on a non-blocking socket: a record of at most 4096 bytes;
    while the link is full the record is held and None (WANT_WRITE) returned; the next
    call is assumed to pass the same data and is reported written in full."""

    def __init__(self):
        self.room = 0          # bytes the link takes before it is full
        self.wire = []         # what went out, one record a piece
        self.held = None
        self.inbox = bytearray()

    def write(self, data):
        n = min(len(data), 4096)
        if self.held is None:
            self.held = bytes(data[:n])
        if self.room < len(self.held):
            return None
        self.room -= len(self.held)
        self.wire.append(self.held)
        self.held = None
        return n

    def readinto(self, buf):
        if not self.inbox:
            return None
        k = min(len(buf), len(self.inbox))
        buf[:k] = self.inbox[:k]
        self.inbox = self.inbox[k:]
        return k

    def close(self):
        pass


def client():
    c = mqtt.Client("dev-1", "dev-1", "pw", 60, "panic/v1/dev-1/status", b"offline",
                    lambda t, p: None, lambda: None, lambda m: None)
    s = MbedtlsSock()
    c.sock = s
    c.state = mqtt.UP
    c._t_rx = c._t_io = time.ticks_ms()
    return c, s


# 8 x 400 B while the link is full, then the link frees up: all 8 arrive intact.
c, s = client()
pids = [c.publish("panic/v1/dev-1/alert", bytes([65 + i]) * 400, retain=False, keep=False) for i in range(8)]
s.room = 1 << 20
for _ in range(40):
    c.service()
gc.collect()
sent = b"".join([mqtt.publish_pkt("panic/v1/dev-1/alert", bytes([65 + i]) * 400, 1, False, False, p)
                 for i, p in enumerate(pids)])
wire = b"".join(s.wire)
eq(len(wire), len(sent), "every byte on the wire")
check(wire == sent, "the same bytes, in order")
sent = wire = None

# In flight capped: a backlog goes out a few at a time, paced by PUBACKs.
c, s = client()
s.room = 1 << 20
n = 0
while c.can_send():
    c.publish("panic/v1/dev-1/alert", b"x" * 300, retain=False, keep=False)
    n += 1
eq(n, mqtt.MAX_INFLIGHT, "can_send stops at the in-flight cap")
pid = sorted(c.inflight)[0]
s.inbox.extend(bytes((0x40, 2, pid >> 8, pid & 0xFF)))
c.service()
check(c.can_send(), "a PUBACK makes room")

# PUBACK timeout: DUP resend of the same packet id, twice, then the link is dropped.
c, s = client()
s.room = 1 << 20
c.response_ms = 30
pid = c.publish("panic/v1/dev-1/alert", b"alert", retain=False, keep=False)
first = s.wire[0]
dups = []
t0 = time.ticks_ms()
while c.state == mqtt.UP and time.ticks_diff(time.ticks_ms(), t0) < 1000:
    k = len(s.wire)
    c.service()
    if len(s.wire) > k:
        dups.append(b"".join(s.wire[k:]))
    time.sleep_ms(5)
eq(len(dups), 2, "two DUP resends before giving up")
for d in dups:
    eq(d[0], first[0] | 0x08, "DUP flag set")
    eq(d[1:], first[1:], "same packet id and payload")
eq(c.state, mqtt.CLOSED, "then the link is dropped")
eq((c.err, c.kind), ("puback timeout", mqtt.ERR_NO_BROKER), "reason and kind")

# A refused ack subscription is a link error (auth), not a link that looks healthy.
c, s = client()
s.room = 1 << 20
pid = c.subscribe("panic/v1/dev-1/ack")
s.inbox.extend(bytes((0x90, 3, pid >> 8, pid & 0xFF, 0x80)))
c.service()
eq(c.state, mqtt.CLOSED, "SUBACK 0x80 closes the link")
eq((c.err, c.kind), ("suback refused", mqtt.ERR_AUTH), "reason and kind")

# Keepalive from the last packet received: a link that only sends is pinged, and dropped
# when the broker stays silent.
c, s = client()
s.room = 1 << 20
c.keepalive = 1
c.response_ms = 200
t0 = time.ticks_ms()
while c.state == mqtt.UP and time.ticks_diff(time.ticks_ms(), t0) < 3000:
    c.publish("panic/v1/dev-1/status", b"x", retain=True, keep=True)   # sending all the time
    c.forget(c.pid)
    c.service()
    time.sleep_ms(20)
check(b"\xc0\x00" in s.wire, "PINGREQ although the client kept sending")
eq(c.err, "ping timeout", "silent broker found")


# DNS: resolved once for a host, however often the client reconnects.
real = mqtt.socket


class Resolver:
    SOCK_STREAM = real.SOCK_STREAM

    def __init__(self):
        self.n = 0

    def getaddrinfo(self, host, port, af=0, typ=0):
        self.n += 1
        return real.getaddrinfo("127.0.0.1", port, af, typ)

    def socket(self, af, typ):
        return real.socket(af, typ)


r = Resolver()
mqtt.socket = r
try:
    c, _ = client()
    c.state = mqtt.CLOSED
    c.sock = None
    for _ in range(3):
        try:
            c.start("broker.example", 1)
        except OSError:
            pass
        c.close()
finally:
    mqtt.socket = real
eq(r.n, 1, "one lookup for three connects")
done()
