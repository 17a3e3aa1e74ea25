# Button gesture recognizer. Pure logic on (edge, ms) so it is unit-tested under the
# unix port and shared by both boards; debouncing happens in the board layer. Times are
# the app's monotonic milliseconds (plain integers that never wrap).
#
# A pocket bump must never call the police: a trigger needs a long hold or three presses
# in a window. A stressed holder must never withdraw a call the police have not got, so:
# - an alert can be cancelled only once it is delivered (the app sets `cancellable`);
# - cancelling takes two deliberate acts: a hold of cancel_ms arms it (the app beeps),
#   then a short press within confirm_ms confirms it; anything else disarms;
# - while cancellable, a long-mode hold is settled on release (long_ms .. cancel_ms: a
#   NEW alert) or at cancel_ms (arm), so one hold can never be both; a triple press is a
#   new alert in any state.
TRIGGER = "trigger"
ARM = "arm"          # cancel armed: waiting for the confirming press
CANCEL = "cancel"    # confirmed


class Gesture:
    def __init__(self, mode="long", long_ms=2000, window_ms=3000, cancel_ms=5000,
                 confirm_ms=10000):
        self.mode = mode
        self.long_ms = long_ms
        self.window_ms = window_ms
        self.cancel_ms = cancel_ms
        self.confirm_ms = confirm_ms
        self.cancellable = False  # set by the app while a delivered alert may be cancelled
        self.armed = None     # deadline of the confirming press, or None
        self.down = False
        self.t_down = 0
        self.used = False     # this press already fired; holding on must not fire again
        self.presses = []     # down times within the triple-press window

    def set_cancellable(self, on):
        self.cancellable = on
        if not on:
            self.armed = None

    def edge(self, pressed, t):
        if pressed == self.down:
            return None       # repeated edge (lost opposite edge): keep state consistent
        if not pressed:
            ev = self._release(t)
            self.down = False
            return ev
        self._expire(t)
        self.down = True
        self.t_down = t
        self.used = False
        if self.mode != "triple" or self.armed is not None:
            return None
        ps = [p for p in self.presses if t - p < self.window_ms]
        ps.append(t)
        if len(ps) >= 3:
            self.presses = []
            self.used = True
            return TRIGGER
        self.presses = ps
        return None

    def _release(self, t):
        if self.used:
            return None
        held = t - self.t_down
        if self.armed is not None:
            self.armed = None
            if held < self.long_ms:
                # The confirming press: short and deliberate, after the arming beeps.
                self.used = True
                return CANCEL
        # The release settles a hold the loop did not see cross its threshold (a busy
        # loop, a blocking call): edge times come from the IRQ, so they count.
        ev = self._hold(held)
        if ev is None and self.cancellable and self.mode == "long" and held >= self.long_ms:
            self.used = True
            return TRIGGER
        return ev

    def _hold(self, held):
        if self.cancellable:
            if held >= self.cancel_ms:
                self.used = True
                self.armed = self.t_down + self.cancel_ms + self.confirm_ms
                return ARM
        elif self.mode == "long" and held >= self.long_ms:
            self.used = True
            return TRIGGER
        return None

    def _expire(self, t):
        if self.armed is not None and t - self.armed >= 0:
            self.armed = None

    def tick(self, t):
        if not self.down:
            self._expire(t)
            return None
        if self.used:
            return None
        if self.armed is not None and t - self.t_down >= self.long_ms:
            self.armed = None     # not a confirming press: judged as a hold of its own
        return self._hold(t - self.t_down)

    def due(self, t):
        """ms until tick() could change something, or None when nothing is pending."""
        if not self.down:
            return None if self.armed is None else max(0, self.armed - t)
        if self.used:
            return None
        if self.cancellable:
            lim = self.cancel_ms
        elif self.mode == "long":
            lim = self.long_ms
        else:
            return None
        if self.armed is not None:
            lim = self.long_ms
        return max(0, lim - (t - self.t_down))
