# The update state in flash, ota/state.json (docs/firmware.md "Over-the-air updates"), and
# the app's side of an update that is not a download: the trial of a new slot (kept on a
# verified ack, rolled back after ota_trial_s without one) and the result still owed to the
# gateway. Small, so the app can carry it; the download itself is ota.py, loaded only while
# one runs. main.py reads and rolls back the same file with its own few lines: the loader
# runs before any module that an update can replace may be imported.
import gc
import json
import os
import sys

import mqtt

_NONE = {"run": "factory", "seq": 0, "trial": False}


def read(fl):
    d = fl + "/ota/"
    # state.json, or the temp copy when a power cut fell between removing the old file and
    # renaming the new one (FAT cannot rename over a file).
    for name in ("state.json", "state.tmp"):
        try:
            with open(d + name) as f:
                st = json.load(f)
            if isinstance(st, dict) and st.get("run") in ("factory", "a", "b"):
                return st
        except Exception:  # noqa: BLE001 -- missing or torn: try the other, else factory
            pass
    return dict(_NONE)


def mkdir(p):
    try:
        os.mkdir(p)
    except OSError:
        pass


def write(fl, st):
    d = fl + "/ota/"
    mkdir(d[:-1])
    with open(d + "state.tmp", "w") as f:
        f.write(json.dumps(st))
    try:
        os.remove(d + "state.json")
    except OSError:
        pass
    os.rename(d + "state.tmp", d + "state.json")


def remove(p):
    try:
        os.remove(p)
    except OSError:
        pass


def back(st, why):
    """The state after rolling `st` (a slot on trial) back to the one before it."""
    return {"run": st.get("prev") or "factory", "prev": st["run"], "seq": st.get("pseq", 0),
            "fw": st.get("pfw"), "trial": False, "n": st.get("n"),
            "report": {"stage": "rolled_back", "err": why, "rel": st.get("seq")}}


def keep(app):
    st = app.ost
    fl = app.b.flash
    keys = fl + "/ota/" + st["run"] + "/release_keys.json"
    try:
        with open(keys) as f:
            new = f.read()
        json.loads(new)     # a rotated key set, signed with the release: now the trusted one
        with open(fl + "/release_keys.tmp", "w") as f:
            f.write(new)
        remove(fl + "/release_keys.json")
        os.rename(fl + "/release_keys.tmp", fl + "/release_keys.json")
    except OSError:
        pass
    st["trial"] = False
    st["report"] = {"stage": "kept", "err": None, "rel": st["seq"]}
    write(fl, st)
    remove(fl + "/ota/boots")
    app.emit("ota", stage="kept", rel=st["seq"], slot=st["run"])


def rollback(app, why):
    st = back(app.ost, why)
    write(app.b.flash, st)
    remove(app.b.flash + "/ota/boots")
    app.emit("ota", stage="rolled_back", err=why, rel=st["report"]["rel"])
    app.reset("rollback")


def drop(app):
    """Unload the downloader: its RAM goes back to the alerts."""
    if app.ota is not None:
        app.ota.close()
    app.ota = None
    for m in ("otadl", "ota", "rsa"):
        sys.modules.pop(m, None)


def tick(app, now):
    """Every loop turn while an update is under way (main loop, app.py)."""
    st = app.ost
    mq = app.mq
    up = mq.state == mqtt.UP
    if st["trial"]:
        if now - app.t0 >= app.cfg["ota_trial_s"] * 1000:
            rollback(app, "no_ack")
            return
        said = app.ota_said
        if up and mq.can_send() and (said is None or now - said >= 6 * app.cfg["ota_chunk_ms"]):
            # Running on trial: say so, and again until kept. The gateway answers with a
            # signed `keep` (remote.py), which keeps it, as a verified ack of a press would;
            # no drill incident is made for it, so a rollout puts nothing in the police
            # queue. Said once, it is lost when no gateway is subscribed at that moment (a
            # broker restart): the keep never comes and the trial rolls back.
            app.ota_said = now
            app.result(st.get("n"), "ota", True, None, stage="trial", rel=st["seq"])
            if said is None:
                app.emit("ota", stage="trial", rel=st["seq"], slot=st["run"])
    r = st.get("report")
    if r and up:
        if app.ota_rpid is None:
            if mq.can_send():
                app.ota_rpid = app.result(st.get("n"), "ota", r["stage"] == "kept", r["err"],
                                          stage=r["stage"], rel=r["rel"])
        elif app.ota_rpid not in mq.inflight:
            # The broker has it (PUBACK): owed no more, also after a reboot.
            st["report"] = None
            app.ota_rpid = None
            write(app.b.flash, st)
    if not app.ota_dl:
        if "ota" in sys.modules or "otadl" in sys.modules:
            drop(app)
        return
    if app.ob.recs:
        # Alerts first: a press pauses the download (resumed from the file's size).
        if app.ota is not None:
            drop(app)
        return
    if not up:
        return
    if app.ota is None:
        gc.collect()      # the downloader's code wants its KB in one piece
        import otadl
        app.ota = otadl.Job(app)
        sys.modules.pop("ota", None)     # the command's checks are done
    app.ota.step(now)
