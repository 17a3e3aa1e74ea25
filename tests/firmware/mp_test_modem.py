# firmware/modem.py against the modem emulator (simulator/modem_emu.py), both under
# micropython: the AT dialogue, each fault ending in its named state, SMS both ways
# through the carrier spool, and the data call with the PPP stand-in.
import json  # noqa: I001
import os
import sys
import time
from mp_util import eq, check, done, tmpdir, _here
sys.path.insert(0, _here + "/../../simulator")
import modem
from modem_emu import Emu

NUM = "+6281100000001"
CENTRE = "+6281199990000"


class Board:
    def __init__(self, emu):
        self.e = emu

    def modem_uart(self):
        return self.e

    def modem_pin(self, name, level):
        self.e.pin(name, level)

    def modem_ppp(self, on):
        self.e.ppp(on)

    def modem_ppp_up(self):
        return self.e.ppp_up()


def ms():
    return time.ticks_ms()


def make(name, **faults):
    spool = tmpdir(f"{name}_{ms()}")   # fresh: tmpdir() clears files, not folders
    e = Emu(spool, NUM, faults)
    logs = []
    m = modem.Modem(Board(e), ms, apn="internet", reg_ms=3000, log=logs.append, boot_ms=3000)
    m.logs = logs
    return m, e, spool


def run(m, until, secs=8):
    end = ms() + secs * 1000
    while ms() < end:
        m.service()
        if until():
            break
        time.sleep_ms(5)
    return until()


# Registered: the dialogue in order, signal read.
m, e, spool = make("m_ok")
m.up()
check(run(m, lambda: m.state == modem.READY), "ready: " + m.state + " " + str(m.err))
eq(e.log[0], "AT", "sync first (repeated until the module answers)")
eq([c for c in e.log if c != "AT"][:5], ["ATE0", "AT+CMEE=1", "AT+CPIN?", "AT+CMGF=1", "AT+CNMI=2,1"],
   "init dialogue")
check("AT+CEREG?" in e.log and "AT+CSQ" in e.log, "registration and signal asked")
eq((m.reg, m.csq), ("home", 21), "reg and csq")

# SMS out: the > prompt, the text, Ctrl-Z; the spool gets it as the carrier's format.
m.sms(CENTRE, "PB1 test 1:1 P 1 2 F25 T1 0123456789abcdef")
check(run(m, lambda: m.sent), "sms result")
eq(m.sent.pop(0), ("PB1 test 1:1 P 1 2 F25 T1 0123456789abcdef", None), "sms sent")
files = [n for n in os.listdir(spool + "/mo")]
eq(len(files), 1, "one file in mo/")
check(files[0].endswith(".json"), "renamed from .tmp")
with open(spool + "/mo/" + files[0]) as f:
    d = json.loads(f.read())
eq((d["from"], d["to"], d["text"]), (NUM, CENTRE, "PB1 test 1:1 P 1 2 F25 T1 0123456789abcdef"), "spool fields")
check(isinstance(d["sent_ms"], int), "sent_ms")

# SMS in: a file in mt/<msisdn>/ becomes +CMTI, +CMGR, +CMGD, and is gone.
with open(spool + "/mt/" + NUM + "/a.json", "w") as f:
    f.write(json.dumps({"from": CENTRE, "to": NUM, "text": "PB1A 1:1 received 5 0123456789abcdef",
                        "sent_ms": 1}))
check(run(m, lambda: m.inbox), "sms received")
eq(m.inbox.pop(0), (CENTRE, b"PB1A 1:1 received 5 0123456789abcdef"), "sms text and sender")
check(run(m, lambda: "AT+CMGD=1" in e.log), "deleted from the SIM")
eq(os.listdir(spool + "/mt/" + NUM), [], "delivered file removed")

# Send failure: +CMS ERROR: 500 is reported, the modem stays ready.
e.set_faults({"sms_fail": True})
m.sms(CENTRE, "x")
check(run(m, lambda: m.sent), "failed sms result")
eq(m.sent.pop(0), ("x", "+cms error: 500"), "sms failure named")
eq(m.state, modem.READY, "still ready after an SMS failure")
e.set_faults({"sms_fail": False})

# Data: CGDCONT, ATD*99#, CONNECT, PPP up; then back to command mode for an SMS; off.
m.up(data=True)
check(run(m, m.data_up), "data up: " + m.state)
check('AT+CGDCONT=1,"IP","internet"' in e.log and "ATD*99#" in e.log, "data dialogue")
m.sms(CENTRE, "y")
check(run(m, lambda: m.sent), "sms during data")
eq(m.sent.pop(0), ("y", None), "sms sent after leaving data mode")
check(run(m, m.data_up), "data again after the SMS")
m.down()
check(run(m, lambda: m.state == modem.OFF), "powered off: " + m.state)
eq(e.log[-1], "AT+CPOF", "power off by command")
check(not e.on, "emulator off")

# No data service: the data call fails, the modem stays up and SMS still goes.
m, e, spool = make("m_nodata", data=False)
m.up(data=True)
check(run(m, lambda: m.data_err is not None), "data failure seen")
eq((m.state, m.data_err), (modem.READY, "NO CARRIER"), "ready without data")
m.sms(CENTRE, "z")
check(run(m, lambda: m.sent), "sms without data")
eq(m.sent.pop(0), ("z", None), "sms sent without data")

# Faults, each a named state, never an exception.
for name, faults, state, reg in (("m_nosim", {"sim": "removed"}, modem.NO_SIM, "none"),
                                  ("m_pin", {"sim": "pin"}, modem.SIM_PIN, "none"),
                                  ("m_denied", {"reg": "denied"}, modem.DENIED, "denied"),
                                  ("m_search", {"reg": "searching"}, modem.NO_REG, "searching"),
                                  ("m_slow", {"attach_ms": 6000}, modem.NO_REG, "searching"),
                                  ("m_cme", {"cme": {"AT+CMGF=1": 100}}, modem.ERROR, "searching"),
                                  ("m_dead", {"dead": True}, modem.NO_MODEM, "none")):
    m, e, spool = make(name, **faults)
    m.up()
    check(run(m, lambda m=m: m.state in modem.FAILED), name + ": failed: " + m.state)
    eq((m.state, m.reg), (state, reg), name + ": state and reg")
    check(m.err and m.logs, name + ": reason logged: " + str(m.err))
    m.sms(CENTRE, "never")
    run(m, lambda: False, 0.3)
    eq(os.listdir(spool + "/mo"), [], name + ": no SMS over a dead modem")
eq(m.err, "no answer to AT", "dead modem named")

# Slow attach within reg_ms: registered in the end.
m, e, spool = make("m_slow2", attach_ms=2000)
m.up()
check(run(m, lambda: m.state == modem.READY), "slow attach registers: " + m.state)
check(e.log.count("AT+CEREG?") >= 2, "registration polled while searching")
done()
