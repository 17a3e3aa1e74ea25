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
# Callers pace themselves with can_send(), so only a dead link gets here.
MAX_OUT = const(8192)
# QoS 1 messages awaiting PUBACK before can_send() says wait: a backlog goes out a few at a
# time, paced by the broker's PUBACKs, and never floods a slow radio link.
MAX_INFLIGHT = const(4)
# Bytes handed to one socket write: below mbedTLS's 4 KiB output record.
_CHUNK = const(1024)
_TCP_MS = const(5000)        # TCP connect
_SESSION_MS = const(15000)   # TLS handshake + CONNACK
_DUP_TRIES = const(2)        # DUP resends of an unacked PUBLISH before the link is dead

# Last link error, by kind (the status reports it): what city operations need to tell
# "no internet" from "wrong password" without a visit.
ERR_DNS = "dns"
ERR_NO_BROKER = "no_broker"
ERR_TLS = "tls"
ERR_AUTH = "auth"

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
    """topic: one filter, or a tuple of them in one SUBSCRIBE (one SUBACK to wait for)."""
    body = bytes((pid >> 8, pid & 0xFF))
    for t in (topic,) if isinstance(topic, str) else topic:
        body += _str(t) + bytes((qos,))
    return pkt(_SUBSCRIBE, body)


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
    """Non-blocking MQTT 3.1.1 client with mqtt_as-style link supervision: DNS resolved once,
    TCP connect and TLS handshake driven by the loop, SUBACK checked, PUBACK timeout ->
    DUP resend of the same packet -> reconnect, keepalive from the last received packet."""

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
        # pid -> [packet, sent_ticks, dup_tries, caller_resends]. caller_resends: the caller
        # re-signs and resends from its own outbox after a reconnect, so the stored copy is
        # only for DUP resends on this connection.
        self.inflight = {}
        self.response_ms = 10000  # PUBACK/SUBACK/PINGRESP wait, as mqtt_as's response_time
        self.rbuf = bytearray(MAX_IN + 8)
        self._mv = memoryview(self.rbuf)
        self.fill = 0
        self.skip = 0            # bytes of an oversize packet still to discard
        self.wbuf = bytearray()  # unsent bytes from wbuf[_wo:]; an offset, not a copy per write
        self._wo = 0
        self._stuck = 0          # length of a write that took nothing: pass it again as is
        self._t_io = 0           # ticks of last packet sent
        self._t_rx = 0           # ticks of last packet received (keepalive)
        self._t_ping = 0
        self._t_start = 0
        self._ping_out = False
        self._sub = 0            # pid of the SUBSCRIBE awaiting its SUBACK
        self._t_sub = 0
        self._p = select.poll()
        self._outer = None       # app's poll object, so it wakes on our socket
        self._addr = {}          # (host, port) -> getaddrinfo entry, resolved once
        self._tls = None         # TLS parameters of the connection in progress
        self._host = None
        self._ctx = None
        self._ctx_ca = None
        self.err = None
        self.kind = None         # ERR_* of the last failure

    def attach(self, poller):
        self._outer = poller

    def next_pid(self):
        self.pid = self.pid % 65535 + 1
        while self.pid in self.inflight or self.pid == self._sub:
            self.pid = self.pid % 65535 + 1
        return self.pid

    # -- connect --
    def start(self, host, port, tls=None):
        """Begin connecting; never blocks past one DNS lookup (the first for this host).
        tls: None, or dict(ca=DER bytes|None, server_hostname=str)."""
        self.close()
        self.err = None
        self.kind = None
        self._t_start = time.ticks_ms()
        key = (host, port)
        ai = self._addr.get(key)
        if ai is None:
            try:
                ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
            except OSError:
                self.kind = ERR_DNS
                raise
            # Kept for the life of the boot, as mqtt_as does: a lookup blocks the loop, and
            # a broker's address does not change under a button.
            self._addr[key] = ai
        s = socket.socket(ai[0], socket.SOCK_STREAM)
        self.sock = s
        try:
            # IPPROTO_TCP=6, TCP_NODELAY=1 on Linux and lwIP alike; the constant is not
            # exported by MicroPython. Without it a lone PUBLISH can wait ~40 ms (Nagle).
            s.setsockopt(6, 1, 1)
        except Exception:
            pass
        s.setblocking(False)
        try:
            s.connect(ai[-1])
        except OSError as e:
            if e.errno not in (errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY):
                self.close(None, ERR_NO_BROKER)
                raise
        self._tls = tls
        self._host = host
        self.state = TCP
        self._register(s, select.POLLIN | select.POLLOUT)

    def _register(self, s, mask):
        self._p.register(s, mask)
        if self._outer is not None:
            self._outer.register(s, select.POLLIN)

    def _unregister(self, s):
        for p in (self._p, self._outer):
            if p is not None:
                try:
                    p.unregister(s)
                except Exception:
                    pass

    def _wrap(self, t):
        # Handshake without blocking: it runs inside the reads and writes that follow,
        # which say EAGAIN until it is done, so the loop goes on serving the button.
        import ssl
        ca = t.get("ca")
        if self._ctx is None or self._ctx_ca != ca:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if ca:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(cadata=ca)
            else:
                ctx.verify_mode = ssl.CERT_NONE
            self._ctx = ctx
            self._ctx_ca = ca
        raw = self.sock
        self._unregister(raw)
        s = self._ctx.wrap_socket(raw,  # pyright: ignore[reportArgumentType]
                                  server_hostname=t.get("server_hostname") or self._host,
                                  do_handshake_on_connect=False)
        self.sock = s
        self._register(s, select.POLLIN)

    def _send_connect(self):
        self.fill = 0
        self.skip = 0
        self.wbuf = bytearray()
        self._wo = 0
        self._stuck = 0
        self._ping_out = False
        self._sub = 0
        self.state = WAIT_ACK
        self._t_rx = time.ticks_ms()
        self._p.modify(self.sock, select.POLLIN)
        self._write(connect_pkt(self.cid, self.user, self.pw, self.keepalive,
                                self.will_topic, self.will_msg))

    def close(self, reason=None, kind=None):
        if self.sock is not None:
            self._unregister(self.sock)
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
        self._wo = 0
        self._stuck = 0
        if reason:
            self.err = reason
        if kind:
            self.kind = kind
        return was

    def _fail(self, what, e):
        # mbedTLS errors are negative OSErrors, or ValueErrors for a certificate the CA did
        # not sign: a handshake or certificate failure, not the network.
        no = e.args[0] if isinstance(e, OSError) and e.args and isinstance(e.args[0], int) else -1
        if self.state != UP:
            what = "connect: " + what
        self.close("%s: %s" % (what, e), ERR_TLS if no < 0 else ERR_NO_BROKER)

    # -- output --
    def can_send(self):
        """Room for one more QoS 1 message without queueing behind a slow link."""
        return self.state == UP and len(self.inflight) < MAX_INFLIGHT and \
            len(self.wbuf) - self._wo < _CHUNK

    def _write(self, data):
        if self.sock is None:
            return
        if self._wo > _CHUNK and not self._stuck:
            self.wbuf = self.wbuf[self._wo:]
            self._wo = 0
        self.wbuf.extend(data)
        if len(self.wbuf) - self._wo > MAX_OUT:
            self.close("send buffer full", ERR_NO_BROKER)
            return
        self._t_io = time.ticks_ms()
        self._flush()

    def _flush(self):
        # mbedTLS: a write that returns nothing (WANT_WRITE) has taken its record anyway, and
        # the next write must pass the same bytes: it then reports their length as written.
        # A longer buffer there would be reported written in full and its tail lost.
        while self.wbuf and self.sock is not None:
            o = self._wo
            n = self._stuck or min(len(self.wbuf) - o, _CHUNK)
            try:
                k = self.sock.write(memoryview(self.wbuf)[o:o + n])
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    k = 0
                else:
                    self._fail("write", e)
                    return
            except ValueError as e:
                self._fail("tls", e)
                return
            if not k:
                self._stuck = n
                return
            self._stuck = 0
            self._wo = o + k
            if self._wo >= len(self.wbuf):
                self.wbuf = bytearray()
                self._wo = 0

    def publish(self, topic, payload, retain=False, keep=True):
        """QoS 1 publish. keep=False: after a reconnect the caller re-signs and resends
        itself (on this connection an unacked copy is still resent with DUP). Returns the
        packet id."""
        pid = self.next_pid()
        p = publish_pkt(topic, payload, 1, retain, False, pid)
        self.inflight[pid] = [p, time.ticks_ms(), 0, not keep]
        self._write(p)
        return pid

    def forget(self, pid):
        self.inflight.pop(pid, None)

    def subscribe(self, topic):
        pid = self.next_pid()
        self._sub = pid
        self._t_sub = time.ticks_ms()
        self._write(subscribe_pkt(pid, topic, 1))
        return pid

    def _resend_dup(self):
        # MQTT 3.1.1 4.4: on reconnect with a kept session, unacked QoS 1 PUBLISHes are
        # resent with DUP set. The caller's own (re-signed) ones are its to resend.
        now = time.ticks_ms()
        for pid in sorted(self.inflight):
            ent = self.inflight[pid]
            if ent[3]:
                del self.inflight[pid]
                continue
            self._dup(ent, now)

    def _dup(self, ent, now):
        p = bytearray(ent[0])
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
            for _, f in self._p.poll(0):
                if f & _POLLERR:
                    self.close("connect refused", ERR_NO_BROKER)
                    return False
                if f & select.POLLOUT:
                    if self._tls is not None:
                        try:
                            self._wrap(self._tls)
                        except Exception as e:  # noqa: BLE001
                            self._fail("tls", e)
                            return False
                    self._send_connect()
            if self.state == TCP:
                if time.ticks_diff(now, self._t_start) > _TCP_MS:
                    self.close("connect timeout", ERR_NO_BROKER)
                return False
        if self.state == WAIT_ACK and time.ticks_diff(now, self._t_start) > _SESSION_MS:
            # CONNECT still unsent under TLS: the handshake never finished.
            stuck = self._tls is not None and self._stuck
            self.close("connack timeout", ERR_TLS if stuck else ERR_NO_BROKER)
            return False
        self._flush()
        if self.sock is None:
            return False
        up = self._read()
        if self.sock is None or self.state != UP:
            return up
        if self._sub and time.ticks_diff(now, self._t_sub) > self.response_ms:
            self.close("suback timeout", ERR_NO_BROKER)
            return False
        for pid in self.inflight:
            ent = self.inflight[pid]
            if time.ticks_diff(now, ent[1]) > self.response_ms:
                if ent[2] >= _DUP_TRIES:
                    self.close("puback timeout", ERR_NO_BROKER)
                    return False
                ent[2] += 1
                self._dup(ent, now)
                if self.sock is None:
                    return False
        ka = self.keepalive * 1000
        if ka:
            if self._ping_out:
                if time.ticks_diff(now, self._t_ping) > min(self.response_ms, ka):
                    self.close("ping timeout", ERR_NO_BROKER)
                    return False
            elif time.ticks_diff(now, self._t_rx) > ka // 2 or \
                    time.ticks_diff(now, self._t_io) > ka // 2:
                # Silence from the broker is what matters: a link that only sends can be
                # dead for minutes while every write still lands in a local buffer.
                self._write(_PINGREQ)
                self._ping_out = True
                self._t_ping = now
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
                        self._fail("read", e)
                        return False
                    n = None
                except ValueError as e:
                    self._fail("tls", e)
                    return False
                if n == 0:
                    self.close("closed by broker", ERR_NO_BROKER)
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
        elif t == _SUBACK:
            pid = (body[0] << 8) | body[1]
            if pid == self._sub:
                self._sub = 0
                if len(body) < 3 or body[2] & 0x80:
                    # Refused (ACL): acks would never come, and every alert would be
                    # retransmitted forever on a link that looks healthy.
                    self.close("suback refused", ERR_AUTH)
                    return False
                for i in range(3, len(body)):
                    if body[i] & 0x80:
                        # Only the first filter (acks) is vital: a broker whose ACL does not
                        # grant commands or updates yet must still carry alerts.
                        self.log("subscription %d refused" % (i - 2))
        elif t == _CONNACK and self.state == WAIT_ACK:
            rc = body[1]
            if rc:
                # 3: server unavailable; 2, 4, 5: identifier, credentials, not authorised
                self.close("connack rc=%d" % rc, ERR_NO_BROKER if rc == 3 else ERR_AUTH)
                return False
            self.session = bool(body[0] & 1)
            self.state = UP
            self._resend_dup()
            self.on_up()
            return True
        return False
