# ESP32 `network` for the stand-in: a station interface whose access point the test can
# take away ("set wifi false") and give back; association takes assoc_ms.
import harness as _h

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
_ifs = {}


class _Iface:
    def __init__(self):
        self.on = False
        self.want = False
        self.since = 0          # when the AP became reachable for us
        self.seen = False

    def up(self):
        _h.pump()
        ok = self.on and self.want and _h.S["wifi"] is True
        if ok and not self.seen:
            self.since = _h.host_ms()
        self.seen = ok
        return ok and _h.host_ms() - self.since >= _h.S["assoc_ms"]


def WLAN(i=STA_IF):
    w = _ifs.get(i)
    if w is None:
        w = _ifs[i] = _WLAN(i)
        if i == STA_IF:
            _h.wlan = w
    return w


class _WLAN:
    def __init__(self, i):
        self.i = i
        self.s = _Iface()

    def active(self, v=None):
        if v is None:
            return self.s.on
        self.s.on = bool(v)
        return None

    def connect(self, ssid=None, key=None, **kw):
        if not self.s.on:
            raise OSError("Wifi Not Started")
        self.s.want = True
        self.s.seen = False

    def disconnect(self):
        self.s.want = False
        self.s.seen = False

    def isconnected(self):
        return self.s.up()

    def status(self, p=None):
        if p == "rssi":
            if not self.s.up():
                raise OSError("not connected")
            return _h.S["rssi"]
        if p is not None:
            raise ValueError("unknown status param")
        if self.s.up():
            return STAT_GOT_IP
        if not self.s.want:
            return STAT_IDLE
        return STAT_CONNECTING if _h.S["wifi"] is True else STAT_NO_AP_FOUND

    def ifconfig(self, *a):
        return ("10.5.3.20", "255.255.255.0", "10.5.3.1", "10.5.3.1")

    def config(self, *a, **kw):
        if a and a[0] == "mac":
            return b"\x24\x0a\xc4\x00\x00\x01"
        return None
