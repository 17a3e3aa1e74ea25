# mypy: ignore-errors
# (a MicroPython module: time.ticks_* exist on the unix port, not in CPython)
# A SIMCom A7670-class LTE modem, emulated for the simulator board (firmware/board_sim.py)
# under the MicroPython unix port: the board's modem UART is an object of this module, so
# the firmware's AT driver (firmware/modem.py) talks to it byte for byte as to the real
# module. Nothing here blocks: answers become readable when their time has come, and the
# board polls, exactly as a hardware UART behaves. Not firmware: it never ships to a board.
#
# SMS go through the carrier spool (simulator/carrier.py): an SMS the button sends is
# written to <spool>/mo/<name>.json (as <name>.tmp, then renamed); each file in
# <spool>/mt/<msisdn>/ is a message to this button, delivered as +CMTI then read with
# +CMGR, and deleted once delivered. Each file: {"from", "to", "text", "sent_ms"}.
#
# Faults (a dict, changed at run time by the board's `modem {...}` command):
#   sim        "ready" | "removed" (+CPIN: SIM REMOVED, +CME ERROR: 10) | "pin"
#   reg        "home" | "roaming" | "searching" (never attaches) | "denied"
#   attach_ms  power-on to registered (slow attach)
#   csq        the +CSQ signal value
#   cme        {"AT+CSQ": 100, ...}: that command answers +CME ERROR: <n>
#   sms_fail   true: +CMGS answers +CMS ERROR: 500
#   data       false: the data call fails (ATD*99# -> NO CARRIER)
#   dead       true: no answer at all (no module, or no power)
import json
import os
import time
from time import ticks_add, ticks_diff, ticks_ms

DEFAULT = {"sim": "ready", "reg": "home", "attach_ms": 1500, "csq": 21, "cme": {},
           "sms_fail": False, "data": True, "dead": False}
_BOOT_MS = 300       # PWRKEY to "RDY" (a real module: ~10 s; shortened for tests)
_PPP_MS = 200        # CONNECT to PPP up
_MT_POLL_MS = 300


def _now_ms():
    return time.time_ns() // 1000000


