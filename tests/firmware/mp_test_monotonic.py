# The 64-bit monotonic clock across the ESP32's 2**30 ticks wrap, and the gesture and
# cancel-window arithmetic on top of it over 13 days of uptime.
from mp_util import eq, check, done
from monotonic import Mono
from gesture import Gesture, TRIGGER

PERIOD = 1 << 30        # ESP32: ticks_ms wraps here
HALF = PERIOD >> 1


class Ticks:
    """A tick source with the ESP32's period, starting just before the wrap."""

    def __init__(self, start):
        self.t = start

    def __call__(self):
        return self.t

    def advance(self, ms):
        self.t = (self.t + ms) & (PERIOD - 1)


def diff(a, b):
    return ((a - b + HALF) & (PERIOD - 1)) - HALF


tk = Ticks(PERIOD - 5000)
m = Mono(tk, diff)
eq(m.ms(), 0, "starts at 0")
g = Gesture("long", 2000, 3000, 5000)
fired = []


def press(hold_ms):
    t = m.at(tk())
    g.edge(True, t)
    tk.advance(hold_ms)
    ev = g.tick(m.ms())
    if ev:
        fired.append((ev, m.ms()))
    g.edge(False, m.ms())


press(2500)                  # before the wrap
eq(fired, [(TRIGGER, 2500)], "press before the wrap")
# 13 days in steps of 1 s (the loop's longest sleep), across the wrap
day = 86400000
last = m.ms()
ok = True
for _ in range(13 * 24):
    for _ in range(3600):
        tk.advance(1000)
        n = m.ms()
        if n - last != 1000:
            ok = False
        last = n
check(ok, "every 1 s step reads 1000 ms across the wrap")
eq(m.ms(), 13 * day + 2500, "13 days later, 64-bit ms")
check(tk() < PERIOD - 5000, "the ticks really wrapped")
press(2100)                  # after the wrap
eq(fired[-1], (TRIGGER, 13 * day + 4600), "press 13 days later, after the wrap")
# an age across the wrap: a ticks difference this long reads wrong, the clock does not
age = m.ms() - 2500
eq(age, 13 * day + 2100, "age of the first press")
check(diff(tk(), PERIOD - 5000 + 2500) != age, "the raw ticks difference would be wrong")
# a recent IRQ timestamp taken just before a wrap converts correctly after it
tk2 = Ticks(PERIOD - 10)
m2 = Mono(tk2, diff)
t_irq = tk2()
tk2.advance(30)
eq(m2.at(t_irq), 0, "IRQ time before the wrap, read after it")
done()
