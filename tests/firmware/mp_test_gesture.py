# Button gesture state machine: long press, triple press, cancel hold, pocket bumps.
from mp_util import eq, done
from gesture import Gesture, TRIGGER, CANCEL


def run(g, script):
    """script: list of (t, 'down'|'up'|'tick'); returns [(t, event)]."""
    out = []
    for t, what in script:
        if what == "tick":
            e = g.tick(t)
        else:
            e = g.edge(what == "down", t)
        if e:
            out.append((t, e))
    return out


# long press: fires while still held, at 2000 ms, exactly once
g = Gesture("long", 2000, 3000, 5000)
eq(run(g, [(0, "down"), (1999, "tick"), (2000, "tick"), (2500, "tick"), (9000, "tick"),
           (9100, "up")]), [(2000, TRIGGER)], "long press fires once at 2 s")
eq(g.due(0), None, "nothing due when released")
# short presses (pocket bumps) never fire in long mode
g = Gesture("long", 2000, 3000, 5000)
eq(run(g, [(0, "down"), (300, "up"), (400, "down"), (700, "up"), (800, "down"),
           (1000, "up"), (5000, "tick")]), [], "three short presses do not fire in long mode")
eq(run(g, [(6000, "down"), (7990, "up"), (8000, "tick")]), [], "1.99 s press does not fire")
g.edge(True, 10000)
eq(g.due(10500), 1500, "due counts down to the long press")

# cancel: after an alert, a 5 s hold cancels; the triggering hold itself never cancels
g = Gesture("long", 2000, 3000, 5000)
eq(run(g, [(0, "down"), (2000, "tick")]), [(0 + 2000, TRIGGER)], "trigger")
g.active = True
eq(run(g, [(6000, "tick"), (8000, "tick"), (8100, "up")]), [],
   "holding on after the trigger is not a cancel")
eq(run(g, [(10000, "down"), (12000, "tick"), (14999, "tick"), (15000, "tick"),
           (16000, "tick"), (16500, "up")]), [(15000, CANCEL)], "5 s hold cancels")
eq(run(g, [(20000, "down"), (21000, "up"), (30000, "tick")]), [],
   "short press while active is ignored")
eq(run(g, [(40000, "down"), (42500, "tick"), (43000, "up")]), [],
   "2.5 s hold while active: neither a new alert nor a cancel")

# triple press within the window
g = Gesture("triple", 2000, 3000, 5000)
eq(run(g, [(0, "down"), (100, "up"), (1000, "down"), (1100, "up"), (2000, "down"),
           (2100, "up")]), [(2000, TRIGGER)], "triple press fires on the third press")
g = Gesture("triple", 2000, 3000, 5000)
eq(run(g, [(0, "down"), (100, "up"), (1500, "down"), (1600, "up"), (3100, "down"),
           (3200, "up")]), [], "presses spread over > 3 s do not fire")
eq(run(g, [(3500, "down"), (3600, "up")]), [(3500, TRIGGER)],
   "sliding window: presses at 1.5, 3.1, 3.5 s fire")
g = Gesture("triple", 2000, 3000, 5000)
eq(run(g, [(0, "down"), (9000, "tick"), (9100, "up")]), [],
   "a long hold is not a trigger in triple mode")
g.active = True
eq(run(g, [(10000, "down"), (10100, "up"), (10200, "down"), (10300, "up"), (10400, "down"),
           (10500, "up")]), [], "triple press while active does not re-alert")
eq(run(g, [(11000, "down"), (16000, "tick")]), [(16000, CANCEL)], "cancel in triple mode")

# robustness: repeated edges (a lost opposite edge) do not confuse the state
g = Gesture("long", 2000, 3000, 5000)
eq(run(g, [(0, "down"), (100, "down"), (2050, "tick")]), [(2050, TRIGGER)],
   "duplicate down keeps the original press time")
eq(run(g, [(3000, "up"), (3100, "up"), (6000, "tick")]), [], "duplicate up is harmless")
# tick wrap-around: ticks_diff handles the counter wrapping
from time import ticks_add
g = Gesture("long", 2000, 3000, 5000)
t0 = ticks_add(0, -1000)
g.edge(True, t0)
eq(g.tick(ticks_add(t0, 2000)), TRIGGER, "long press across ticks wrap")

# a loop that was busy (a TLS handshake) while the hold crossed its threshold: the
# release edge, timed by the IRQ, still settles it
g = Gesture("long", 2000, 3000, 5000)
eq(run(g, [(0, "down"), (2600, "up")]), [(2600, TRIGGER)], "release after 2.6 s with no tick fires")
eq(run(g, [(5000, "tick")]), [], "and only once")
g.active = True
eq(run(g, [(10000, "down"), (15500, "up")]), [(15500, CANCEL)], "release after a 5.5 s hold cancels")
eq(run(g, [(20000, "down"), (23000, "up")]), [], "a 3 s hold while active does nothing")
done()
