# ESP32 `ssl` for the stand-in: the real mbedTLS of the unix port to the test's broker,
# with what the ESP32 build adds: a handshake that takes handshake_ms, certificate dates
# checked against the RTC, and mbedTLS's write rules (4 KiB records; after WANT_WRITE the
# next write must pass the same data, and whatever it passes is reported as written once
# the pending record is out).
import gc
import socket as _socket

import harness as _h

_tls = _h.builtin("tls")
CERT_NONE = _tls.CERT_NONE
CERT_OPTIONAL = _tls.CERT_OPTIONAL
CERT_REQUIRED = _tls.CERT_REQUIRED
PROTOCOL_TLS_CLIENT = _tls.PROTOCOL_TLS_CLIENT
PROTOCOL_TLS_SERVER = _tls.PROTOCOL_TLS_SERVER
X509_CERT_VERIFY_FAILED = -9984


def _der_time(b, i):
    # UTCTime YYMMDDhhmmssZ (tag 0x17) or GeneralizedTime YYYYMMDDhhmmssZ (tag 0x18)
    tag, n = b[i], b[i + 1]
    s = bytes(b[i + 2:i + 2 + n]).decode()
    if tag == 0x17:
        y = int(s[:2])
        y += 2000 if y < 50 else 1900
        s = s[2:]
    else:
        y = int(s[:4])
        s = s[4:]
    tm = (y, int(s[0:2]), int(s[2:4]), int(s[4:6]), int(s[6:8]), int(s[8:10]), 0, 0)
    return (_h._time.mktime(tm) - _h.EPOCH_2000) * 1000


def validity(der):
    """(not_before, not_after) of a DER certificate, in ms since 2000."""
    out = []
    i = 0
    while len(out) < 2 and i < len(der) - 2:
        if der[i] in (0x17, 0x18) and der[i + 1] in (13, 15):
            try:
                out.append(_der_time(der, i))
                i += 2 + der[i + 1]
                continue
            except ValueError:
                pass
        i += 1
    return out[0], out[1]


class SSLContext:
    def __init__(self, protocol=PROTOCOL_TLS_CLIENT):
        self.c = _tls.SSLContext(protocol)
        self.ca = None
        self._mode = CERT_NONE

    @property
    def verify_mode(self):
        return self._mode

    @verify_mode.setter
    def verify_mode(self, v):
        self._mode = v
        self.c.verify_mode = v

    def load_verify_locations(self, cafile=None, cadata=None):
        if cafile:
            with open(cafile, "rb") as f:
                cadata = f.read()
        self.ca = cadata
        self.c.load_verify_locations(cadata)

    def load_cert_chain(self, certfile, keyfile):
        self.c.load_cert_chain(certfile, keyfile)

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True,
                    server_hostname=None):
        return TLSSocket(self, sock, do_handshake_on_connect, server_hostname)


def wrap_socket(sock, server_side=False, key=None, cert=None, cert_reqs=CERT_NONE, cadata=None,
                server_hostname=None, do_handshake=True):
    ctx = SSLContext()
    if cadata:
        ctx.load_verify_locations(cadata=cadata)
    ctx.verify_mode = cert_reqs
    return ctx.wrap_socket(sock, do_handshake_on_connect=do_handshake,
                           server_hostname=server_hostname)


