# AT driver for a SIMCom A7670 / SIM7600-class LTE Cat-1 modem on a UART (3GPP TS 27.007
# and 27.005 commands): power, SIM, registration, signal, text-mode SMS and a PPP data
# call. A state machine: service() reads what the UART holds, acts on complete lines and
# returns; every command has a deadline, and every failure ends in a named state (never
# an exception), so the app's loop keeps feeding the watchdog whatever the modem does.
# The board gives the UART, the PWRKEY pin and the PPP interface (board.pyi: modem_*).
from micropython import const

# States. The ones after READY are failures the app reports (status `cell_err`).
OFF = "off"
BOOT = "boot"          # PWRKEY pulsed, waiting for the modem to answer AT
INIT = "init"          # echo off, errors numeric, SIM, SMS text mode
REG = "reg"            # waiting for network registration (+CEREG)
READY = "ready"        # registered, command mode
DIAL = "dial"          # data call being set up
DATA = "data"          # CONNECT: the UART belongs to PPP
HANGUP = "hangup"      # back from data to command mode
STOP = "stop"          # powering off
NO_MODEM = "no_modem"  # no answer to AT after power-up
NO_SIM = "no_sim"
SIM_PIN = "sim_pin"    # the SIM wants a PIN and none (or a wrong one) is configured
DENIED = "denied"      # the network refused registration
NO_REG = "no_reg"      # not registered within reg_ms
ERROR = "error"        # a command failed (+CME ERROR) or timed out
FAILED = (NO_MODEM, NO_SIM, SIM_PIN, DENIED, NO_REG, ERROR)

_KEY_MS = const(1000)      # PWRKEY low >= 50 ms (A7670) / 500 ms (SIM7600), < 2.5 s (off)
_BOOT_MS = const(30000)    # the module answers AT within ~15 s of PWRKEY
_CMD_MS = const(5000)
_SMS_MS = const(60000)     # +CMGS waits for the network's answer
_DIAL_MS = const(30000)
_PPP_MS = const(30000)     # CONNECT to an address from PPP
_GUARD_MS = const(1100)    # silence around "+++" (S12 = 1 s)
_POLL_MS = const(2000)     # +CEREG? while searching
_REFRESH_MS = const(30000)  # +CEREG?/+CSQ while idle, for the status
_REDIAL_MS = const(30000)  # after a failed data call (the modem stays up for SMS)
_RETRY_MS = const(30000)   # after a failed modem, before power-cycling it again
_REG = {0: "none", 1: "home", 2: "searching", 3: "denied", 4: "searching", 5: "roaming"}


