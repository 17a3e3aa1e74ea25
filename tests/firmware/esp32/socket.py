# ESP32 `socket` for the stand-in: real sockets to the test's broker, with the radio and
# the network in between made slow or absent by settings (dns_ms, connect_ms, broker,
# uplink_bps, wifi).
import harness as _h

_real = _h.builtin("socket")
_errno = _h.builtin("errno")
AF_INET = _real.AF_INET
SOCK_STREAM = _real.SOCK_STREAM
SOCK_DGRAM = _real.SOCK_DGRAM
IPPROTO_TCP = 6
SOL_SOCKET = _real.SOL_SOCKET
SO_REUSEADDR = _real.SO_REUSEADDR
EAI_FAIL = -202               # lwIP's getaddrinfo error, as the ESP32 port raises it
EINPROGRESS = _errno.EINPROGRESS
EAGAIN = _errno.EAGAIN


def net_up():
    w = _h.wlan
    return w is not None and w.isconnected()


def _numeric(host):
    return all(c in "0123456789." for c in host)


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    _h.pump()
    if not net_up():
        raise OSError(EAI_FAIL)
    if not _numeric(host):
        _h.emit(what="dns", host=host)
        _h.stall(_h.S["dns_ms"])
        ip = _h.S["hosts"].get(host)
        if _h.S["dns_fail"] or ip is None:
            raise OSError(EAI_FAIL)
        host = ip
    return _real.getaddrinfo(host, port, af, type or SOCK_STREAM)


class socket:
    def __init__(self, af=AF_INET, type=SOCK_STREAM, proto=0):
        self.s = _real.socket(af, type, proto)
        self.timeout = None     # None: blocking without limit; 0: non-blocking
        self.state = "new"      # new, connecting, up, refused, blackhole, closed
        self.ready_at = 0

    # -- options --
    def setsockopt(self, *a):
        self.s.setsockopt(*a)

    def settimeout(self, t):
        self.timeout = t

    def setblocking(self, flag):
        self.timeout = None if flag else 0

    def fileno(self):
        return self.s.fileno()

    # -- connect --
    def connect(self, addr):
        _h.pump()
        if not net_up():
            raise OSError(113)  # EHOSTUNREACH
        mode = _h.S["broker"]
        t = self.timeout
        if mode == "refuse":
            self.state = "refused"
            if t != 0:
                _h.stall(_h.S["connect_ms"])
                raise OSError(_errno.ECONNREFUSED)
            raise OSError(EINPROGRESS)
        if mode == "blackhole":
            self.state = "blackhole"
            if t != 0:
                # An unanswered SYN: lwIP gives up only after its retries (or the timeout).
                _h.stall(int(t * 1000) if t else 3600000)
                raise OSError(_errno.ETIMEDOUT)
            raise OSError(EINPROGRESS)
        if t != 0:
            _h.stall(_h.S["connect_ms"])
            self.s.connect(addr)
            self.s.setblocking(False)
            self.state = "up"
            return
        self.s.setblocking(False)
        try:
            self.s.connect(addr)
        except OSError as e:
            if e.errno != EINPROGRESS:
                raise
        self.state = "connecting"
        self.ready_at = _h.host_ms() + _h.S["connect_ms"]
        raise OSError(EINPROGRESS)

    def _connected(self):
        if self.state == "connecting" and _h.host_ms() >= self.ready_at:
            self.state = "up"
        return self.state == "up"

    def poll_filter(self, flags):
        """What poll reports for this socket, given what the real one reports."""
        if self.state == "refused":
            return _h._select.POLLERR | _h._select.POLLHUP
        if self.state == "blackhole" or not self._connected():
            return 0
        if not net_up():
            return 0
        return flags

    # -- data --
    def _wait(self):
        # Blocking sockets wait for the radio; non-blocking ones say EAGAIN.
        if self.timeout == 0:
            raise OSError(EAGAIN)
        _h.stall(5)

    def write(self, data):
        while True:
            _h.pump()
            if not self._connected():
                raise OSError(_errno.ENOTCONN if self.state != "connecting" else EAGAIN)
            k = _h.uplink_take(len(data)) if net_up() else 0
            if k:
                return k if _h.S["uplink_dead"] else _write_all(self.s, data, k)
            self._wait()

    send = write

    def readinto(self, buf, n=None):
        _h.pump()
        if not self._connected() or not net_up():
            if self.timeout == 0:
                return None
            raise OSError(_errno.ETIMEDOUT)
        return self.s.readinto(buf) if n is None else self.s.readinto(buf, n)

    def read(self, n=-1):
        _h.pump()
        if not self._connected() or not net_up():
            return None
        return self.s.read(n)

    recv = read

    def close(self):
        self.state = "closed"
        self.s.close()


def _write_all(real, data, k):
    # The radio took k bytes: they go to the real socket in full (loopback never pushes
    # back for long), so what the firmware sees is only the radio's pace.
    mv = memoryview(data)
    done = 0
    while done < k:
        n = real.write(mv[done:k])
        if n:
            done += n
        else:
            _h.stall(1)
    return k