class TLSSocket:
    def __init__(self, ctx, sock, handshake, server_hostname):
        self.ctx = ctx
        self.raw = sock
        self.hs_due = _h.host_ms() + _h.S["handshake_ms"]
        self.hs_done = False
        self.out = None          # what is left of the record mbedTLS holds after WANT_WRITE
        self.rec = None          # that whole record: a retry must pass the same bytes
        self.s = ctx.c.wrap_socket(sock.s, server_side=False, do_handshake_on_connect=False,
                                   server_hostname=server_hostname)
        self.reported = 0        # bytes write() said it took
        self.sent = 0            # bytes that went out
        _h.emit(what="tls_start", blocking=bool(handshake))
        if handshake:
            self._handshake_blocking()

    def _check_dates(self):
        if self.ctx.ca is None or self.ctx.verify_mode == CERT_NONE or \
                not _h.S["tls_date_check"]:
            return
        nb, na = validity(self.ctx.ca)
        now = _h.rtc_ms()
        if now < nb or now > na:
            _h.emit(what="tls", error="certificate date", rtc_ms=now)
            raise OSError(X509_CERT_VERIFY_FAILED, "MBEDTLS_ERR_X509_CERT_VERIFY_FAILED")

    def _handshake_blocking(self):
        t = self.raw.timeout
        ms = _h.S["handshake_ms"]
        if t and ms > t * 1000:
            _h.stall(int(t * 1000))
            raise OSError(110)
        _h.stall(ms)
        self._finish_handshake()

    def _finish_handshake(self):
        self._check_dates()
        # The real handshake on loopback: fast, so done blocking, then back to the mode
        # the firmware asked for.
        gc.collect()
        a = gc.mem_alloc()
        self.raw.s.setblocking(True)
        try:
            self.s.write(b"")
        finally:
            self.raw.s.setblocking(self.raw.timeout != 0)
        self.hs_done = True
        gc.collect()
        # What the handshake leaves in the MicroPython heap (measured: nothing; the unix
        # port's mbedTLS keeps its records outside it, as the ESP32's keeps them in the IDF
        # heap, and the context objects, about 3.7 KB, were made by wrap_socket before).
        _h.emit(what="tls_done", session_heap=gc.mem_alloc() - a)

    def _ready(self):
        """True once the handshake is over; a non-blocking socket says EAGAIN before."""
        _h.pump()
        if self.hs_done:
            return True
        if _h.host_ms() < self.hs_due or not self.raw._connected():
            return False
        self._finish_handshake()
        return True

    def poll_filter(self, flags):
        f = self.raw.poll_filter(flags)
        if not self.hs_done and _h.host_ms() < self.hs_due:
            return f & (_h._select.POLLERR | _h._select.POLLHUP)
        return f

    def setblocking(self, flag):
        self.raw.setblocking(flag)
        if self.hs_done:
            self.s.setblocking(flag)

    def settimeout(self, t):
        self.raw.settimeout(t)

    def setsockopt(self, *a):
        self.raw.setsockopt(*a)

    def _push(self):
        k = _h.uplink_take(len(self.out)) if _socket.net_up() else 0
        if k:
            if not _h.S["uplink_dead"]:
                _socket._write_all(self.s, self.out, k)
            self.sent += k
            self.out = self.out[k:]
        if not self.out:
            self.out = None

    def write(self, data):
        while True:
            if self._ready():
                n = min(len(data), _h.S["tls_record"])
                if self.out is not None:
                    self._push()
                    if self.out is None:
                        rec = self.rec
                        self.rec = None
                        if n != len(rec) or bytes(data[:n]) != rec:
                            # What a real ESP32 would silently lose: reported, not sent.
                            _h.emit(what="tls_misuse", passed=n, record=len(rec))
                        self.reported += n
                        return n    # mbedTLS assumes this call passed the same data
                else:
                    self.rec = self.out = bytes(data[:n])
                    self._push()
                    if self.out is None:
                        self.rec = None
                        self.reported += n
                        return n
            if self.raw.timeout == 0:
                return None         # MBEDTLS_ERR_SSL_WANT_WRITE on a non-blocking socket
            _h.stall(5)

    send = write

    def readinto(self, buf, n=None):
        if not self._ready() or not _socket.net_up():
            return None
        return self.s.readinto(buf) if n is None else self.s.readinto(buf, n)

    def read(self, n=-1):
        if not self._ready() or not _socket.net_up():
            return None
        return self.s.read(n)

    recv = read

    def close(self):
        # Bytes still in the record at close are lost with the connection, as on a board.
        _h.emit(what="tls_bytes", reported=self.reported, sent=self.sent,
                pending=len(self.out) if self.out else 0)
        try:
            self.s.close()
        finally:
            self.raw.close()
