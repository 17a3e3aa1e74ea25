# Button edges from the IRQ to the loop. The handler must not allocate (a hard IRQ may
# interrupt the allocator), so it writes (ticks_ms, level) into a ring preallocated at
# boot; the loop drains the ring in order and debounces. A press made while the loop sat
# in a blocking call is then replayed with the times the IRQ saw, not lost.
from array import array
from time import ticks_diff


class Ring:
    def __init__(self, n=32):
        self.n = n
        self.t = array("i", [0] * n)   # ticks_ms values are < 2**30 on an ESP32
        self.lv = bytearray(n)
        # w is written only by the IRQ, r only by the loop; both count modulo 2n so a
        # full ring is told apart from an empty one without a shared counter.
        self.w = 0
        self.r = 0
        self.lost = 0

    def push(self, t, level):
        """IRQ context: no allocation. A full ring keeps the oldest edges (the press)."""
        w = self.w
        if (w - self.r) % (2 * self.n) >= self.n:
            self.lost += 1
            return
        i = w % self.n
        self.t[i] = t
        self.lv[i] = level
        self.w = (w + 1) % (2 * self.n)

    def pop(self):
        """(ticks, level) of the oldest edge, or None."""
        r = self.r
        if r == self.w:
            return None
        i = r % self.n
        e = (self.t[i], self.lv[i])
        self.r = (r + 1) % (2 * self.n)
        return e


class Debounce:
    """A level counts once it has held for `ms` (contact bounce lasts a few ms). Calls
    out(pressed, ticks) for each accepted change; the button is active low."""

    def __init__(self, ms, out, level=1):
        self.ms = ms
        self.out = out
        self.level = level    # accepted level
        self.pt = None        # time of the candidate edge, None = none pending
        self.pl = level       # its level

    def edge(self, t, level):
        if self.pt is not None and ticks_diff(t, self.pt) >= self.ms:
            self._accept()
        self.pt = t
        self.pl = level

    def settle(self, now, level):
        """Every loop turn, with the pin's level now: accepts a candidate that held, and
        repairs a missed edge (a full ring, a lost IRQ) from the live level."""
        if self.pt is not None:
            if ticks_diff(now, self.pt) >= self.ms:
                self._accept()
        elif level != self.level:
            self.pt = now
            self.pl = level

    def _accept(self):
        if self.pl != self.level:
            self.level = self.pl
            self.out(self.pl == 0, self.pt)
        self.pt = None
