# pyright: reportOptionalMemberAccess=false, reportOptionalSubscript=false
# (cfg/mq/ob/... are set by startup.py; these methods run only after a successful setup)
# The alert side of the app: a press becomes an alert (journalled before it is sent), an
# ack moves it along, a confirmed cancel withdraws a delivered one, and the LED and buzzer
# say where it stands. A mixin of App (app.py), in a module of its own so that each of
# the two compiles from source on a 96 KB heap; the rules themselves are in alerts.py and
# gesture.py.
import gc
import json

import battery
import gesture
import mqtt
import outbox
import proto

# The names below are for the type checker only: pyright takes any TYPE_CHECKING as
# true, and MicroPython, which has no typing module, never runs the block.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import alerts
    import otadl
    import portal
    import board
    from gps import GPS
    from hmac256 import HMAC
    from monotonic import Mono


class Alerting:
    # The state App and startup.py keep, declared once for the type checker (MicroPython
    # does not evaluate annotations).
    b: "board.Board"
    cfg: "dict | None"
    clk: "Mono"
    t0: int
    mq: "mqtt.Client | None"
    ob: "outbox.Outbox"
    al: "alerts.Alerts"
    gest: "gesture.Gesture"
    gps: "GPS | None"
    mac: "HMAC"
    dev: str
    boot: int
    seq: int
    loc: tuple
    t_alert: str
    t_status: str
    t_ack: str
    t_cmd: str
    t_ota: str
    t_result: str
    ost: dict
    ota_rel: "int | None"
    ota: "otadl.Job | None"
    pend: "list | None"
    portal: "portal.Portal | None"
    setup_why: "str | None"
    locate_until: int
    bad_cmd: int
    led: "str | None"
    buzz: "str | None"
    low_batt: bool
    _t_batt: int
    via: str

    def emit(self, ev, **kw):
        kw["ev"] = ev
        self.b.emit(kw)

    def log(self, msg):
        self.emit("log", msg=msg)

    def result(self, n, op, ok, err=None, **extra):
        """A command's signed result on <dev>/result, QoS 1 (docs/protocol.md "Fleet").
        Returns the packet id (in mq.inflight until the broker has it)."""
        d = {"v": 1, "dev": self.dev, "n": n, "op": op, "ok": ok, "err": err, "fw": proto.FW,
             "slot": self.ost["run"]}
        if op == "ota":
            if "stage" not in extra:
                extra["stage"] = "accepted" if ok else "refused"
            if "rel" not in extra:
                extra["rel"] = self.ota_rel
        d.update(extra)
        return self.mq.publish(self.t_result, proto.sign(self.mac, json.dumps(d).encode()),
                               retain=False, keep=True)

    def _send(self, rec, now):
        raise NotImplementedError     # App's: the link side

    def reset(self, why):
        raise NotImplementedError     # App's

    def _set_led(self, p):
        if p != self.led:
            self.led = p
            self.b.led(p)
            self.emit("led", pattern=p)

    def _set_buzz(self, p):
        if p != "off" and self.cfg is not None and self.cfg["silent"]:
            return      # the silent profile: LED only, nothing a bystander could hear
        if p != self.buzz:
            self.buzz = p
            self.b.buzzer(p)
            self.emit("buzzer", pattern=p)

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

    def _on_msg(self, topic, payload):
        if topic == self.t_ota:
            # Unsigned: the download file is checked against the signed manifest's SHA-256.
            if self.ota is not None and payload is not None:
                self.ota.chunk(payload)
            return
        if topic == self.t_cmd:
            gc.collect()      # compiling remote.py wants a few KB in one piece
            import remote     # for this one command: it unloads itself
            remote.command(self, payload)
            return
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
        self._acked(d, self.via)
        if self.ost["trial"]:
            # A signed ack came back over the new firmware: the chain works, keep it.
            import otastate
            otastate.keep(self)

    def _acked(self, d, via):
        """A verified ack (MQTT on the link `via`, or an SMS: cellular.py)."""
        aid = d["id"]
        st = d["stage"]
        self.emit("ack", id=aid, stage=st, inc=d.get("inc"), via=via)
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
        p = self.pend
        if p is not None and p[0] == "selftest" and p[2] == aid:
            self.pend = None
            self.result(p[1], "selftest", st != "rejected", d.get("reason") if st == "rejected"
                        else None, id=aid, stage=st)
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

    def _update_led(self, now):
        if self.al.expired(now):
            # Nothing more after a long while, acked or not: the LED goes back to normal
            # and the cancel window closes (an unacked alert still retries from the outbox).
            self.gest.set_cancellable(False)
            self._set_buzz("off")
        p = self.al.led(now, self.ob.recs, self.gest.armed is not None,
                        self.mq.state == mqtt.UP, self.low_batt, self.t0)
        if now < self.locate_until and p in ("idle", "offline", "low_battery"):
            p = "locate"      # an alert's own pattern always wins
        if p == "failed" and self.buzz == "sending":
            self._set_buzz("failed")
        self._set_led(p)

    def locate(self, ms):
        """The locate command: LED (and, unless silent, buzzer) pattern for ms."""
        now = self.clk.ms()
        self.locate_until = now + ms
        self.buzz = None      # a second locate plays again
        self._set_buzz("locate")
        self._update_led(now)

    def _pend_tick(self, now):
        # A command whose result waits: a reboot for its result's PUBACK, a selftest for
        # its test alert's ack (_acked).
        p = self.pend
        if p[0] == "reboot":
            if p[2] not in self.mq.inflight or now >= p[3]:
                self.pend = None
                self.reset("command")
        elif now >= p[3]:
            self.pend = None
            self.result(p[1], p[0], False, "timeout")

    def _check_battery(self, now):
        # The board averages its ADC; read it once a second, not on every 20 ms turn.
        if now - self._t_batt >= 1000:
            self._t_batt = now
            self.low_batt = battery.low_flag(self.low_batt, self.b.battery(),
                                             self.cfg["batt_low"])
