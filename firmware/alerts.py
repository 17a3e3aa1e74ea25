# Alert progress and the cancel rules, as pure logic on monotonic ms: which alert the LED
# follows, how far the police have got with it, whether it may still be withdrawn, and
# which LED pattern that means. No I/O: the app journals, sends and plays patterns.
#
# A holder must never withdraw a call the police have not received: an alert becomes
# cancellable only when a verified ack for it arrived in this boot, and stays so for
# `window_ms` from the press. The window closes with or without an ack.

# Ack stage -> rank (a late "received" must not undo "dispatched") and LED pattern.
RANK = {"received": 1, "acknowledged": 2, "dispatched": 3, "on_scene": 4,
        "resolved": 5, "cancelled": 5, "rejected": 5}
LED = {"received": "received", "acknowledged": "received", "dispatched": "dispatched",
       "on_scene": "on_scene"}


class Alerts:
    def __init__(self, window_ms, fail_ms):
        self.window_ms = window_ms
        self.fail_ms = fail_ms
        self.active = None    # id of the alert whose progress the LED shows
        self.stage = None     # its best ack stage so far; None = not delivered
        self.t_active = 0
        self.last = None      # id of the most recent panic/test

    def raised(self, rid, t):
        """A new panic/test (also one carried over from flash at boot): the LED follows
        the newest, which is not delivered until its own ack arrives."""
        self.last = self.active = rid
        self.stage = None
        self.t_active = t

    def renamed(self, old, new):
        if self.active == old:
            self.active = new
        if self.last == old:
            self.last = new

    def end(self):
        self.active = None
        self.stage = None

    def cancellable(self, now, pend):
        if self.active is None or self.stage is None or now - self.t_active > self.window_ms:
            return False
        for r in pend:
            if r["kind"] == "cancel" and r.get("ref") == self.active:
                return False      # already being withdrawn
        return True

    def ack(self, rec, aid, st):
        """A verified ack (rec = the outbox record it settles, or None). Returns the
        buzzer pattern to play, or None."""
        if rec is not None and rec["kind"] == "cancel" and rec.get("ref") == self.active \
                and st != "rejected":
            self.end()
            return "cancelled"
        if aid != self.active:
            return None
        if RANK[st] >= 5:
            self.end()
            return "cancelled" if st == "cancelled" else "off"
        if self.stage is None or RANK[st] > RANK[self.stage]:
            self.stage = st
            return LED[st]
        return None

    def expired(self, now):
        """True once when the window of the active alert closes (acked or not)."""
        if self.active is not None and now - self.t_active > self.window_ms:
            self.end()
            return True
        return False

    def led(self, now, pend, armed, up, low_batt, t_boot):
        if armed:
            return "cancel_confirm"
        if self.active is not None and self.stage is not None:
            return LED[self.stage]
        if pend:
            # Still retrying, but the user must know the call has not got through.
            tk = pend[0].get("_tk", t_boot)
            return "failed" if now - tk > self.fail_ms else "sending"
        if not up:
            return "offline"
        return "low_battery" if low_batt else "idle"
