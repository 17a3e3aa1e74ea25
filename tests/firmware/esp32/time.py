# ESP32 `time` for the stand-in: 30-bit ticks, an RTC that starts at 2000-01-01, and
# sleeps that let scheduled IRQs run.
import harness as _h

_t = _h._time
ticks_ms = _h.ticks_ms
ticks_diff = _h.ticks_diff
ticks_add = _h.ticks_add
sleep_ms = _h.sleep_ms


def ticks_us():
    return (ticks_ms() * 1000) & _h.MASK


def ticks_cpu():
    return ticks_us()


def sleep(s):
    _h.sleep_ms(int(s * 1000))


def sleep_us(us):
    _h.sleep_ms(us // 1000)


def time():
    return _h.rtc_ms() // 1000


def time_ns():
    return _h.rtc_ms() * 1000000


def gmtime(s=None):
    if s is None:
        s = time()
    return _t.gmtime(int(s) + _h.EPOCH_2000)


localtime = gmtime


def mktime(tm):
    return _t.mktime(tm) - _h.EPOCH_2000
