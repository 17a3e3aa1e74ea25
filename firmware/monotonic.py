# Milliseconds since boot as one growing integer. ticks_ms wraps every 2**30 ms (12.4
# days) on an ESP32 and a ticks difference is valid only within half of that, but an
# alert queued through a long outage, the uptime and a cancel window can last longer.
# Extending the ticks is exact as long as ms() is called at least every 2**29 ms; the
# main loop calls it several times a second.
from time import ticks_ms, ticks_diff


class Mono:
    def __init__(self, ticks=ticks_ms, diff=ticks_diff):
        self._ticks = ticks
        self._diff = diff
        self._last = ticks()
        self._ms = 0

    def ms(self):
        t = self._ticks()
        self._ms += self._diff(t, self._last)
        self._last = t
        return self._ms

    def at(self, tk):
        """Monotonic ms of a recent ticks_ms value (an IRQ edge, a board timestamp)."""
        now = self.ms()
        return now - self._diff(self._last, tk)
