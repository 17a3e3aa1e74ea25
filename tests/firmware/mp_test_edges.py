# IRQ edge ring and debouncer: edges recorded while the loop is blocked are replayed in
# order, with their own times, through the gesture recognizer.
import gc

from mp_util import check, done, eq  # first: puts firmware/ on the path
from edges import Debounce, Ring
from gesture import TRIGGER, Gesture

r = Ring(4)
eq(r.pop(), None, "empty")
for i in range(6):
    r.push(100 + i, i & 1)
eq(r.lost, 2, "full ring counts the edges it could not keep")
eq([r.pop() for _ in range(5)], [(100, 0), (101, 1), (102, 0), (103, 1), None],
   "oldest edges kept, in order")
for i in range(10):              # wraps its indices many times
    r.push(i, 0)
    eq(r.pop(), (i, 0), "push/pop %d" % i)

# push allocates nothing (it runs in the IRQ)
r = Ring(32)


def pushes():
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    r.push(1000, 0)
    r.push(1010, 1)
    r.push(1020, 0)
    b = gc.mem_alloc()
    gc.enable()
    return b - a


eq(pushes(), 0, "no heap allocation in push")

# debounce: contact bounce collapses into one press at the last bounce
got = []
d = Debounce(30, lambda p, t: got.append((p, t)))
for t, lv in ((0, 0), (2, 1), (4, 0)):
    d.edge(t, lv)
d.settle(20, 0)
eq(got, [], "not accepted before it held 30 ms")
d.settle(40, 0)
eq(got, [(True, 4)], "press accepted at the last bounce")
d.edge(500, 1)
d.settle(531, 1)
eq(got[-1], (False, 500), "release")
d.settle(600, 0)                 # an edge the IRQ missed: repaired from the live level
d.settle(640, 0)
eq(got[-1], (True, 600), "missed edge repaired from the pin level")

# a 2.5 s hold made during a 3 s blocking call: both edges wait in the ring, then the
# loop replays them with their IRQ times and the long press fires
r = Ring(32)
r.push(200, 0)                   # down at 0.2 s (IRQ inside the blocking call)
r.push(2700, 1)                  # up at 2.7 s
g = Gesture("long", 2000, 3000, 5000)
fired = []


def to_gesture(pressed, t):
    ev = g.edge(pressed, t)
    if ev:
        fired.append((ev, t))


d = Debounce(30, to_gesture)
now = 3000                       # the loop is back
while True:
    e = r.pop()
    if e is None:
        break
    d.edge(e[0], e[1])
d.settle(now, 1)
eq(fired, [(TRIGGER, 2700)], "2.5 s hold inside a 3 s block raises the alert")
check(r.pop() is None, "ring drained")
done()
