# Small non-blocking MQTT 3.1.1 client.
# Why not umqtt: umqtt.simple blocks in connect/wait_msg, and a panic button must keep
# serving its button, LED and watchdog while a link is slow or gone.
import errno
import select
import socket
import time
from micropython import const

_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)
_SUBACK = const(0x90)
_PINGREQ = b"\xc0\x00"
_PINGRESP = const(0xD0)
_DISCONNECT = b"\xe0\x00"

# Incoming packets bigger than this are a protocol violation for us (signed payloads are
# capped at 1 KiB); refusing them bounds the receive buffer.
MAX_IN = const(1280)
# Unsent bytes beyond this mean the peer stopped reading: drop the link and reconnect.
MAX_OUT = const(8192)

CLOSED = const(0)
TCP = const(1)      # TCP connect in progress
WAIT_ACK = const(2)  # CONNECT sent, waiting for CONNACK
UP = const(3)

_POLLERR = select.POLLERR | select.POLLHUP


# ---- codec (pure functions, unit-tested under micropython) ----

def enc_len(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def dec_len(buf, pos):
    """Decode a remaining-length field at buf[pos]. Returns (value, next_pos),
    None if more bytes are needed; raises ValueError if malformed."""
    mult = 1
    val = 0
    for i in range(4):
        if pos + i >= len(buf):
            return None
        b = buf[pos + i]
        val += (b & 0x7F) * mult
        if not b & 0x80:
            return val, pos + i + 1
        mult <<= 7
    raise ValueError("remaining length")


def _str(s):
    if isinstance(s, str):
        s = s.encode()
    n = len(s)
    return bytes((n >> 8, n & 0xFF)) + s


def pkt(head, body):
    return bytes((head,)) + enc_len(len(body)) + body


def connect_pkt(cid, user, pw, keepalive, will_topic=None, will_msg=None,
                will_retain=True, will_qos=1, clean=False):
    flags = 0x02 if clean else 0
    payload = _str(cid)
    if will_topic:
        flags |= 0x04 | (will_qos << 3) | (0x20 if will_retain else 0)
        payload += _str(will_topic) + _str(will_msg)
    if user is not None:
        flags |= 0x80
        payload += _str(user)
        if pw is not None:
            flags |= 0x40
            payload += _str(pw)
    var = b"\x00\x04MQTT\x04" + bytes((flags, keepalive >> 8, keepalive & 0xFF))
    return pkt(_CONNECT, var + payload)


def publish_pkt(topic, payload, qos=1, retain=False, dup=False, pid=0):
    head = _PUBLISH | (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
    var = _str(topic)
    if qos:
        var += bytes((pid >> 8, pid & 0xFF))
    t = var + payload
    return bytes((head,)) + enc_len(len(t)) + t


def subscribe_pkt(pid, topic, qos=1):
    return pkt(_SUBSCRIBE, bytes((pid >> 8, pid & 0xFF)) + _str(topic) + bytes((qos,)))


def puback_pkt(pid):
    return bytes((_PUBACK, 2, pid >> 8, pid & 0xFF))


def header(buf):
    """Fixed header at the start of buf: (first_byte, body_start, body_len) or None."""
    if len(buf) < 2:
        return None
    r = dec_len(buf, 1)
    if r is None:
        return None
    return buf[0], r[1], r[0]


def split(buf):
    """Find one complete packet at the start of buf.
    Returns (first_byte, body_start, total_len) or None when incomplete."""
    r = header(buf)
    if r is None:
        return None
    first, start, n = r
    if n > MAX_IN:
        raise ValueError("packet too big")
    if len(buf) < start + n:
        return None
    return first, start, start + n


def parse_publish(first, body):
    """body: bytes of the variable header + payload. Returns (topic, pid, payload)."""
    tl = (body[0] << 8) | body[1]
    topic = bytes(body[2:2 + tl]).decode()
    p = 2 + tl
    pid = 0
    if first & 0x06:
        pid = (body[p] << 8) | body[p + 1]
        p += 2
    return topic, pid, bytes(body[p:])


# ---- client ----

class Client:
    def __init__(self, cid, user, pw, keepalive_s, will_topic, will_msg, on_msg, on_up, log):
        self.cid = cid
        self.user = user
        self.pw = pw
        self.keepalive = keepalive_s
        self.will_topic = will_topic
        self.will_msg = will_msg
        self.on_msg = on_msg     # on_msg(topic, payload)
        self.on_up = on_up       # called on CONNACK, before any queued message is handled
        self.log = log
        self.sock = None
        self.state = CLOSED
        self.session = False     # broker kept our session (CONNACK session-present)
        self.pid = 0
        # pid -> [packet bytes or None, sent_ticks]; None = caller retransmits itself
        self.inflight = {}
        self.rbuf = bytearray(MAX_IN + 8)
        self._mv = memoryview(self.rbuf)
        self.fill = 0
        self.skip = 0            # bytes of an oversize packet still to discard
        self.wbuf = bytearray()
        self._t_io = 0           # ticks of last packet sent (keepalive)
        self._t_rx = 0           # ticks of last packet received
        self._t_start = 0
        self._ping_out = False
        self._p = select.poll()
        self._outer = None       # app's poll object, so it wakes on our socket
        self.err = None

    def attach(self, poller):
        self._outer = poller

    def next_pid(self):
        self.pid = self.pid % 65535 + 1
        while self.pid in self.inflight:
            self.pid = self.pid % 65535 + 1
        return self.pid

    # -- connect --
    def start(self, host, port, tls=None, timeout_ms=5000):
        """Begin connecting. tls: None, or dict(ca=bytes|None, server_hostname=str)."""
        self.close()
        self.err = None
        self._t_start = time.ticks_ms()
        ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
        s = socket.socket(ai[0], socket.SOCK_STREAM)
        self.sock = s
        try:
            # IPPROTO_TCP=6, TCP_NODELAY=1 on Linux and lwIP alike; the constant is not
            # exported by MicroPython. Without it a lone PUBLISH can wait ~40 ms (Nagle).
            s.setsockopt(6, 1, 1)
        except Exception:
            pass
        if tls is not None:
            # TLS handshakes cannot be driven non-blocking portably across ports, so this
            # one step blocks, bounded by timeout_ms (the watchdog period is longer).
            s.settimeout(timeout_ms / 1000)
            s.connect(ai[-1])
            import ssl as _tls
            ctx = _tls.SSLContext(_tls.PROTOCOL_TLS_CLIENT)
            if tls.get("ca"):
                ctx.verify_mode = _tls.CERT_REQUIRED
                ctx.load_verify_locations(cadata=tls["ca"])
            else:
                ctx.verify_mode = _tls.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname=tls.get("server_hostname") or host)
            self.sock = s
            s.setblocking(False)
            self.state = TCP
        else:
            s.setblocking(False)
            try:
                s.connect(ai[-1])
            except OSError as e:
                if e.errno not in (errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY):
                    self.close()
                    raise
            self.state = TCP
        self._p.register(s, select.POLLIN | select.POLLOUT)
        if self._outer is not None:
            self._outer.register(s, select.POLLIN)

    def _send_connect(self):
        self.fill = 0
        self.skip = 0
        self.wbuf = bytearray()
        self._ping_out = False
        self.state = WAIT_ACK
        self._write(connect_pkt(self.cid, self.user, self.pw, self.keepalive,
                                self.will_topic, self.will_msg))
        self._p.modify(self.sock, select.POLLIN)

    def close(self, reason=None):
        if self.sock is not None:
            for p in (self._p, self._outer):
                if p is not None:
                    try:
                        p.unregister(self.sock)
                    except Exception:
                        pass
            try:
                if self.state == UP and reason is None:
                    self.sock.write(_DISCONNECT)
            except Exception:
                pass
            try:
                self.sock.close()
            except Exception:
                pass
        was = self.state
        self.sock = None
        self.state = CLOSED
        self.fill = 0
        self.wbuf = bytearray()
        if reason:
            self.err = reason
        return was

    # -- output --
    def _write(self, data):
        if self.wbuf:
            self.wbuf.extend(data)
        else:
            n = self._try_write(data)
            if n is None:
                return
            if n < len(data):
                self.wbuf.extend(data[n:])
        if len(self.wbuf) > MAX_OUT:
            self.close("send buffer full")
            return
        self._t_io = time.ticks_ms()

    def _try_write(self, data):
        s = self.sock
        if s is None:
            return None
        try:
            n = s.write(data)
        except OSError as e:
            if e.errno == errno.EAGAIN:
                return 0
            self.close("write: %s" % e)
            return None
        return n or 0

    def _flush(self):
        if self.wbuf and self.sock is not None:
            n = self._try_write(self.wbuf)
            if n:
                self.wbuf = self.wbuf[n:]

    def publish(self, topic, payload, retain=False, keep=True):
        """QoS 1 publish. keep=False: do not store for DUP resend (the caller re-signs
        and resends itself). Returns the packet id."""
        pid = self.next_pid()
        p = publish_pkt(topic, payload, 1, retain, False, pid)
        self.inflight[pid] = [p if keep else None, time.ticks_ms()]
        self._write(p)
        return pid

    def forget(self, pid):
        self.inflight.pop(pid, None)

    def subscribe(self, topic):
        pid = self.next_pid()
        self._write(subscribe_pkt(pid, topic, 1))
        return pid

    def _resend_dup(self):
        # MQTT 3.1.1 4.4: on reconnect with a kept session, unacked QoS 1 PUBLISHes are
        # resent with DUP set.
        now = time.ticks_ms()
        # Entries without a stored packet belong to a caller that re-signs and resends
        # from its own outbox; resending an old copy would only make a duplicate.
        for pid in sorted(self.inflight):
            ent = self.inflight[pid]
            p = ent[0]
            if p is None:
                del self.inflight[pid]
                continue
            p = bytearray(p)
            p[0] |= 0x08
            ent[0] = bytes(p)
            ent[1] = now
            self._write(ent[0])

    # -- input / timers; call often --
    def service(self):
        """Advance the connection. Returns True on the transition to UP."""
        if self.sock is None:
            return False
        now = time.ticks_ms()
        if self.state == TCP:
            ev = self._p.poll(0)
            for _, f in ev:
                if f & _POLLERR:
                    self.close("connect refused")
                    return False
                if f & select.POLLOUT:
                    self._send_connect()
            if self.state == TCP:
                if time.ticks_diff(now, self._t_start) > 5000:
                    self.close("connect timeout")
                return False
        if self.state == WAIT_ACK and time.ticks_diff(now, self._t_start) > 8000:
            self.close("connack timeout")
            return False
        self._flush()
        if self.sock is None:
            return False
        up = self._read()
        if self.sock is None:
            return False
        if self.state == UP:
            ka = self.keepalive * 1000
            if ka:
                if self._ping_out and time.ticks_diff(now, self._t_rx) > ka:
                    self.close("ping timeout")
                    return False
                if not self._ping_out and time.ticks_diff(now, self._t_io) > ka // 2:
                    self._write(_PINGREQ)
                    self._ping_out = True
        return up

    def _read(self):
        # One preallocated receive buffer: a burst of acks after a reconnect must not turn
        # into a pile of short-lived bytes objects on a 64K heap.
        up = False
        buf = self.rbuf
        mv = self._mv
        while self.sock is not None:
            if self.fill < len(buf):
                try:
                    n = self.sock.readinto(mv[self.fill:])
                except OSError as e:
                    if e.errno != errno.EAGAIN:
                        self.close("read: %s" % e)
                        return False
                    n = None
                if n == 0:
                    self.close("closed by broker")
                    return False
                if n:
                    self.fill += n
            else:
                n = None
            pos = 0
            while self.sock is not None:
                avail = self.fill - pos
                if self.skip:
                    k = min(self.skip, avail)
                    pos += k
                    self.skip -= k
                    if self.skip:
                        break
                    continue
                try:
                    h = header(mv[pos:self.fill])
                except ValueError as e:
                    self.close("protocol: %s" % e)
                    return False
                if h is None:
                    break
                first, start, blen = h
                if blen > MAX_IN:
                    r = self._oversize(first, mv[pos:self.fill], start)
                    if r is None:
                        break        # need the variable header first
                    if not r:
                        return False
                    self.skip = start + blen
                    continue
                if avail < start + blen:
                    break
                if self._handle(first, mv[pos + start:pos + start + blen]):
                    up = True
                pos += start + blen
            if self.sock is None:
                return up
            if pos:
                rest = self.fill - pos
                if rest:
                    buf[:rest] = bytes(mv[pos:self.fill])
                self.fill = rest
            if not n:
                break
        return up

    def _oversize(self, first, buf, start):
        # Someone published more than we accept. Dropping the link would not help: with
        # a kept session the broker redelivers it after every reconnect (a cheap denial of
        # service). So PUBACK it, report it, and skip its bytes as they stream in.
        if first & 0xF0 != _PUBLISH:
            self.close("protocol: oversize packet")
            return False
        if len(buf) < start + 2:
            return None
        tl = (buf[start] << 8) | buf[start + 1]
        end = start + 2 + tl + (2 if first & 0x06 else 0)
        if end > len(self.rbuf):
            self.close("protocol: oversize topic")
            return False
        if len(buf) < end:
            return None
        topic = bytes(buf[start + 2:start + 2 + tl]).decode()
        if first & 0x06:
            self._write(puback_pkt((buf[end - 2] << 8) | buf[end - 1]))
        self.on_msg(topic, None)
        return True

    def _handle(self, first, body):
        self._t_rx = time.ticks_ms()
        self._ping_out = False
        t = first & 0xF0
        if t == _PUBLISH:
            topic, pid, payload = parse_publish(first, body)
            if first & 0x06:
                self._write(puback_pkt(pid))
            self.on_msg(topic, payload)
        elif t == _PUBACK:
            pid = (body[0] << 8) | body[1]
            self.inflight.pop(pid, None)
        elif t == _CONNACK and self.state == WAIT_ACK:
            rc = body[1]
            if rc:
                self.close("connack rc=%d" % rc)
                return False
            self.session = bool(body[0] & 1)
            self.state = UP
            self._resend_dup()
            self.on_up()
            return True
        return False
