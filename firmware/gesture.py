# Button gesture recognizer. Pure logic on (edge, ticks) so it is unit-tested under the
# unix port and shared by both boards; debouncing happens in the board layer.
# A pocket bump must never call the police: a trigger needs a long hold or three presses
# in a window. While an alert is active only a long hold (cancel) means anything, so a
# worried user pressing again does not raise a second incident.
from time import ticks_diff

TRIGGER = "trigger"
CANCEL = "cancel"


class Gesture:
    def __init__(self, mode="long", long_ms=2000, window_ms=3000, cancel_ms=5000):
        self.mode = mode
        self.long_ms = long_ms
        self.window_ms = window_ms
        self.cancel_ms = cancel_ms
        self.active = False   # set by the app while an alert can still be cancelled
        self.down = False
        self.t_down = 0
        self.used = False     # this press already fired; holding on must not fire again
        self.presses = []     # down times within the triple-press window

    def edge(self, pressed, t):
        if pressed == self.down:
            return None       # repeated edge (lost opposite edge): keep state consistent
        if not pressed:
            # The release settles a hold the loop did not see cross its threshold (a busy
            # loop, a blocking TLS handshake): edge times come from the IRQ, so they count.
            ev = self.tick(t)
            self.down = False
            return ev
        self.down = pressed
        self.t_down = t
        self.used = False
        if self.mode != "triple" or self.active:
            return None
        ps = [p for p in self.presses if ticks_diff(t, p) < self.window_ms]
        ps.append(t)
        if len(ps) >= 3:
            self.presses = []
            self.used = True
            return TRIGGER
        self.presses = ps
        return None

    def tick(self, t):
        if not self.down or self.used:
            return None
        held = ticks_diff(t, self.t_down)
        if self.active:
            if held >= self.cancel_ms:
                self.used = True
                return CANCEL
        elif self.mode == "long" and held >= self.long_ms:
            self.used = True
            return TRIGGER
        return None

    def due(self, t):
        """ms until tick() could fire, or None when nothing is pending."""
        if not self.down or self.used:
            return None
        if self.active:
            lim = self.cancel_ms
        elif self.mode == "long":
            lim = self.long_ms
        else:
            return None
        return max(0, lim - ticks_diff(t, self.t_down))