class Modem:
    def __init__(self, board, clk, apn="internet", pin=None, reg_ms=60000, log=None, boot_ms=_BOOT_MS):
        self.b = board
        self.u = board.modem_uart()
        self.ms = clk           # monotonic ms
        self.apn = apn
        self.pin = pin
        self.reg_ms = reg_ms
        self.boot_ms = boot_ms
        self.log = log or (lambda m: None)
        self.state = OFF
        self.err = None         # last failure: "cme 10", "timeout AT+CPIN?", ...
        self.reg = "none"
        self.csq = 99
        self.want = None        # None: off; "cmd": registered; "data": a PPP link
        self.buf = b""
        self.tag = None         # the command awaiting its final result
        self.until = 0
        self.resp = []
        self.t = 0              # when the current step may go on (waits by returning)
        self.t_reg = 0
        self.until_boot = 0
        self.tries = 0
        self.outbox = []        # (to, text) SMS to send
        self.sent = []          # (text, None | error) results for the app
        self.inbox = []         # (sender, text) received SMS for the app
        self._read = []         # storage indices announced by +CMTI
        self._sms = None
        self.t_dial = 0         # no data call before this (after a failed one)
        self.t_fail = 0
        self.data_err = None    # why the last data call failed, None once one worked

    # ---- what the app asks for ----
    def up(self, data=False):
        self.want = "data" if data else "cmd"
        if self.state in FAILED and self.ms() - self.t_fail >= _RETRY_MS:
            self.state = OFF   # power-cycle and try again (a SIM may have been fitted)
        if self.state == OFF:
            self._power_on()

    def down(self):
        self.want = None

    def sms(self, to, text):
        self.outbox.append((to, text))

    def off_now(self):
        """Before a deep sleep: power off without waiting for the answer."""
        self.b.modem_ppp(False)
        if self.state != OFF:
            self.u.write(b"\rAT+CPOF\r")
        self.state = OFF

    def data_up(self):
        return self.state == DATA and self.b.modem_ppp_up()

    def ok(self):
        """Registered: an SMS can go."""
        return self.state in (READY, DIAL, DATA, HANGUP)

    def idle_ms(self, now):
        """How long the loop may wait before service() has work (it polls the UART)."""
        if self.state == OFF or (self.state in FAILED and self.want is None):
            return 1000
        return 20

    # ---- the state machine ----
    def service(self):
        now = self.ms()
        st = self.state
        if st == OFF or (st in FAILED and self.want is None):
            return
        if st in FAILED:
            return
        if st == DATA:
            if self.b.modem_ppp_up():
                self.data_err = None
            elif now > self.t:
                self.data_err = "ppp"
                self.t_dial = now + _REDIAL_MS
                self._hangup(now)
                return
            if self.want != "data" or self.outbox:
                self._hangup(now)
            return
        self._rx()
        now = self.ms()
        if self.tag is not None:
            if now > self.until:
                if st == BOOT:
                    self.tag = None     # still starting: ask again
                else:
                    self._fail(ERROR, "timeout " + self.tag)
            return
        if now < self.t:
            return
        if st == BOOT:
            if now > self.until_boot:
                self._fail(NO_MODEM, "no answer to AT")
                return
            self.b.modem_pin("pwrkey", 0)
            self._at("AT", 1000)
        elif st == HANGUP:
            if self.tries == 0:
                self.tries = 1
                self.u.write(b"+++")
                self.t = now + _GUARD_MS
            else:
                self._at("ATH")
        elif st == STOP:
            self._at("AT+CPOF", 9000)
        elif self.want is None:
            self.state = STOP
        elif st == REG:
            if now - self.t_reg > self.reg_ms:
                self._fail(NO_REG, "not registered within %d s" % (self.reg_ms // 1000))
            else:
                self._at("AT+CEREG?")
        elif st == READY:
            if self._read:
                self._at("AT+CMGR=%d" % self._read[0])
            elif self.outbox:
                self._sms = self.outbox.pop(0)
                self._at('AT+CMGS="%s"' % self._sms[0], _SMS_MS)
            elif self.want == "data" and now >= self.t_dial:
                self._at('AT+CGDCONT=1,"IP","%s"' % self.apn)
            elif now - self.t_reg >= _REFRESH_MS:
                self.t_reg = now
                self._at("AT+CEREG?")

    def _power_on(self):
        self.b.modem_pin("pwrkey", 1)
        now = self.ms()
        self.state = BOOT
        self.err = None
        self.t = now + _KEY_MS
        self.until_boot = now + self.boot_ms
        self.buf = b""
        self.tag = None
        self.reg = "searching"

    def _hangup(self, now):
        self.b.modem_ppp(False)
        self.state = HANGUP
        self.tries = 0
        self.t = now + _GUARD_MS

    def _fail(self, state, why):
        self.log("modem: " + why)
        self.err = why
        self.tag = None
        self.state = state
        self.t_fail = self.ms()
        if state in (NO_SIM, SIM_PIN, NO_MODEM):
            self.reg = "none"
        elif state == DENIED:
            self.reg = "denied"
        if self._sms is not None:
            self.sent.append((self._sms[1], why))
            self._sms = None
        for to, text in self.outbox:
            self.sent.append((text, why))
        self.outbox = []
        # Powered off: a failed modem must not draw its idle current for nothing. up()
        # tries again from scratch.
        self.b.modem_ppp(False)
        self.b.modem_pin("pwrkey", 0)
        try:
            self.u.write(b"AT+CPOF\r")
        except Exception:  # noqa: BLE001 -- best effort: the module may be gone
            pass

    def _at(self, cmd, ms=_CMD_MS):
        self.tag = cmd
        self.resp = []
        self.until = self.ms() + ms
        self.u.write(cmd.encode() + b"\r")

    def _rx(self):
        n = self.u.any()
        if n:
            d = self.u.read(n)
            if d:
                self.buf += d
        if len(self.buf) > 1024:
            self.buf = self.buf[-512:]    # line noise: keep the tail
        while True:
            if self.tag and self.tag[:7] == "AT+CMGS" and self.buf.lstrip(b"\r\n")[:2] == b"> ":
                self.buf = b""
                text = self._sms[1] if self._sms else ""
                self.u.write(text.encode() + b"\x1a")
                self.tag = "CMGS text"
                self.until = self.ms() + _SMS_MS
                continue
            i = self.buf.find(b"\n")
            if i < 0:
                return
            ln = self.buf[:i].strip()
            self.buf = self.buf[i + 1:]
            if ln:
                self._line(ln)
                if self.state == DATA:
                    return   # what follows CONNECT is PPP's

    def _line(self, ln):
        if ln[:6] == b"+CMTI:":
            try:
                self._read.append(int(ln.rsplit(b",", 1)[1]))
            except (ValueError, IndexError):
                pass
            return
        if ln == b"+CPIN: SIM REMOVED" and self.tag != "AT+CPIN?":
            self._fail(NO_SIM, "SIM removed")
            return
        if self.tag is None:
            return     # RDY, SMS DONE, PB DONE, a late answer: nothing to do
        if ln == b"OK" or ln == b"ERROR" or ln[:11] in (b"+CME ERROR:", b"+CMS ERROR:") or \
                ln[:7] == b"CONNECT" or ln in (b"NO CARRIER", b"BUSY", b"NO DIALTONE", b"NO ANSWER"):
            tag = self.tag
            self.tag = None
            self._final(tag, ln.decode(), self.resp)
            self.resp = []
        elif self.tag == "AT" and ln == b"AT":
            pass      # echo before ATE0
        else:
            self.resp.append(ln)

    def _final(self, tag, res, resp):
        now = self.ms()
        ok = res == "OK"
        st = self.state
        if st == BOOT:
            if ok:
                self.state = INIT
                self._at("ATE0")
            else:
                self.t = now + 1000
            return
        if st == HANGUP:
            self.state = READY if self.want else STOP
            self.t = now
            return
        if st == STOP:
            self.state = OFF
            self.reg = "none"
            self.b.modem_ppp(False)
            return
        if tag == "CMGS text" or tag[:7] == "AT+CMGS":
            sms = self._sms
            self._sms = None
            if sms is not None:
                self.sent.append((sms[1], None if ok else res.lower()))
            return
        if tag[:7] == "AT+CMGR":
            idx = self._read.pop(0)
            if ok and resp and resp[0][:6] == b"+CMGR:":
                q = resp[0].split(b'"')
                sender = q[3].decode() if len(q) > 3 else ""
                self.inbox.append((sender, b"\n".join(resp[1:])))
            self._at("AT+CMGD=%d" % idx)
            return
        if tag[:7] == "AT+CMGD":
            return
        if (tag[:10] == "AT+CGDCONT" or tag == "ATD*99#") and not (ok or res[:7] == "CONNECT"):
            # No data service: the modem stays registered, so SMS still goes.
            self.log("modem: data call: %s: %s" % (tag, res))
            self.data_err = res
            self.state = READY
            self.t_dial = now + _REDIAL_MS
            return
        if res[:11] == "+CME ERROR:" and tag == "AT+CPIN?" and res[11:].strip() == "10":
            self._fail(NO_SIM, "SIM not inserted (+CME ERROR: 10)")
            return
        if not ok and not (tag == "ATD*99#" and res[:7] == "CONNECT"):
            self._fail(ERROR, "%s: %s" % (tag, res))
            return
        if tag == "ATE0":
            self._at("AT+CMEE=1")
        elif tag == "AT+CMEE=1":
            self._at("AT+CPIN?")
        elif tag == "AT+CPIN?":
            r = resp[0] if resp else b""
            if r == b"+CPIN: READY":
                self._at("AT+CMGF=1")
            elif r == b"+CPIN: SIM PIN" and self.pin and self.tries == 0:
                self.tries = 1
                self._at('AT+CPIN="%s"' % self.pin)
            elif r[:10] == b"+CPIN: SIM" and r[10:] in (b" PIN", b" PUK"):
                self._fail(SIM_PIN, "SIM wants " + r[11:].decode())
            else:
                self._fail(NO_SIM, r.decode() or "no SIM status")
        elif tag[:8] == "AT+CPIN=":
            self._at("AT+CPIN?")
        elif tag == "AT+CMGF=1":
            self._at("AT+CNMI=2,1")
        elif tag == "AT+CNMI=2,1":
            self.state = REG
            self.t_reg = now
        elif tag == "AT+CEREG?":
            stat = 0
            for r in resp:
                if r[:7] == b"+CEREG:":
                    try:
                        stat = int(r[7:].split(b",")[1])
                    except (ValueError, IndexError):
                        stat = 0
            self.reg = _REG.get(stat, "searching")
            if self.reg == "denied":
                self._fail(DENIED, "registration denied")
            elif self.reg in ("home", "roaming"):
                self._at("AT+CSQ")
            elif st == READY:
                self.state = REG   # lost the network: wait for it again
                self.t_reg = now
            else:
                self.t = now + _POLL_MS
        elif tag == "AT+CSQ":
            for r in resp:
                if r[:5] == b"+CSQ:":
                    try:
                        self.csq = int(r[5:].split(b",")[0])
                    except ValueError:
                        self.csq = 99
            if st == REG:
                self.state = READY
                self.t_reg = now
        elif tag[:10] == "AT+CGDCONT":
            self.state = DIAL
            self._at("ATD*99#", _DIAL_MS)
        elif tag == "ATD*99#":
            self.state = DATA
            self.buf = b""
            self.t = now + _PPP_MS
            self.b.modem_ppp(True)
