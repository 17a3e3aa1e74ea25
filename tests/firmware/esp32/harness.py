# Core of the ESP32 stand-in (never shipped): the board's virtual clock, RTC, pins, watchdog,
# radio settings and the control channel, shared by the stand-in modules in this folder.
#
# The test drives the "hardware" through stdin, one command a line:
#   pin <n> <0|1>        level on an input pin (IRQs follow, delivered as the ESP32 port does)
#   set <key> <json>     change a setting (see SETTINGS)
#   advance <ms>         move the clock (ticks and RTC) forward without waiting
# Settings start from <flash>/esp32_harness.json. Events from the stand-in go to stdout as
# {"ev": "esp32", ...} lines, beside the firmware's own events.
import gc
import json
import os
import sys


def builtin(name):
    # The stand-in modules shadow extensible built-ins (time, select, socket, ssl): an empty
    # sys.path makes the import reach the built-in one.
    p = sys.path
    sys.path = ()
    try:
        return __import__(name)
    finally:
        sys.path = p


_time = builtin("time")
_select = builtin("select")

MASK = (1 << 30) - 1          # ESP32 ticks are small ints: they wrap at 2**30
HALF = 1 << 29
EPOCH_2000 = 946684800        # the ESP32 port counts time.time() from 2000-01-01
WDT_EXIT = 70                 # exit codes: how the board went down, for the test to restart it
SOFT_EXIT = 71
SLEEP_EXIT = 72
BROWNOUT_EXIT = 73

SETTINGS = {
    "ticks0": 0,              # ticks_ms() at boot
    "wifi": True,             # an access point in range that accepts us
    "assoc_ms": 200,          # WLAN.connect() -> isconnected()
    "rssi": -61,
    "hosts": {"pool.ntp.org": "162.159.200.1"},  # DNS names -> IP; an IP needs no lookup
    "dns_ms": 0,              # each lookup blocks this long
    "dns_fail": False,        # lookups fail (no DNS server answers)
    "connect_ms": 0,          # TCP connect takes this long (blocks a blocking socket)
    "broker": "up",           # "up", "refuse" (nothing listens) or "blackhole" (SYN unanswered)
    "handshake_ms": 0,        # TLS handshake takes this long
    "uplink_bps": 0,          # bytes/s the radio accepts; 0 = unlimited
    "uplink_dead": False,     # the radio takes bytes but nothing arrives (a dead path)
    "tls_record": 4096,       # mbedTLS output record size on the ESP32 build
    "ntp": [],                # NTP hosts that answer (with the host's clock)
    "ntp_ms": 30,             # NTP round trip when it answers
    "batt_uv": 1900000,       # battery ADC reading (behind a 1:2 divider)
    "wake": None,             # after a deep sleep: "ext0" (button) or "timer"
    "tls_date_check": True,   # mbedTLS checks certificate dates against the RTC
    "heap_sample_ms": 500,    # the live heap is sampled (after a collection) this often
    # Power fails during a file write: {"files": [names], "write": i, "keep": k, "erased": b}.
    # In the i-th write call (from 0, this boot) to one of those files only k of its bytes
    # reach the flash (k < 0 counts from the end, "half", or "all": the power fails just
    # after the write, before it returns); with "erased" the rest reads back as an erased
    # 0xff page. The board then goes down as at a brown-out: nothing more runs, no state is
    # kept, the RTC forgets the time. Each write is reported ({"what": "fwrite"}).
    "brownout": None,
}
S = dict(SETTINGS)

_flash = os.getenv("PANIC_FLASH") or "."
_boot_host = _time.ticks_ms()
_skew = 0                     # ms added by "advance"
_state_path = _flash + "/.esp32_state"


def host_ms():
    """Real milliseconds since boot: what the watchdog and blocking calls run on."""
    return _time.ticks_ms() - _boot_host


def virt_ms():
    """Board time since boot: real time plus every "advance"."""
    return _time.ticks_ms() - _boot_host + _skew