class Emu:
    def __init__(self, spool, msisdn, faults=None):
        self.spool = spool
        self.msisdn = msisdn
        self.f = dict(DEFAULT)
        if faults:
            self.f.update(faults)
        self.on = False
        self.t_on = 0
        self.key_down = None
        self.echo = True
        self.cmgf = 0
        self.inb = b""
        self.out = []          # [due ticks, bytes]
        self.mode = "cmd"      # "cmd" | "prompt" (SMS text after "> ") | "data"
        self.sms_to = None
        self.store = {}        # index -> (from, text)
        self.n = 0
        self.ppp_t = None      # when the PPP stand-in came up (None: down)
        self.t_mt = 0
        self.sent = 0
        self.log = []          # the command lines received (the last 100-200), for tests
        for d in (spool + "/mo", spool + "/mt", spool + "/mt/" + msisdn):
            try:
                os.mkdir(d)
            except OSError:
                pass

    def set_faults(self, d):
        self.f.update(d)

    # ---- pins (the board's modem_pin) ----
    def pin(self, name, level):
        if name != "pwrkey" or self.f["dead"]:
            return
        t = ticks_ms()
        if level:
            self.key_down = t
        elif self.key_down is not None:
            held = ticks_diff(t, self.key_down)
            self.key_down = None
            if not self.on and held >= 50:
                self._power(True)
            elif self.on and held >= 2500:
                self._power(False)

    def _power(self, on):
        self.on = on
        self.out = []
        self.inb = b""
        self.mode = "cmd"
        self.ppp_t = None
        self.echo = True
        if on:
            self.t_on = ticks_ms()
            self._say(b"RDY", _BOOT_MS)
            if self.f["sim"] == "ready":
                self._say(b"+CPIN: READY", _BOOT_MS + 50)
                self._say(b"SMS DONE", _BOOT_MS + 100)
            elif self.f["sim"] == "removed":
                self._say(b"+CPIN: SIM REMOVED", _BOOT_MS + 50)

    # ---- the UART, as the board sees it ----
    def write(self, b):
        if not self.on:
            return len(b)
        if self.mode == "data":
            if b"+++" in b:
                self.mode = "cmd"
                self.ppp_t = None
                self._say(b"OK", 1000)
            return len(b)
        self.inb += b
        while True:
            if self.mode == "prompt":
                i = self.inb.find(b"\x1a")
                if i < 0:
                    return len(b)
                text = self.inb[:i].decode()
                self.inb = self.inb[i + 1:]
                self.mode = "cmd"
                self._send_sms(text)
                continue
            i = self.inb.find(b"\r")
            if i < 0:
                return len(b)
            ln = self.inb[:i].strip()
            self.inb = self.inb[i + 1:]
            if ln:
                self._cmd(ln.decode())

    def any(self):
        self._poll_mt()
        t = ticks_ms()
        n = 0
        for due, b in self.out:
            if ticks_diff(t, due) < 0:
                break
            n += len(b)
        return n

    def read(self, n=-1):
        t = ticks_ms()
        got = b""
        while self.out and ticks_diff(t, self.out[0][0]) >= 0 and (n < 0 or len(got) < n):
            got += self.out.pop(0)[1]
        return got or None

    # ---- the PPP stand-in (the board's modem_ppp) ----
    def ppp(self, on):
        if on and self.mode == "data" and self.f["data"]:
            self.ppp_t = ticks_add(ticks_ms(), _PPP_MS)
        elif not on and self.mode == "data":
            # LCP terminate: the module hangs up and is back in command mode.
            self.mode = "cmd"
            self.ppp_t = None
            self._say(b"NO CARRIER", 50)

    def ppp_up(self):
        return self.on and self.mode == "data" and self.ppp_t is not None and \
            ticks_diff(ticks_ms(), self.ppp_t) >= 0 and self.f["data"]

    # ---- inside the module ----
    def _say(self, b, after=20, raw=False):
        due = ticks_add(ticks_ms(), after)
        if self.out and ticks_diff(due, self.out[-1][0]) < 0:
            due = self.out[-1][0]   # a UART keeps its order
        self.out.append([due, b if raw else b"\r\n" + b + b"\r\n"])

    def _registered(self):
        return self.f["sim"] == "ready" and self.f["reg"] in ("home", "roaming") and \
            ticks_diff(ticks_ms(), self.t_on) >= self.f["attach_ms"]

    def _cmd(self, c):
        self.log.append(c)
        if len(self.log) > 200:
            del self.log[:100]    # bounded: a search without coverage polls for hours
        if self.echo:
            self._say(c.encode() + b"\r", 5, raw=True)
        if ticks_diff(ticks_ms(), self.t_on) < _BOOT_MS:
            return           # still booting: the command is lost, as on the module
        u = c.upper()
        code = self.f["cme"].get(c)
        if code is not None:
            self._say(b"+CME ERROR: %d" % code)
            return
        sim = self.f["sim"]
        if u == "AT" or u == "ATH" or u == "AT+CMEE=1" or u == "AT+CNMI=2,1":
            self._say(b"OK")
        elif u == "ATE0":
            self.echo = False
            self._say(b"OK")
        elif u == "AT+CPIN?":
            if sim == "ready":
                self._say(b"+CPIN: READY\r\n\r\nOK")
            elif sim == "pin":
                self._say(b"+CPIN: SIM PIN\r\n\r\nOK")
            else:
                self._say(b"+CME ERROR: 10")
        elif u.startswith("AT+CPIN="):
            self._say(b"+CME ERROR: 16")      # incorrect password
        elif sim != "ready" and u != "AT+CPOF":
            self._say(b"+CME ERROR: 10")
        elif u == "AT+CMGF=1":
            self.cmgf = 1
            self._say(b"OK")
        elif u == "AT+CEREG?":
            reg = self.f["reg"]
            stat = {"home": 1, "roaming": 5, "denied": 3}.get(reg, 2)
            if stat in (1, 5) and not self._registered():
                stat = 2
            self._say(b"+CEREG: 0,%d\r\n\r\nOK" % stat)
        elif u == "AT+CSQ":
            self._say(b"+CSQ: %d,99\r\n\r\nOK" % (self.f["csq"] if self._registered() else 99))
        elif u.startswith("AT+CGDCONT="):
            self._say(b"OK")
        elif u == "ATD*99#":
            if self._registered() and self.f["data"]:
                self.mode = "data"
                self._say(b"CONNECT 115200", 300)
            else:
                self._say(b"NO CARRIER", 1000)
        elif u.startswith("AT+CMGS="):
            if self.cmgf != 1:
                self._say(b"+CMS ERROR: 302")
                return
            self.sms_to = c.split('"')[1] if '"' in c else c[8:]
            self.mode = "prompt"
            self._say(b"\r\n> ", 20, raw=True)
        elif u.startswith("AT+CMGR="):
            m = self.store.get(int(u[8:]))
            if m is None:
                self._say(b"+CMS ERROR: 321")
            else:
                self._say(b'+CMGR: "REC UNREAD","%s","","24/11/28,12:00:00+28"\r\n%s\r\n\r\nOK'
                          % (m[0].encode(), m[1].encode()))
        elif u.startswith("AT+CMGD="):
            self.store.pop(int(u[8:]), None)
            self._say(b"OK")
        elif u == "AT+CPOF":
            self._say(b"OK")
            self.on = False    # what is already said still reaches the UART
        else:
            self._say(b"ERROR")

    def _send_sms(self, text):
        if self.f["sms_fail"] or not self._registered():
            self._say(b"+CMS ERROR: 500", 500)
            return
        self.sent += 1
        name = f"{self.msisdn.lstrip('+')}-{_now_ms()}-{self.sent}"
        base = self.spool + "/mo/" + name
        with open(base + ".tmp", "w") as f:
            f.write(json.dumps({"from": self.msisdn, "to": self.sms_to, "text": text,
                                "sent_ms": _now_ms()}))
        os.rename(base + ".tmp", base + ".json")
        self._say(b"+CMGS: %d\r\n\r\nOK" % self.sent, 500)

    def _poll_mt(self):
        t = ticks_ms()
        if not self.on or self.mode != "cmd" or not self._registered() or \
                ticks_diff(t, self.t_mt) < _MT_POLL_MS:
            return
        self.t_mt = t
        d = self.spool + "/mt/" + self.msisdn
        try:
            names = sorted(n for n in os.listdir(d) if n.endswith(".json"))
        except OSError:
            return
        for n in names:
            try:
                with open(d + "/" + n) as f:
                    m = json.loads(f.read())
                os.remove(d + "/" + n)
            except (OSError, ValueError):
                continue
            i = 1
            while i in self.store:
                i += 1
            self.store[i] = (str(m.get("from", "")), str(m.get("text", "")))
            self._say(b'+CMTI: "SM",%d' % i)
