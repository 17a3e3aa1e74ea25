# pyright: reportOptionalMemberAccess=false, reportOptionalSubscript=false
# (cfg/mq are set in _setup; the loop only touches them after a successful setup)
# Main loop and device state: one cooperative loop, nothing blocks, so the button, the
# LED and the watchdog are served while the link is down or slow.
import gc
import os
import random
import select
import sys
from time import ticks_ms

import alerts
import battery
import gesture
import mqtt
import outbox
import proto
from hmac256 import HMAC
from monotonic import Mono

_GC_MS = 500
_STABLE_MS = 60000    # a boot that ran this long ends a run of crash boots (main.py)


class App:
    def __init__(self, board):
        self.b = board
        self.running = True
        self.rc = 0
        self.cfg = None
        self.poller = select.poll()
        # Every time the app keeps is monotonic ms since boot (never wraps); ticks_ms
        # values from the board (IRQ edges) are converted on arrival.
        self.clk = Mono()
        self.t0 = 0
        self.peak = 0
        self.led = None
        self.buzz = None
        self.mq = None
        self.gps = None
        self.al = None        # alert progress and cancel rules (alerts.py)
        self.low_batt = False
        self._t_batt = -1000
        self._t_gc = 0
        self.boot_hold_ms = 0  # a press held through power-up (main.py), judged at setup
        self._stable = False

    # ---- output ----
    def emit(self, ev, **kw):
        kw["ev"] = ev
        self.b.emit(kw)

    def log(self, msg):
        self.emit("log", msg=msg)

    def _set_led(self, p):
        if p != self.led:
            self.led = p
            self.b.led(p)
            self.emit("led", pattern=p)

    def _set_buzz(self, p):
        if p != self.buzz:
            self.buzz = p
            self.b.buzzer(p)
            self.emit("buzzer", pattern=p)

    def heap(self):
        gc.collect()
        a = gc.mem_alloc()
        if a > self.peak:
            self.peak = a
        self.emit("heap", alloc=a, free=gc.mem_free(), peak=self.peak)

    # ---- boot ----
    def _setup(self):
        b = self.b
        import config
        c, err = config.load(b.flash + "/config.json")
        # Validation code is needed once per boot: unloading it returns its RAM.
        del config
        sys.modules.pop("config", None)
        gc.collect()
        if err:
            self.ob = outbox.Outbox(b.flash, 32, self.log)
            self.boot = outbox.next_boot(b.flash, self.ob.max_boot)
            self.emit("boot", dev=None, boot=self.boot, fw=proto.FW, outbox=len(self.ob))
            self.emit("config_error", msg=err)
            self._set_led("config_error")
            self._set_buzz("config_error")
            b.register(self.poller)
            return False
        # Long-lived buffers first, while the heap is still unfragmented.
        self.mq = mqtt.Client(c["dev"], c["mqtt_user"], c["mqtt_password"], c["keepalive_s"],
                              c["topic_root"] + "/" + c["dev"] + "/status",
                              proto.will_body(c["dev"]), self._on_msg, self._on_up, self.log)
        self.ob = outbox.Outbox(b.flash, c["outbox_max"], self.log)
        gc.collect()
        self.boot = outbox.next_boot(b.flash, max(self.ob.max_boot, c["boot_floor"]))
        self.seq = 0
        self.emit("boot", dev=c["dev"], boot=self.boot, fw=proto.FW, outbox=len(self.ob))
        self.cfg = c
        self.dev = c["dev"]
        self.mac = HMAC(c["secret"])
        root = c["topic_root"] + "/" + self.dev
        self.t_alert = root + "/alert"
        self.t_status = root + "/status"
        self.t_ack = root + "/ack"
        self.al = alerts.Alerts(c["cancel_window_s"] * 1000, c["fail_ms"])
        self.gest = gesture.Gesture(c["trigger"], c["long_press_ms"], c["triple_window_ms"],
                                    c["cancel_hold_ms"], c["cancel_confirm_ms"])
        if c["gps"]:
            self.gps_on()
        self.loc = (c["lat6"], c["lon6"], c["acc"])
        self.mq.attach(self.poller)
        self.bi = 0                       # broker index: primary, then backups
        self.rc_delay = c["reconnect_min_ms"]
        now = self.clk.ms()
        self.rc_due = now
        self.t_hb = now
        self.was_up = False
        last = None
        for r in self.ob.recs:
            # Alerts from before this boot: sent again at once, oldest first.
            r["_n"] = 0
            r["_due"] = now
            last = r["ref"] if r["kind"] == "cancel" else r["id"]
        if last is not None:
            # Shown as in progress, but not cancellable: nothing says the police got it
            # until an ack arrives in this boot.
            self.al.raised(last, now)
        b.setup(self)
        b.register(self.poller)
        if self.boot_hold_ms:
            # Held while the board powered up and released before safe mode: a press
            # like any other (a panic when long enough).
            t = self.clk.ms()
            for ev in (self.gest.edge(True, t - self.boot_hold_ms), self.gest.edge(False, t)):
                if ev:
                    self._gesture(ev, t)
        return True

    # ---- inputs (called by the board) ----
    def gps_on(self):
        # Imported only when a GPS is configured or fed: RAM is scarce on a 64K heap.
        if self.gps is None and self.cfg is not None:
            from gps import GPS
            g = self.cfg["gps"]
            self.gps = GPS(g["fix_timeout_s"] if g else 30)
        return self.gps

    def now(self):
        return self.clk.ms()

    def button(self, pressed, tk=None):
        """A debounced edge; tk = its ticks_ms time (from the IRQ), None = now."""
        if self.cfg is None:
            return
        t = self.clk.ms() if tk is None else self.clk.at(tk)
        ev = self.gest.edge(pressed, t)
        if ev:
            self._gesture(ev, t)

    def _gesture(self, ev, t):
        if ev == gesture.TRIGGER:
            self._trigger("test" if self.cfg["drill"] else "panic", t)
        elif ev == gesture.ARM:
            # Two beeps and a fast LED: "press once more to cancel".
            self._set_buzz("cancel_confirm")
            self._update_led(t)
        elif ev == gesture.CANCEL:
            self._cancel(t)

    def trigger(self, kind="panic", tk=None):
        """An alert now (tk = ticks_ms of the press, None = now)."""
        return self._trigger(kind, self.clk.ms() if tk is None else self.clk.at(tk))

    def _trigger(self, kind, tk):
        if self.cfg is None:
            self.log("trigger ignored: no valid config")
            return None
        c = self.cfg
        self.seq += 1
        w = self.b.wall_ms()
        if w is not None:
            w -= self.clk.ms() - tk
        rec = {"id": "%s:%d:%d" % (self.dev, self.boot, self.seq), "boot": self.boot,
               "seq": self.seq, "kind": kind, "t": w}
        fx = self.gps.fix() if self.gps else None
        if fx:
            # Only a GPS position is stored: the fixed one is in the config, and every
            # byte per record counts when a full outbox must load on a small heap.
            rec["lat6"], rec["lon6"], rec["acc"] = fx
        if kind == "cancel":
            rec["ref"] = self.al.active
        # Into flash before it goes on the air: a power cut from here on cannot lose it.
        ev = self.ob.add(rec)
        if ev is not None:
            self.log("outbox full: dropped %s" % ev["id"])
        rec["_tk"] = tk
        rec["_n"] = 0
        rec["_due"] = tk
        if kind == "cancel":
            self._set_buzz("cancelled")
        else:
            # A press during an active alert is a new alert: the LED follows the newest.
            self.al.raised(rec["id"], tk)
            self._set_buzz("sending")
        self.gest.set_cancellable(False)
        now = self.clk.ms()
        if self.mq.state == mqtt.UP:
            self._send(rec, now)
        else:
            # A press is the best reason to try the link now rather than after backoff.
            self.rc_delay = c["reconnect_min_ms"]
            self.rc_due = now
        self._update_led(now)
        return rec["id"]

    def cancel(self, tk=None):
        """Withdraw the active alert, only if the gateway has acked it (see gesture.py)."""
        return self._cancel(self.clk.ms() if tk is None else self.clk.at(tk))

    def _cancel(self, t):
        if self.cfg is None or not self.al.cancellable(t, self.ob.recs):
            self.log("cancel refused: no delivered alert to cancel")
            return None
        return self._trigger("cancel", t)

    def status(self):
        if self.mq and self.mq.state == mqtt.UP:
            self._status()
        else:
            self.log("status not sent: link down")
        self.heap()

    def link_lost(self, why):
        """Board reports the network is gone (WiFi off)."""
        if self.mq and self.mq.sock is not None:
            self.mq.close(why)

    def stop(self):
        self.running = False

    # ---- network ----
    def _on_msg(self, topic, payload):
        if topic != self.t_ack:
            self.log("unexpected topic " + topic)
            return
        if payload is None:
            self.emit("bad_ack", reason="size")
            return
        why, d = proto.verify_ack(self.mac, payload)
        if why:
            self.emit("bad_ack", reason=why)
            return
        aid = d["id"]
        st = d["stage"]
        self.emit("ack", id=aid, stage=st, inc=d.get("inc"))
        now = d.get("now")
        if now is not None and not self.b.synced():
            self.b.set_clock(now)
        rec = self.ob.get(aid)
        if rec is not None and st == "rejected" and d.get("reason") == "id_reuse":
            self._rekey(rec, d.get("floor"))
            return
        if rec is not None:
            if rec.get("_pid"):
                self.mq.forget(rec["_pid"])
            self.ob.done(aid)
        bz = self.al.ack(rec, aid, st)
        if bz is not None:
            self._set_buzz(bz)
        t = self.clk.ms()
        self.gest.set_cancellable(self.al.cancellable(t, self.ob.recs))
        self._update_led(t)

    def _rekey(self, rec, floor):
        # The gateway already holds this id from an earlier life of the board (flash wiped,
        # boot counter restarted): the press is new, so it goes again under a boot number
        # above any the gateway has seen. New record first: a power cut between the two
        # writes leaves both, and the old one is simply re-keyed again.
        old = rec["id"]
        if rec.get("_pid"):
            self.mq.forget(rec["_pid"])
        f = floor if isinstance(floor, int) else 0
        self.boot = outbox.next_boot(self.b.flash, max(self.boot, self.ob.max_boot, f))
        self.seq += 1
        new = {"id": "%s:%d:%d" % (self.dev, self.boot, self.seq), "boot": self.boot, "seq": self.seq}
        for k in rec:
            if k not in new and k[0] != "_":
                new[k] = rec[k]
        self.ob.add(new)
        self.ob.done(old)
        if rec.get("_tk") is not None:
            new["_tk"] = rec["_tk"]
        new["_n"] = 0
        new["_due"] = self.clk.ms()
        self.al.renamed(old, new["id"])
        self.log("id %s reused from an earlier life: resent as %s" % (old, new["id"]))

    def _age(self, rec, now):
        tk = rec.get("_tk")
        if tk is not None:
            return now - tk
        w = self.b.wall_ms()
        if rec["t"] is not None and w is not None:
            return max(0, w - rec["t"])
        # From an earlier boot without a clock: time since this boot is a lower bound.
        return now - self.t0

    def _send(self, rec, now):
        c = self.cfg
        age = self._age(rec, now)
        body = proto.alert(self.mac, self.dev, rec, age, self.b.battery(), self.b.rssi(),
                           self.loc)
        if rec.get("_pid"):
            self.mq.forget(rec["_pid"])   # superseded by this re-signed copy
        rec["_pid"] = self.mq.publish(self.t_alert, body, False, False)
        n = rec["_n"] + 1
        rec["_n"] = n
        rec["_due"] = now + min(c["retry_ms"] << min(n - 1, 10), c["retry_max_ms"])
        tk = rec.get("_tk")
        self.emit("alert", id=rec["id"], kind=rec["kind"], **{
            "try": n, "pub_ms": self.clk.ms() - tk if tk is not None else age})

    def _status(self, state="online"):
        b = self.b
        now = self.clk.ms()
        body = proto.status_body(self.dev, state, self.boot, (now - self.t0) // 1000,
                                 b.battery(), b.rssi(), len(self.ob))
        self.t_hb = now
        return self.mq.publish(self.t_status, body, True, True)

    def _broker(self):
        return self.cfg["brokers"][self.bi]

    def _connect(self, now):
        br = self._broker()
        tls = None
        if br["tls"]:
            tls = {"ca": self.b.read_ca(br.get("ca")), "server_hostname": br.get("server_hostname")}
        try:
            self.b.feed()
            self.mq.start(br["host"], br["port"], tls)
        except Exception as e:  # noqa: BLE001 -- any failure is just "try later"
            self.mq.close()
            self._connect_failed(now, "connect %s:%d: %s" % (br["host"], br["port"], e))

    def _connect_failed(self, now, why):
        c = self.cfg
        self.log(why)
        self.bi = (self.bi + 1) % len(c["brokers"])
        if self.bi == 0:
            # Whole list failed: exponential backoff with jitter, so a thousand buttons
            # coming back after a city-wide outage do not hit the broker in lockstep.
            d = self.rc_delay
            self.rc_delay = min(d * 2, c["reconnect_max_ms"])
            d = d // 2 + random.getrandbits(16) % (d // 2 + 1)
            self.rc_due = now + d
        else:
            self.rc_due = now   # a backup broker is a second path: try it at once

    def _link(self, now):
        mq = self.mq
        if not self.b.net_up():
            if mq.sock is not None:
                mq.close("network down")
        elif mq.state == mqtt.CLOSED and now >= self.rc_due:
            self._connect(now)
        mq.service()
        if self.was_up and mq.state != mqtt.UP:
            self.was_up = False
            br = self._broker()
            self.emit("link", state="down", broker="%s:%d" % (br["host"], br["port"]),
                      reason=mq.err)
            mq.err = None
            self.rc_delay = self.cfg["reconnect_min_ms"]
            self.rc_due = now + self.rc_delay
        elif not self.was_up and mq.state == mqtt.CLOSED and mq.err:
            err = mq.err
            mq.err = None
            self._connect_failed(now, err)

    def _on_up(self):
        self.was_up = True
        now = self.clk.ms()
        br = self._broker()
        self.rc_delay = self.cfg["reconnect_min_ms"]
        self.emit("link", state="up", broker="%s:%d" % (br["host"], br["port"]))
        self.mq.subscribe(self.t_ack)
        # Drain oldest first, right away: a reconnect is when the backlog matters most.
        for r in self.ob.recs:
            r["_due"] = now
        self._drain(now)
        self._status()

    def _drain(self, now):
        if self.mq.state != mqtt.UP:
            return
        for r in self.ob.recs:
            if now >= r["_due"]:
                if gc.mem_free() < 12288:
                    # Collect before the heap is exhausted: a drain of a full outbox on a
                    # 64K heap otherwise fails on fragmentation, not on live data.
                    gc.collect()
                try:
                    self._send(r, now)
                except MemoryError:
                    # Out of RAM mid-drain: the rest stays in flash and goes next turn;
                    # crashing here would only reboot into the same full outbox.
                    gc.collect()
                    return
                if self.mq.state != mqtt.UP:
                    return

    # ---- feedback ----
    def _update_led(self, now):
        if self.al.expired(now):
            # Nothing more after a long while, acked or not: the LED goes back to normal
            # and the cancel window closes (an unacked alert still retries from the outbox).
            self.gest.set_cancellable(False)
            self._set_buzz("off")
        p = self.al.led(now, self.ob.recs, self.gest.armed is not None,
                        self.mq.state == mqtt.UP, self.low_batt, self.t0)
        if p == "failed" and self.buzz == "sending":
            self._set_buzz("failed")
        self._set_led(p)

    def _check_battery(self, now):
        # The board averages its ADC; read it once a second, not on every 20 ms turn.
        if now - self._t_batt >= 1000:
            self._t_batt = now
            self.low_batt = battery.low_flag(self.low_batt, self.b.battery(),
                                             self.cfg["batt_low"])

    # ---- loop ----
    def _timeout(self, now):
        t = 1000
        if self.cfg is None:
            return min(t, self.b.tick_ms)     # the board may still blink config_error
        g = self.gest.due(now)
        if g is not None:
            t = min(t, g)
        mq = self.mq
        if mq.state == mqtt.TCP or mq.wbuf:
            t = min(t, 5)
        elif mq.state == mqtt.CLOSED and self.b.net_up():
            # Without a network there is nothing to reconnect to: the board's tick (or
            # stdin, on the sim board) wakes the loop when WiFi returns.
            t = min(t, max(0, self.rc_due - now))
        elif mq.state == mqtt.UP:
            for r in self.ob.recs:
                t = min(t, max(0, r["_due"] - now))
        return min(t, self.b.tick_ms)

    def run(self):
        ok = self._setup()
        self.emit("ready")
        b = self.b
        while self.running:
            now = self.clk.ms()
            self.poller.poll(self._timeout(now))
            b.feed()
            b.service(self)
            if not self.running:
                continue
            if not ok:
                # Bad config: no app, but the board still plays the config_error pattern.
                b.led_tick(ticks_ms())
                continue
            now = self.clk.ms()
            ev = self.gest.tick(now)
            if ev:
                self._gesture(ev, now)
            self._link(now)
            now = self.clk.ms()
            self._drain(now)
            if self.mq.state == mqtt.UP and now - self.t_hb >= self.cfg["heartbeat_s"] * 1000:
                self._status()
            self._check_battery(now)
            self._update_led(now)
            b.led_tick(ticks_ms())
            if not self._stable and now - self.t0 >= _STABLE_MS:
                self._stable = True
                self._forget_crashes()
            if now - self._t_gc >= _GC_MS:
                self._t_gc = now
                gc.collect()
                a = gc.mem_alloc()
                if a > self.peak:
                    self.peak = a
            if self.cfg["sleep"] and b.can_sleep:
                self._maybe_sleep(now)
        if self.mq is not None:
            self.mq.close()
        self.heap()
        return self.rc

    def _forget_crashes(self):
        # This boot is healthy: the crash boots before it are no longer "in a row".
        try:
            os.remove(self.b.flash + "/crashes")    # main.py / safemode.py count there
        except OSError:
            pass

    def _maybe_sleep(self, now):
        # Battery variant: stay awake while an alert is unacked (bounded by awake_s) or the
        # button is held, then tell the gateway we sleep (not silent) and deep-sleep with
        # wake on the button and a timer for the next heartbeat.
        c = self.cfg
        awake = now - self.t0
        if self.gest.down or self.gest.armed is not None or awake < 3000:
            return
        if (self.ob.recs or self.mq.state != mqtt.UP) and awake < c["awake_s"] * 1000:
            return
        if self.mq.state == mqtt.UP:
            pid = self._status("sleeping")
            end = self.clk.ms() + 2000
            while pid in self.mq.inflight and self.clk.ms() < end:
                self.poller.poll(20)
                self.b.feed()
                self.mq.service()
            self.mq.close()
        self._forget_crashes()
        self.emit("sleep", awake_ms=self.clk.ms() - self.t0, ms=c["sleep_heartbeat_s"] * 1000)
        self.b.deepsleep(c["sleep_heartbeat_s"] * 1000)