def ticks_ms():
    return (S["ticks0"] + virt_ms()) & MASK


def ticks_diff(a, b):
    return ((a - b + HALF) & MASK) - HALF


def ticks_add(a, d):
    return (a + d) & MASK


def emit(**kw):
    kw["ev"] = "esp32"
    sys.stdout.write(json.dumps(kw) + "\n")


# ---- persisted across non-power resets (the RTC domain stays powered) ----
_prev = {}
try:
    with open(_state_path) as f:
        _prev = json.load(f)
    os.remove(_state_path)
except (OSError, ValueError):
    pass
try:
    with open(_flash + "/esp32_harness.json") as f:
        S.update(json.load(f))
except OSError:
    pass
reset_cause = _prev.get("cause", "pwron")
if reset_cause == "deepsleep":
    wake_reason = S["wake"] or "timer"
else:
    wake_reason = None
# RTC: seconds since 2000 (float ms precision) at host_ms() == _rtc_at.
if "rtc_ms" in _prev:
    _rtc_ms = _prev["rtc_ms"] + (_time.time_ns() // 1000000 - _prev["host_epoch_ms"])
else:
    _rtc_ms = 0
_rtc_at = 0


def rtc_ms():
    """Milliseconds since 2000-01-01 by the RTC."""
    return _rtc_ms + virt_ms() - _rtc_at


def set_rtc_ms(ms):
    global _rtc_ms, _rtc_at
    _rtc_ms = ms
    _rtc_at = virt_ms()


def host_wall_ms():
    return _time.time_ns() // 1000000 - EPOCH_2000 * 1000 + _skew


# Peak of the live heap (after a collection), sampled while the loop yields, and the
# modules loaded at that peak (their bytecode is the part a frozen image keeps in flash).
peak = 0
peak_mods = []
_t_peak = 0


def _sample_heap():
    global peak, peak_mods, _t_peak
    now = host_ms()
    if now - _t_peak >= S["heap_sample_ms"]:
        _t_peak = now
        gc.collect()
        a = gc.mem_alloc()
        if a > peak:
            peak = a
            peak_mods = None      # the old list's bytes are not part of the next sample
            peak_mods = list(sys.modules)


def leave(code, cause):
    """The board resets: keep what survives a reset, tell the test, exit."""
    gc.collect()
    emit(what="heap", peak=peak, alloc=gc.mem_alloc(), mods=peak_mods)
    try:
        with open(_state_path, "w") as f:
            json.dump({"cause": cause, "rtc_ms": rtc_ms(),
                       "host_epoch_ms": _time.time_ns() // 1000000}, f)
    except OSError:
        pass
    emit(what="reset", cause=cause)
    sys.exit(code)


# ---- brown-out during a file write ----
_writes = 0                   # write calls to the watched files this boot


class _TornFile:
    def __init__(self, f, name):
        self.f = f
        self.name = name

    def write(self, b):
        global _writes
        bo = S["brownout"]
        i = _writes
        _writes += 1
        if bo.get("write") != i:
            n = self.f.write(b)
            emit(what="fwrite", file=self.name, i=i, n=n, of=len(b))
            return n
        k = bo.get("keep", "all")
        k = len(b) if k == "all" else len(b) // 2 if k == "half" else k % len(b) if k < 0 else k
        self.f.write(b[:k])
        if k < len(b) and bo.get("erased"):
            self.f.write(b"\xff" * (len(b) - k))
        self.f.close()
        emit(what="fwrite", file=self.name, i=i, n=k, of=len(b))
        # The supply sags below the brown-out threshold: nothing after this byte runs and no
        # state is saved (the ESP32 port reports the next boot as a power-up).
        emit(what="reset", cause="brownout")
        sys.exit(BROWNOUT_EXIT)

    def __getattr__(self, k):
        return getattr(self.f, k)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.f.close()


def _watch_writes():
    import builtins
    real = builtins.open
    names = S["brownout"].get("files") or ()

    def open_(p, mode="r", *a):
        f = real(p, mode, *a)
        if p.rsplit("/", 1)[-1] in names and ("w" in mode or "a" in mode):
            return _TornFile(f, p.rsplit("/", 1)[-1])
        return f
    builtins.open = open_


if S["brownout"]:
    _watch_writes()


# ---- watchdog ----
wdt_ms = None
_wdt_fed = 0


def wdt_start(ms):
    global wdt_ms, _wdt_fed
    wdt_ms = ms
    _wdt_fed = host_ms()


def wdt_feed():
    global _wdt_fed
    _wdt_fed = host_ms()


def _wdt_check():
    if wdt_ms is not None and host_ms() - _wdt_fed > wdt_ms:
        leave(WDT_EXIT, "wdt")


# ---- pins and IRQs ----
levels = {}                   # pin id -> input level driven by the test
irqs = {}                     # pin id -> [handler, trigger, hard, pin object]
_pending = []                 # soft IRQs waiting for the loop to yield


def _edge(n, v):
    old = levels.get(n, 1)
    levels[n] = v
    h = irqs.get(n)
    if h is None or old == v or h[0] is None:
        return
    want = 2 if v else 1      # IRQ_RISING = 2, IRQ_FALLING = 1
    if not h[1] & want:
        return
    if h[2]:
        h[0](h[3])            # hard IRQ: runs at once, even inside a blocking call
    else:
        _pending.append(h)    # soft IRQ: scheduled, runs when the VM gets to it


# ---- control channel ----
_in = sys.stdin.buffer
_poll = _select.poll()
_poll.register(_in, _select.POLLIN)
_line = bytearray()
eof = False


def _command(s):
    global _skew
    cmd, _, arg = s.partition(" ")
    if cmd == "pin":
        n, v = arg.split()
        _edge(int(n), int(v))
    elif cmd == "set":
        k, _, v = arg.partition(" ")
        S[k] = json.loads(v)
    elif cmd == "advance":
        _skew += int(arg)
    elif cmd == "quit":
        leave(0, "quit")
    else:
        emit(what="error", msg="unknown harness command " + s)


def pump():
    """Read whatever the test sent. Runs at every stand-in call, as the hardware moves
    on whatever the firmware is doing."""
    global eof
    while not eof:
        ev = _poll.poll(0)
        if not ev:
            break
        b = _in.read(1) if ev[0][1] & _select.POLLIN else b""
        if not b:
            eof = True
            leave(0, "eof")
        if b == b"\n":
            s = bytes(_line).decode().strip()
            _line[:] = b""
            if s:
                _command(s)
        else:
            _line.extend(b)
    _wdt_check()


def run_soft_irqs():
    while _pending:
        h = _pending.pop(0)
        if h[0] is not None:
            h[0](h[3])


def yield_point():
    """The loop yields (sleep, poll, idle): scheduled callbacks run here."""
    pump()
    run_soft_irqs()
    _sample_heap()


def stall(ms):
    """A blocking C call that takes `ms`: hard IRQs and the watchdog go on, soft IRQs wait."""
    end = host_ms() + ms
    while True:
        pump()
        left = end - host_ms()
        if left <= 0:
            return
        _poll.poll(min(left, 10))


def sleep_ms(ms):
    end = host_ms() + ms
    while True:
        yield_point()
        left = end - host_ms()
        if left <= 0:
            return
        _poll.poll(min(left, 10))


# ---- radio uplink: bytes the air interface takes, refilled with time ----
_room = 0
_room_t = 0


def uplink_take(n):
    """How many of n bytes the radio accepts right now."""
    global _room, _room_t
    bps = S["uplink_bps"]
    if not bps:
        return n
    now = host_ms()
    _room = min(_room + (now - _room_t) * bps // 1000, 2 * S["tls_record"])
    _room_t = now
    k = min(n, _room)
    _room -= k
    return k
