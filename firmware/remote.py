# Signed remote commands (docs/firmware.md "Remote commands", docs/protocol.md "Fleet"):
# check a command from <dev>/cmd, refuse a replay, run it, answer on <dev>/result.
# Loaded for one command and dropped again (commands are rare, the heap is not big);
# the state that outlives a command is on the app (pend, locate_until) or in flash (cmdseq).
import gc
import json
import os
import sys

import proto
from cfgset import SETTABLE, check as check_settable
OPS = ("locate", "selftest", "set", "reboot", "ota", "keep")
MAX_CMD = 1180          # protocol/fleet.py MAX_COMMAND: fits mqtt.MAX_IN beside the topic
_N_MAX = 9007199254740992
LOCATE_MS = 30000
SELFTEST_MS = 60000     # the test alert's "received" ack, or the result says "timeout"
REBOOT_MS = 5000        # the result's PUBACK, at most this long, before the reset
# Applied to the running app at once; any other settable key (wifi) at the next boot.
_LIVE = ("heartbeat_s", "trigger", "long_press_ms", "silent", "track_s", "battery_min_ota")


def check(mac, dev, payload):
    """(None, cmd) or (reason, None), reasons as protocol/fleet.py parse_command: size,
    format, mac, json, version, dev, field, op. Never raises: hostile until checked."""
    why, body = proto.signed_body(mac, payload, MAX_CMD)
    if body is None:
        return why, None
    try:
        d = json.loads(body)
    except Exception:  # noqa: BLE001
        return "json", None
    if not isinstance(d, dict) or type(d.get("v")) is not int or d["v"] != 1:
        return "version", None
    if d.get("dev") != dev:
        return "dev", None
    n = d.get("n")
    if type(n) is not int or not 1 <= n <= _N_MAX or not isinstance(d.get("args", {}), dict):
        return "field", None
    if d.get("op") not in OPS:
        return "op", None
    return None, d


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def last_n(flash):
    """The highest command number executed; 0 before the first. The temp copy counts when
    a power cut fell between removing the old file and renaming the new (FAT)."""
    best = 0
    for p in ("/cmdseq", "/cmdseq.tmp"):
        s = _read(flash + p)
        try:
            best = max(best, int(s)) if s else best
        except ValueError:
            pass
    return best


def _write(p, data):
    # config.write_atomic's way (a temp file renamed over; config.load and last_n read the
    # temp copy of a save cut between remove and rename), without config.py's 17 KB.
    with open(p + ".tmp", "w") as f:
        f.write(data)
    try:
        os.rename(p + ".tmp", p)
    except OSError:
        os.remove(p)
        os.rename(p + ".tmp", p)


def save_n(flash, n):
    _write(flash + "/cmdseq", "%d" % n)


def command(app, payload):
    try:
        _command(app, payload)
    finally:
        sys.modules.pop("cfgset", None)
        sys.modules.pop("remote", None)


def _command(app, payload):
    why, d = check(app.mac, app.dev, payload)
    if d is None:
        app.bad_cmd += 1
        app.emit("bad_cmd", reason=why, count=app.bad_cmd)
        if why == "dev":
            _answer_dev(app, payload)
        # Anything else is not answered: a forged or garbled command gets no oracle.
        return
    n = d["n"]
    op = d["op"]
    if n <= last_n(app.b.flash):
        app.bad_cmd += 1
        app.emit("bad_cmd", reason="replay", n=n, count=app.bad_cmd)
        app.result(n, op, False, "replay")
        return
    # Before it runs: a crash or reset halfway must not let the broker's redelivery run it twice.
    save_n(app.b.flash, n)
    app.emit("cmd", n=n, op=op, by=d.get("by"))
    try:
        _run(app, n, op, d.get("args") or {})
    except Exception as e:  # noqa: BLE001 -- a command must never take the button down
        gc.collect()
        app.log("command %d (%s) failed: %s" % (n, op, e))
        app.result(n, op, False, "memory" if isinstance(e, MemoryError) else "error")


def _answer_dev(app, payload):
    # Signed with this button's own secret, so by the gateway, but for another device (a
    # gateway fault): answered, as the gateway's own mistake is no forger's oracle; not run.
    d = json.loads(payload[:payload.rfind(b"\n")])
    n = d.get("n")
    if type(n) is int and 1 <= n <= _N_MAX and d.get("op") in OPS:
        app.result(n, d["op"], False, "dev")


def _run(app, n, op, args):
    if op == "locate":
        app.locate(LOCATE_MS)
        app.result(n, op, True)
    elif op == "selftest":
        aid = app.trigger("test")
        if aid is None:
            app.result(n, op, False, "config")
        else:
            app.pend = ["selftest", n, aid, app.clk.ms() + SELFTEST_MS]
    elif op == "set":
        err, extra = _set(app, args)
        app.result(n, op, err is None, err, **extra)
    elif op == "reboot":
        pid = app.result(n, op, True)
        app.pend = ["reboot", n, pid, app.clk.ms() + REBOOT_MS]
    elif op == "keep":
        st = app.ost
        if st["trial"] and args.get("rel") == st["seq"]:
            import otastate
            otastate.keep(app)     # the ota command's "kept" result follows from the state
            app.result(n, op, True)
        else:
            app.result(n, op, False, "not_trial")
    else:
        _ota(app, n, args)


def _ota(app, n, args):
    try:
        import ota
    except ImportError:
        app.result(n, "ota", False, "unsupported")
        return
    err = ota.start(app, n, args)
    app.result(n, "ota", err is None, err)


def _set(app, args):
    """(None, extra) when written, else (reason, extra). All keys or none."""
    for k in args:
        if k not in SETTABLE:
            # Broker hosts, secrets, pins, release keys: only whoever holds the device.
            return "key", {"key": k[:32]}
    path = app.b.flash + "/config.json"
    try:
        with open(path) as f:
            raw = f.read()
        new = json.loads(raw)
    except Exception:  # noqa: BLE001 -- the running config came from it, so: only a torn flash
        return "config", {}
    for k in args:
        new[k] = args[k]
    # Judged in the running config (every default filled in), put back unless it passes;
    # no copy of it: the heap is short, the loop single-threaded.
    c = app.cfg
    old = {}
    for k in args:
        old[k] = c[k]
        c[k] = args[k]
    msg = check_settable(c)
    if not msg:
        try:
            _write(path, json.dumps(new))
        except Exception:  # noqa: BLE001 -- undone below; the flash keeps the old file
            msg = "config.json not written"
    reboot = False
    for k in args:
        if msg or k not in _LIVE:
            c[k] = old[k]       # refused, or applied at the next boot
            reboot = not msg
    if msg:
        return "value", {"msg": msg[:80]}
    g = app.gest
    g.mode = c["trigger"]
    g.long_ms = c["long_press_ms"]
    if c["silent"]:
        app.b.buzzer("off")
        app.buzz = "off"
    app.emit("config_set", keys=sorted(args), reboot=reboot)
    return None, {"reboot": True} if reboot else {}
