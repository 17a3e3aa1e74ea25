# GPS fix age on the app's 64-bit clock: after a week without a fix, across the ESP32's
# 2**30 ticks wrap, the old fix is stale, not fresh.
from mp_util import check, done, eq  # first: puts firmware/ on the path
from gps import GPS
from monotonic import Mono

PERIOD = 1 << 30
HALF = PERIOD >> 1
t = [PERIOD - 60000]         # a minute before the wrap


def ticks():
    return t[0]


def diff(a, b):
    return ((a - b + HALF) & (PERIOD - 1)) - HALF


def nmea(body):
    c = 0
    for ch in body:
        c ^= ord(ch)
    return "$%s*%02X" % (body, c)


clk = Mono(ticks, diff)
g = GPS(30, clk.ms)
check(g.feed(nmea("GPGGA,123519,0758.9560,S,11237.6200,E,1,08,0.9,545.4,M,46.9,M,,")), "fix")
eq(g.fix(), (-7982600, 112627000, 5), "fresh fix")
for _ in range(7 * 24):      # a week without GPS, the loop reading the clock every hour
    t[0] = (t[0] + 3600000) & (PERIOD - 1)
    clk.ms()
eq(g.fix(), None, "a week-old fix is stale")
eq(g.age_ms(), 7 * 24 * 3600000, "its age is a week")
check(diff(t[0], PERIOD - 60000) < 30000, "a ticks difference would call it fresh")
done()
