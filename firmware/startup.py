# Boot of the app, run once: config, the long-lived objects, the outbox carried over from
# the last life, the board's pins and radio. A module of its own so that its code is
# unloaded after boot (app.py drops it), and app.py stays small enough to compile from
# source on a 96 KB heap.
import gc

import alerts
import gesture
import mqtt
import outbox
import proto
from hmac256 import HMAC


def _setup_mode(app):
    # Setup mode (docs/firmware.md): asked for by hand (safemode.py leaves the flag file
    # `setup` after the gesture) or nothing to connect to yet (no WiFi configured). Never
    # because stored networks fail: those are retried for ever, as a router after a power
    # cut comes back later than the button.
    why = None
    app.setup_why = None
    try:
        import os
        os.remove(app.b.flash + "/setup")    # one-shot: a power cut in setup mode ends it
        why = "button"
    except OSError:
        if not app.cfg["wifi"] and app.b.joins_wifi:
            why = "no_wifi"
    app.setup_why = why      # app.py loads portal.py once this module is gone


def setup(app):
    """Returns True with a valid config, else False (config_error shown)."""
    b = app.b
    c, err = app.loaded
    app.loaded = None
    if c is None:
        app.ob = outbox.Outbox(b.flash, 32, app.log)
        app.boot = outbox.next_boot(b.flash, app.ob.max_boot)
        app.emit("boot", dev=None, boot=app.boot, fw=proto.FW, outbox=len(app.ob))
        app.emit("config_error", msg=err)
        app._set_led("config_error")
        app._set_buzz("config_error")
        b.register(app.poller)
        return False
    # Long-lived buffers first, while the heap is still unfragmented.
    app.mq = mqtt.Client(c["dev"], c["mqtt_user"], c["mqtt_password"], c["keepalive_s"],
                         c["topic_root"] + "/" + c["dev"] + "/status",
                         proto.will_body(c["dev"]), app._on_msg, app._on_up, app.log)
    app.ob = outbox.Outbox(b.flash, c["outbox_max"], app.log)
    gc.collect()
    app.boot = outbox.next_boot(b.flash, max(app.ob.max_boot, c["boot_floor"]))
    app.seq = 0
    app.emit("boot", dev=c["dev"], boot=app.boot, fw=proto.FW, outbox=len(app.ob))
    app.cfg = c
    app.dev = c["dev"]
    app.mac = HMAC(c["secret"])
    root = c["topic_root"] + "/" + app.dev
    app.t_alert = root + "/alert"
    app.t_status = root + "/status"
    app.t_ack = root + "/ack"
    app.t_cmd = root + "/cmd"          # signed commands (remote.py)
    app.t_ota = root + "/ota"          # update chunks (ota.py)
    app.t_result = root + "/result"    # command results and chunk requests
    app.al = alerts.Alerts(c["cancel_window_s"] * 1000, c["fail_ms"])
    app.gest = gesture.Gesture(c["trigger"], c["long_press_ms"], c["triple_window_ms"],
                                c["cancel_hold_ms"], c["cancel_confirm_ms"])
    if c["gps"]:
        app.gps_on()
    app.loc = (c["lat6"], c["lon6"], c["acc"])
    app.mq.attach(app.poller)
    app.mq.response_ms = c.get("response_ms") or 10000
    app.ups = 0                      # link ups this boot (reconnects = ups - 1)
    app.link_err = None              # kind of the last link failure (mqtt.ERR_*)
    app.bi = 0                       # broker index: primary, then backups
    app.rc_delay = c["reconnect_min_ms"]
    now = app.clk.ms()
    app.rc_due = now
    app.t_hb = now
    app.was_up = False
    last = None
    for r in app.ob.recs:
        # Alerts from before this boot: sent again at once, oldest first.
        r["_n"] = 0
        r["_due"] = now
        last = r["ref"] if r["kind"] == "cancel" else r["id"]
    if last is not None:
        # Shown as in progress, but not cancellable: nothing says the police got it
        # until an ack arrives in this boot.
        app.al.raised(last, now)
    b.setup(app)
    b.register(app.poller)
    _setup_mode(app)
    if app.boot_hold_ms:
        # Held while the board powered up and released before safe mode: a press
        # like any other (a panic when long enough).
        t = app.clk.ms()
        for ev in (app.gest.edge(True, t - app.boot_hold_ms), app.gest.edge(False, t)):
            if ev:
                app._gesture(ev, t)
    return True
