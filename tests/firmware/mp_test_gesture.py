# Button gesture state machine: long press, triple press, cancel hold, pocket bumps.
from mp_util import eq, done
from gesture import Gesture, TRIGGER, CANCEL, ARM


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

# cancel needs a delivered alert, a 5 s hold (arms: the app beeps) and a confirming
# short press within 10 s; the triggering hold itself never cancels
g = Gesture("long", 2000, 3000, 5000)
eq(run(g, [(0, "down"), (2000, "tick")]), [(0 + 2000, TRIGGER)], "trigger")
g.set_cancellable(True)
eq(run(g, [(6000, "tick"), (8000, "tick"), (8100, "up")]), [],
   "holding on after the trigger is not a cancel")
eq(run(g, [(10000, "down"), (12000, "tick"), (14999, "tick"), (15000, "tick"),
           (16000, "tick"), (16500, "up")]), [(15000, ARM)], "5 s hold only arms the cancel")
eq(g.due(17000), 8000, "due counts down to the end of the confirm window")
eq(run(g, [(18000, "down"), (18300, "up")]), [(18300, CANCEL)], "confirming press cancels")
eq(g.armed, None, "disarmed after the cancel")
# unconfirmed: the window closes, a later short press is nothing
g = Gesture("long", 2000, 3000, 5000)
g.set_cancellable(True)
eq(run(g, [(0, "down"), (5000, "tick"), (5100, "up"), (15000, "tick"), (15500, "down"),
           (15600, "up")]), [(5000, ARM)], "no confirmation within 10 s: no cancel")
# a stressed holder who keeps holding never cancels
g = Gesture("long", 2000, 3000, 5000)
g.set_cancellable(True)
eq(run(g, [(0, "down"), (5000, "tick"), (60000, "tick"), (60100, "up"), (61000, "tick")]),
   [(5000, ARM)], "a 60 s hold arms but never cancels")
# armed, then a long hold instead of a short press: a new alert, not a cancel
g = Gesture("long", 2000, 3000, 5000)
g.set_cancellable(True)
eq(run(g, [(0, "down"), (5000, "tick"), (5100, "up"), (6000, "down"), (8000, "tick"),
           (8600, "up")]), [(5000, ARM), (8600, TRIGGER)], "armed + 2.6 s hold = new alert")
# the alert stops being cancellable (resolved) while armed: the confirm press is nothing
g = Gesture("long", 2000, 3000, 5000)
g.set_cancellable(True)
eq(run(g, [(0, "down"), (5000, "tick"), (5100, "up")]), [(5000, ARM)], "armed")
g.set_cancellable(False)
eq(run(g, [(6000, "down"), (6200, "up")]), [], "not cancellable any more: press ignored")
# undelivered alert (not cancellable): a hold is a new alert at 2 s, never a cancel
g = Gesture("long", 2000, 3000, 5000)
eq(run(g, [(0, "down"), (2000, "tick")]), [(2000, TRIGGER)], "first alert")
eq(run(g, [(3000, "up"), (10000, "down"), (12000, "tick"), (15000, "tick"), (16000, "up"),
           (17000, "down"), (17200, "up")]), [(12000, TRIGGER)],
   "unacked alert: a 6 s hold + press is a new alert, never a cancel")
# delivered alert: a 2.5 s hold is a NEW alert (on release), a short press is nothing
g = Gesture("long", 2000, 3000, 5000)
g.set_cancellable(True)
eq(run(g, [(20000, "down"), (21000, "up"), (30000, "tick")]), [],
   "short press while active is ignored")
eq(run(g, [(40000, "down"), (42500, "tick"), (43000, "up")]), [(43000, TRIGGER)],
   "3 s hold while active: a new alert on release")

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
g.set_cancellable(True)
eq(run(g, [(10000, "down"), (10100, "up"), (10200, "down"), (10300, "up"), (10400, "down"),
           (10500, "up")]), [(10400, TRIGGER)], "triple press while active is a new alert")
eq(run(g, [(11000, "down"), (16000, "tick"), (16100, "up"), (17000, "down"), (17100, "up")]),
   [(16000, ARM), (17100, CANCEL)], "cancel in triple mode: hold, then confirm")

# robustness: repeated edges (a lost opposite edge) do not confuse the state
g = Gesture("long", 2000, 3000, 5000)
eq(run(g, [(0, "down"), (100, "down"), (2050, "tick")]), [(2050, TRIGGER)],
   "duplicate down keeps the original press time")
eq(run(g, [(3000, "up"), (3100, "up"), (6000, "tick")]), [], "duplicate up is harmless")
# times are monotonic ms beyond 2**30 (13 days of uptime): plain integers
g = Gesture("long", 2000, 3000, 5000)
t0 = 13 * 86400000
g.edge(True, t0)
eq(g.tick(t0 + 2000), TRIGGER, "long press after 13 days")

# a loop that was busy (a TLS handshake) while the hold crossed its threshold: the
# release edge, timed by the IRQ, still settles it
g = Gesture("long", 2000, 3000, 5000)
eq(run(g, [(0, "down"), (2600, "up")]), [(2600, TRIGGER)], "release after 2.6 s with no tick fires")
eq(run(g, [(5000, "tick")]), [], "and only once")
g.set_cancellable(True)
eq(run(g, [(10000, "down"), (15500, "up"), (16000, "down"), (16100, "up")]),
   [(15500, ARM), (16100, CANCEL)], "release after a 5.5 s hold arms, a press confirms")
eq(run(g, [(20000, "down"), (23000, "up")]), [(23000, TRIGGER)],
   "a 3 s hold while active is a new alert")

# a 2.5 s hold replayed from the IRQ ring after a 3 s blocking call: both edges arrive
# at once, with their own times
g = Gesture("long", 2000, 3000, 5000)
eq(run(g, [(200, "down"), (2700, "up"), (3000, "tick")]), [(2700, TRIGGER)],
   "hold inside a blocking call")
done()
