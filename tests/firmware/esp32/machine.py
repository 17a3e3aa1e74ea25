# ESP32 `machine` for the stand-in: pins driven by the test, late (scheduled) IRQs, a
# watchdog that resets the board, an RTC kept across resets, deep sleep as a reset.
import harness as _h

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
EXT0_WAKE = 2
PIN_WAKE = 2
EXT1_WAKE = 3
TIMER_WAKE = 4
_CAUSES = {"pwron": PWRON_RESET, "wdt": WDT_RESET, "deepsleep": DEEPSLEEP_RESET,
           "soft": SOFT_RESET, "quit": PWRON_RESET, "eof": PWRON_RESET}


def reset_cause():
    return _CAUSES.get(_h.reset_cause, PWRON_RESET)


def wake_reason():
    if _h.wake_reason == "ext0":
        return EXT0_WAKE
    if _h.wake_reason == "timer":
        return TIMER_WAKE
    return 0


def reset():
    _h.leave(_h.SOFT_EXIT, "soft")


def soft_reset():
    reset()


def deepsleep(ms=0):
    _h.emit(what="deepsleep", ms=ms)
    _h.leave(_h.SLEEP_EXIT, "deepsleep")


def lightsleep(ms=0):
    _h.sleep_ms(ms)


def idle():
    _h.yield_point()
    _h._poll.poll(1)


def freq(*a):
    return 240000000


def unique_id():
    return b"\x24\x0a\xc4\x00\x00\x01"


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 1
    IRQ_RISING = 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        self.out = 0 if value is None else int(bool(value))
        if mode == Pin.IN and id not in _h.levels:
            _h.levels[id] = 0 if pull == Pin.PULL_DOWN else 1

    def value(self, v=None):
        if v is None:
            if self.mode == Pin.OUT:
                return self.out
            _h.pump()
            return _h.levels.get(self.id, 1)
        v = int(bool(v))
        if v != self.out and self.id in _h.S.get("trace_out", ()):
            _h.emit(what="out", pin=self.id, v=v)   # the test watches this output pin
        self.out = v
        return None

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.out = 1

    def off(self):
        self.out = 0

    def irq(self, handler=None, trigger=3, hard=False):
        _h.irqs[self.id] = [handler, trigger, hard, self]


class PWM:
    def __init__(self, pin, freq=1000, duty_u16=0):
        self.pin = pin
        self._f = freq
        self._d = duty_u16

    def freq(self, f=None):
        if f is None:
            return self._f
        self._f = f

    def duty_u16(self, d=None):
        if d is None:
            return self._d
        self._d = d

    def deinit(self):
        self._d = 0


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_12BIT = 3

    def __init__(self, pin, atten=None):
        self.pin = pin

    def atten(self, a):
        pass

    def width(self, w):
        pass

    def read_uv(self):
        return _h.S["batt_uv"]

    def read_u16(self):
        return min(65535, _h.S["batt_uv"] * 65535 // 3300000)

    def read(self):
        return self.read_u16() >> 4


class UART:
    def __init__(self, id, baudrate=9600, tx=None, rx=None, **kw):
        self.id = id

    def any(self):
        return 0

    def read(self, n=None):
        return None

    def write(self, b):
        return len(b)


class WDT:
    def __init__(self, id=0, timeout=5000):
        # One watchdog; a second WDT() sets a new timeout, as esp_task_wdt_reconfigure does
        # on the ESP32 port (it cannot be stopped either).
        _h.wdt_start(timeout)

    def feed(self):
        _h.pump()
        _h.wdt_feed()


class RTC:
    def datetime(self, dt=None):
        if dt is None:
            tm = _h._time.gmtime(_h.rtc_ms() // 1000 + _h.EPOCH_2000)
            return (tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], _h.rtc_ms() % 1000 * 1000)
        y, mo, d, _wd, hh, mm, ss, us = dt
        s = _h._time.mktime((y, mo, d, hh, mm, ss, 0, 0)) - _h.EPOCH_2000
        _h.set_rtc_ms(s * 1000 + us // 1000)

    def init(self, dt):
        self.datetime(dt)
