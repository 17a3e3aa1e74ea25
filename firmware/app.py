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

import alerting
import mqtt
import proto
from monotonic import Mono

_GC_MS = 500
_STABLE_MS = 60000    # a boot that ran this long ends a run of crash boots (main.py)


class App(alerting.Alerting):
    def __init__(self, board, cfg):
        self.b = board
        self.loaded = cfg     # (config, None) or (None, message): config.load()
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
        self.low_batt = False
        self._t_batt = -1000
        self._t_gc = 0
        self.boot_hold_ms = 0  # a press held through power-up (main.py), judged at setup
        self.cell = None       # cellular.Cellular when a modem is fitted (startup.py)
        self.via = "wifi"      # the link the MQTT client uses: "wifi" or "cellular"
        self._stable = False
        # Remote commands (remote.py): one waiting for its result, the end of a locate,
        # commands refused unanswered (forged, garbled, another device's).
        self.pend = None
        self.locate_until = 0
        self.bad_cmd = 0
        self.portal = None     # portal.Portal while in setup mode (startup.py)
        # Updates (otastate.py, ota.py): the slot running (main.py's loader replaces this
        # with ota/state.json), the release of the last ota command, the download job
        # (ota.Job, loaded only while a download runs), per-boot report flags.
        self.ost = {"run": "factory", "seq": 0, "trial": False}
        self.ota_rel = None
        self.ota = None
        try:
            os.stat(board.flash + "/ota/dl.json")
            self.ota_dl = True         # a download to resume
        except OSError:
            self.ota_dl = False
        self.ota_said = None   # when this trial boot last said "trial" (otastate.py)
        self.ota_rpid = None

    # ---- output (emit, log: alerting.py) ----

    def heap(self):
        gc.collect()
        a = gc.mem_alloc()
        if a > self.peak:
            self.peak = a
        self.emit("heap", alloc=a, free=gc.mem_free(), peak=self.peak)

    # ---- boot ----
    def _setup(self):
        import startup
        ok = startup.setup(self)
        # Needed once per boot: unloading it returns its RAM.
        del startup
        sys.modules.pop("startup", None)
        gc.collect()
        if ok and self.setup_why:
            import portal
            portal.start(self, self.setup_why)
        if ok and self.cfg["modem"]:
            # After startup's code is gone: compiling these is the next peak.
            if self.b.modem_uart() is None:
                self.log("modem configured but this board has none: cellular and SMS off")
            else:
                import cellular
                self.cell = cellular.Cellular(self)
        return ok

    # ---- inputs (called by the board) ----
    def gps_on(self):
        # Imported only when a GPS is configured or fed: RAM is scarce on a 64K heap.
        if self.gps is None and self.cfg is not None:
            from gps import GPS
            g = self.cfg["gps"]
            self.gps = GPS(g["fix_timeout_s"] if g else 30, self.clk.ms)
        return self.gps

    def now(self):
        return self.clk.ms()

    def status(self):
        if self.mq and self.mq.state == mqtt.UP:
            self._status()
        else:
            self.log("status not sent: link down")
        self.heap()

    def clock_set(self):
        """The board's clock just became right (NTP): a TLS connect that failed on
        certificate dates can succeed now, so try at once rather than after backoff."""
        if self.mq is not None and self.mq.state == mqtt.CLOSED:
            self.rc_delay = self.cfg["reconnect_min_ms"]
            self.rc_due = self.clk.ms()

    def link_lost(self, why):
        """Board reports the network is gone (WiFi off)."""
        if self.mq and self.mq.sock is not None and self.via == "wifi":
            self.mq.close(why)

    def stop(self):
        self.running = False

    def reset(self, why):
        """Restart the board (an update, a rollback, a reboot command). The simulator has no
        reset: the process ends with exit code 3 and its host starts it again."""
        self.emit("reset", why=why)
        if self.b.name == "esp32":
            import machine
            machine.reset()
        self.running = False
        self.rc = 3

    # ---- network ----
    def _send(self, rec, now):
        c = self.cfg
        age = self._age(rec, now)
        body = proto.alert(self.mac, self.dev, rec, age, self.b.battery(), self.b.rssi(),
                           self.loc, "cellular" if self.via == "cellular" else None)
        if rec.get("_pid"):
            self.mq.forget(rec["_pid"])   # superseded by this re-signed copy
        rec["_pid"] = self.mq.publish(self.t_alert, body, retain=False, keep=False)
        n = rec["_n"] + 1
        rec["_n"] = n
        rec["_due"] = now + min(c["retry_ms"] << min(n - 1, 10), c["retry_max_ms"])
        tk = rec.get("_tk")
        self.emit("alert", id=rec["id"], kind=rec["kind"], via=self.via, **{
            "try": n, "pub_ms": self.clk.ms() - tk if tk is not None else age})

    def _status(self, state="online", pos=None):
        b = self.b
        now = self.clk.ms()
        diag = {"reset": b.reset_cause(), "reconnects": max(0, self.ups - 1),
                "link_err": self.link_err}
        if self.cell is not None:
            diag.update(self.cell.diag())
        if pos is not None:
            diag["pos"] = pos
        if self.bad_cmd:
            diag["bad_cmd"] = self.bad_cmd
        body = proto.status_body(self.dev, state, self.boot, (now - self.t0) // 1000,
                                 b.battery(), b.rssi(), len(self.ob), diag)
        self.t_hb = now
        return self.mq.publish(self.t_status, body, retain=True, keep=True)

    def _pos(self, now):
        """Where a GPS button is while its delivered call is open (until a final stage or the
        cancel window closes): the incident's track, for a holder who is moving."""
        g = self.gps
        if g is None or not self.cfg["track_s"] or self.al.active is None or self.al.stage is None:
            return None
        f = g.fix(now)
        if f is None:
            return None
        w = self.b.wall_ms()
        age = g.age_ms(now)
        return {"lat6": f[0], "lon6": f[1], "acc": f[2],
                "t": w - age if w is not None and age is not None else None}

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

    def _net(self):
        if self.via == "cellular":
            return self.cell.m.data_up()
        return self.b.net_up()

    def _link(self, now):
        mq = self.mq
        if not self._net():
            if mq.sock is not None:
                mq.close("network down")
        elif mq.state == mqtt.CLOSED and now >= self.rc_due:
            self._connect(now)
        mq.service()
        if mq.kind:
            self.link_err = mq.kind
        if self.was_up and mq.state != mqtt.UP:
            self.was_up = False
            br = self._broker()
            err = mq.err
            self.emit("link", state="down", broker="%s:%d" % (br["host"], br["port"]),
                      reason=err)
            mq.err = None
            if err == "suback refused":
                # The broker's ACL refused the ack topic: reconnecting at once cannot help and
                # would resend every alert each time; back off (and try a backup broker).
                self._connect_failed(now, "ack subscription refused")
            else:
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
        # rc_delay is not reset here: a link the broker then refuses (SUBACK) must keep
        # backing off; an ordinary drop after a good link resets it (_link).
        self.emit("link", state="up", broker="%s:%d" % (br["host"], br["port"]))
        self.ups += 1
        # One SUBSCRIBE: acks first (vital), then commands and update chunks.
        self.mq.subscribe((self.t_ack, self.t_cmd, self.t_ota))
        # Drain oldest first, right away: a reconnect is when the backlog matters most.
        for r in self.ob.recs:
            r["_due"] = now
        self._drain(now)
        self._status()

    def _drain(self, now):
        # A few at a time, paced by PUBACKs (mq.can_send): a backlog never floods a slow
        # link. Presses of this boot first, newest first: a new panic goes out before an
        # old backlog. A record whose last copy awaits its PUBACK is the transport's to
        # resend (DUP), not ours.
        mq = self.mq
        if mq.state != mqtt.UP or not mq.can_send():
            return
        due = [r for r in self.ob.recs if now >= r["_due"] and r.get("_pid") not in mq.inflight]
        if not due:
            return
        fresh = [r for r in due if r.get("_tk") is not None]
        fresh.reverse()
        for r in fresh + [r for r in due if r.get("_tk") is None]:
            if not mq.can_send():
                return
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
            if mq.state != mqtt.UP:
                return

    # ---- feedback ----
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
        elif mq.state == mqtt.CLOSED and self._net():
            # Without a network there is nothing to reconnect to: the board's tick (or
            # stdin, on the sim board) wakes the loop when WiFi returns.
            t = min(t, max(0, self.rc_due - now))
        elif mq.state == mqtt.UP:
            for r in self.ob.recs:
                t = min(t, max(0, r["_due"] - now))
        if self.cell is not None:
            t = min(t, self.cell.m.idle_ms(now))
        if self.portal is not None and self.portal.busy():
            t = min(t, 20)     # a page half sent, or a WiFi test under way
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
            if self.cell is not None:
                self.cell.tick(now)
            self._link(now)
            now = self.clk.ms()
            self._drain(now)
            if self.mq.state == mqtt.UP:
                since = now - self.t_hb
                pos = self._pos(now) if since >= self.cfg["track_s"] * 1000 else None
                if pos is not None or since >= self.cfg["heartbeat_s"] * 1000:
                    self._status(pos=pos)
            st = self.ost
            if st["trial"] or st.get("report") or self.ota_dl or "ota" in sys.modules:
                import otastate
                otastate.tick(self, now)
            if self.pend is not None:
                self._pend_tick(now)
            if self.portal is not None:
                self.portal.tick(now)
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
        if self.cell is not None and self.cell.busy() and self.ob.recs and \
                awake < c["sms_after_ms"] + 180000:
            return       # the second path (cellular, then SMS) gets its chance first
        if self.mq.state == mqtt.UP:
            pid = self._status("sleeping")
            end = self.clk.ms() + 2000
            while pid in self.mq.inflight and self.clk.ms() < end:
                self.poller.poll(20)
                self.b.feed()
                self.mq.service()
            self.mq.close()
        if self.cell is not None:
            self.cell.m.off_now()     # the modem would drain the cell through the sleep
        self._forget_crashes()
        self.emit("sleep", awake_ms=self.clk.ms() - self.t0, ms=c["sleep_heartbeat_s"] * 1000)
        self.b.deepsleep(c["sleep_heartbeat_s"] * 1000)
