# pyright: reportOptionalMemberAccess=false, reportOptionalSubscript=false
# The second path (docs/protocol.md "Paths", docs/firmware.md "Cellular"): WiFi first; when
# WiFi is down, or no `received` came within cell_after_ms of a press, the modem comes up
# and the same MQTT client sends the same alerts over cellular data ("via": "cellular");
# when no data path delivered within sms_after_ms, one signed SMS per alert goes to sms_to
# and a verified PB1A ack counts as one over MQTT. The modem is off otherwise, and the
# cellular path is proven by itself every cell_test_h hours (a status published over it,
# its PUBACK the proof). Loaded only when a modem is configured: RAM is scarce.
import modem
import mqtt

_LINGER_MS = 20000      # on cellular after the last alert left: later stages still arrive
_TEST_MS = 180000       # a supervised test not proven by then failed
_SMS_RETRY_MS = 30000   # after a failed send (+CMS ERROR)


def _load(path):
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def _digits(n):
    return "".join(c for c in (n or "") if "0" <= c <= "9")


class Cellular:
    def __init__(self, app):
        c = app.cfg
        mc = c["modem"]
        self.a = app
        self.m = modem.Modem(app.b, app.clk.ms, mc["apn"], mc["pin"], mc["reg_s"] * 1000, app.log)
        self.cell_after = c["cell_after_ms"]
        self.sms_after = c["sms_after_ms"]
        self.sms_retry = c["sms_retry_ms"]
        self.sms_to = c["sms_to"]
        self.every = c["cell_test_h"] * 3600000
        self.path = app.b.flash + "/celltest"
        self.tested = _load(self.path)   # unix s of the last proven test
        now = app.clk.ms()
        self.test_due = None
        if self.every:
            w = app.b.wall_ms()
            left = 0 if self.tested is None or w is None else self.tested * 1000 + self.every - w
            # Due at once on a new or long-unproven button: a dead SIM is found at install.
            self.test_due = now + max(0, min(left, self.every))
        self.testing = None     # None; 0 waiting for the cellular link; else the status pid
        self.t_test = 0
        self.t_idle = None
        self.bad_sms = 0
        self.reg = "none"
        self.csq = 99

    def busy(self):
        """The modem has work: a deep sleep now would cut an alert's second path short."""
        return self.m.want is not None

    def diag(self):
        d: dict = {"cell": {"reg": self.reg, "csq": self.csq, "test": self.tested}}
        if self.m.state in modem.FAILED:
            d["cell_err"] = self.m.state
        return d

    def tick(self, now):
        a = self.a
        m = self.m
        wifi = a.b.net_up()
        late = False
        sms_due = []
        sms_wait = False
        for r in a.ob.recs:
            t1 = r.get("_tk")
            if t1 is None:
                t1 = r.get("_t1")
                if t1 is None:
                    r["_t1"] = t1 = now     # from an earlier boot: counted from this one
            if not wifi or now - t1 >= self.cell_after:
                late = True
            s = r.get("_sms")       # the SMS text once sent, "-" when none can be
            sent = r.get("_sms_ok")
            if s and sent is not None and now - sent >= self.sms_retry << min(r["_sms_n"] - 1, 3):
                # No ack came back (an SMS either way can be lost): the same SMS again; the
                # gateway answers a repeat with the incident's stage.
                r["_sms"] = s = r["_sms_ok"] = None
            if s:
                sms_wait = sms_wait or s != "-"
            elif self.sms_to and r["kind"] != "cancel" and now - t1 >= self.sms_after and \
                    now >= r.get("_sms_t", 0):
                sms_due.append(r)
        if self.testing is None and self.test_due is not None and now >= self.test_due:
            self.testing = 0
            self.t_test = now
            a.emit("cell_test", state="start")
        # Once an SMS is the path in play the modem stays in command mode, where the ack
        # SMS can be read; WiFi, if it returns, still delivers meanwhile.
        data = (late or self.testing is not None) and not sms_wait and not sms_due
        if data or sms_due or sms_wait:
            self.t_idle = None
            m.up(data)
        elif self.t_idle is None:
            self.t_idle = now
        if self.t_idle is not None and (a.via == "wifi" or now - self.t_idle >= _LINGER_MS):
            m.down()
        m.service()
        if m.ok():
            self.reg, self.csq = m.reg, m.csq
            for r in sms_due:
                text = self._text(r, now)
                r["_sms"] = text or "-"
                if text:
                    m.sms(self.sms_to, text)
        elif m.state in modem.FAILED:
            self.reg, self.csq = m.reg, 99
            for r in sms_due:
                if not r.get("_skip"):
                    r["_skip"] = 1    # said once: the SMS waits for a working modem
                    a.emit("sms_held", id=r["id"], modem=m.state, err=m.err)
        self._results(now)
        self._path(now)
        self._test(now)

    def _text(self, r, now):
        import sms      # only once an SMS is due: 2 KB of heap the data path does not need
        a = self.a
        gps = "lat6" in r
        lat6, lon6, acc = (r["lat6"], r["lon6"], r["acc"]) if gps else a.loc
        t = r["t"]
        return sms.alert_text(a.mac, a.dev, r["boot"], r["seq"], r["kind"], lat6, lon6,
                              "gps" if gps else "fixed", acc, t // 1000 if t is not None else None,
                              a._age(r, now) // 1000)

    def _results(self, now):
        a = self.a
        m = self.m
        while m.sent:
            text, err = m.sent.pop(0)
            for r in a.ob.recs:
                if r.get("_sms") == text:
                    if err:
                        r["_sms"] = None
                        r["_sms_t"] = now + _SMS_RETRY_MS
                    else:
                        r["_sms_ok"] = now
                        r["_sms_n"] = r.get("_sms_n", 0) + 1
                    a.emit("sms", id=r["id"], ok=err is None, err=err)
        while m.inbox:
            sender, text = m.inbox.pop(0)
            if _digits(sender) != _digits(self.sms_to):
                why, d = "number", None
            else:
                import sms
                why, d = sms.verify_ack(a.mac, text)
            if why:
                self.bad_sms += 1
                a.emit("bad_ack", reason=why, via="sms", n=self.bad_sms)
                continue
            a._acked({"id": "%s:%d:%d" % (a.dev, d["boot"], d["seq"]), "stage": d["stage"],
                      "reason": d["reason"], "now": d["now"]}, "sms")

    def _path(self, now):
        a = self.a
        up = self.m.data_up()
        if a.via == "wifi" and up and self.m.want == "data":
            self._switch("cellular", now)
        elif a.via == "cellular" and not up:
            self._switch("wifi", now)

    def _switch(self, via, now):
        a = self.a
        a.via = via
        if a.mq.sock is not None:
            a.mq.close()
        a.bi = 0
        a.rc_delay = a.cfg["reconnect_min_ms"]
        a.rc_due = now
        if self.testing:
            self.testing = 0      # a PUBACK over the other link proves nothing
        a.emit("path", via=via)

    def _test(self, now):
        if self.testing is None:
            return
        a = self.a
        m = self.m
        if a.via == "cellular" and a.mq.state == mqtt.UP:
            if self.testing == 0:
                self.testing = a._status()
            elif self.testing not in a.mq.inflight:
                w = a.b.wall_ms()
                self.tested = w // 1000 if w is not None else self.tested
                try:
                    with open(self.path, "w") as f:
                        f.write(str(self.tested))
                except OSError:
                    pass
                self._tested(now, True, None)
            return
        if m.state in modem.FAILED or now - self.t_test > _TEST_MS:
            self._tested(now, False, m.err or m.state)

    def _tested(self, now, ok, err):
        a = self.a
        self.testing = None
        self.test_due = now + self.every
        a.emit("cell_test", ok=ok, err=err, reg=self.reg, csq=self.csq)
        # The next status (at once) carries the result.
        a.t_hb = now - a.cfg["heartbeat_s"] * 1000
