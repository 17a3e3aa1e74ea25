# Battery gauge: percent of a Li-ion cell, averaging and hysteresis on "low".
from mp_util import eq, check, done
import battery

eq(battery.percent(3300), 0, "empty")
eq(battery.percent(3000), 0, "below empty clamps to 0")
eq(battery.percent(4200), 100, "full")
eq(battery.percent(3750), 50, "half")
eq(battery.low_flag(False, 0, 20), True, "0 % is low (not 'unknown')")
eq(battery.low_flag(False, None, 20), False, "no gauge is never low")
# hysteresis: enters at < 20, leaves only at >= 25
seq = [22, 19, 21, 23, 24, 25, 19, 20]
st = False
out = []
for p in seq:
    st = battery.low_flag(st, p, 20)
    out.append(st)
eq(out, [False, True, True, True, True, False, True, True], "low flag with a 5 % band")
# averaging: one spike moves the average by an eighth, a steady level is reached
s = battery.Smoother()
eq(s.feed(3800), 3800, "first reading")
eq(s.feed(3000), 3700, "a spike moves it by 1/8")
for _ in range(80):
    v = s.feed(3600)
check(3590 <= v <= 3610, "settles on a steady level: %d" % v)
done()
