# Over-the-air update, the `ota` command (remote.py): check the signed manifest against the
# trusted release keys and start (or resume) the download that otadl.py then runs. Loaded
# for the command (and by otadl.py) and unloaded with it (otastate.drop): the heap is
# small and a command arrives while the app and remote.py are in it.
import json
import os
import sys
from binascii import a2b_base64
from hashlib import sha256

import otastate

_SLOT_MAX = 768 * 1024          # protocol/release.py MAX_BUNDLE


def _keys(fl):
    try:
        with open(fl + "/release_keys.json") as f:
            k = json.load(f)
        return k if isinstance(k, dict) else {}
    except Exception:  # noqa: BLE001 -- no trusted keys: nothing installs
        return {}


def _manifest(txt):
    try:
        m = json.loads(txt)
    except Exception:  # noqa: BLE001
        return None
    if not isinstance(m, dict) or m.get("v") != 1:
        return None
    for k, t in (("fw", str), ("seq", int), ("size", int), ("sha256", str), ("key", str)):
        if not isinstance(m.get(k), t) or isinstance(m.get(k), bool):
            return None
    if len(m["sha256"]) != 64 or m["size"] < 4 or m["seq"] < 1:
        return None
    return m


def _free(fl):
    try:
        s = os.statvfs(fl)
        return s[0] * s[4]
    except (OSError, AttributeError):
        return _SLOT_MAX * 4


def start(app, n, args):
    """The `ota` command (remote.py): None when accepted (downloading, or resuming the same
    release), else the refusal reason for the result."""
    app.ota_rel = None
    txt = args.get("m") if isinstance(args, dict) else None
    sig = args.get("sig") if isinstance(args, dict) else None
    if not isinstance(txt, str) or not isinstance(sig, str):
        return "field"
    m = _manifest(txt)
    if m is None:
        return "field"
    app.ota_rel = m["seq"]
    fl = app.b.flash
    mod = _keys(fl).get(m["key"])
    if not isinstance(mod, str):
        return "key"
    try:
        s = a2b_base64(sig)
    except ValueError:
        return "sig"
    app.b.feed()
    import rsa
    ok = rsa.verify(sha256(txt.encode()).digest(), s, mod)
    del sys.modules["rsa"]
    app.b.feed()
    if not ok:
        return "sig"
    if m["seq"] <= app.ost.get("seq", 0):
        return "old"
    if app.ob.recs:
        return "busy_alert"
    batt = app.b.battery()
    if batt is not None and batt < app.cfg["battery_min_ota"]:
        return "battery"
    d = fl + "/ota/"
    cur = None
    try:
        with open(d + "dl.json") as f:
            cur = json.load(f)
    except Exception:  # noqa: BLE001
        pass
    if cur is not None and cur.get("m") == txt:
        app.ota_dl = True
        return None              # the same release again: the download resumes
    if m["size"] > _SLOT_MAX or m["size"] * 2 > _free(fl):
        return "size"            # the download file and the unpacked slot, side by side
    if app.ota is not None:
        otastate.drop(app)
    otastate.mkdir(d[:-1])
    otastate.remove(d + "dl.bin")
    run = app.ost.get("run", "factory")
    with open(d + "dl.tmp", "w") as f:
        f.write(json.dumps({"n": n, "m": txt, "slot": "b" if run == "a" else "a", "tries": 0}))
    otastate.remove(d + "dl.json")
    os.rename(d + "dl.tmp", d + "dl.json")
    app.ota_dl = True
    app.emit("ota", stage="accepted", rel=m["seq"], size=m["size"])
    return None
