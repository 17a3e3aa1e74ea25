"""A button whose flash was wiped restarts its boot counter: its new presses must not be
taken for retransmissions of alerts the gateway already holds."""
from __future__ import annotations

import json
import shutil
import time

from gateway import signing
from tests.devices import RawDevice


def test_new_press_under_a_known_id_is_rejected_with_a_floor(stack):
    creds = stack.add_device("klj-kauman-rw05-rt03", -7982600, 112627000)
    d = RawDevice(creds, stack.broker_port)
    try:
        first = d.send(seq=1, boot=3)
        assert d.ack()["stage"] == "received"
        # The same bytes again: a retransmission, acked as before.
        d.publish(signing.sign(first, d.secret))
        assert d.ack()["stage"] == "received"
        # The same id, pressed a minute later: a new press.
        t = json.loads(first)["t"] + 60_000
        d.send(seq=1, boot=3, t=t)
        ack = d.ack()
        assert ack["stage"] == "rejected" and ack["reason"] == "id_reuse" and ack["floor"] == 3
        assert len(stack.incidents()) == 1
        assert stack.rejected("id_reuse") == 1
    finally:
        d.close()


def test_reflashed_button_rekeys_and_delivers(stack, make_device, tmp_path):
    fw = make_device()
    fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 10)
    fw.send("trigger")
    old = fw.wait_for(lambda e: e["ev"] == "ack" and e["stage"] == "received", 10)
    # Wipe the flash but keep the config (as a re-flash with an old config.json would).
    fw.stop()
    config = (fw.flash / "config.json").read_text()
    shutil.rmtree(fw.flash)
    fw.flash.mkdir()
    (fw.flash / "config.json").write_text(config)
    fw.start()
    fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 10)
    time.sleep(1.5)  # a new press is one whose press time differs by more than the tolerance (1 s)
    fw.send("trigger")
    sent = fw.wait_for(lambda e: e["ev"] == "alert", 10)
    assert sent["id"] == old["id"], "a wiped flash restarts the boot counter"
    ack = fw.wait_for(lambda e: e["ev"] == "ack" and e["stage"] == "received", 10)
    assert ack["id"] != old["id"] and ack["inc"] != old["inc"]
    assert len(stack.incidents()) == 2
    # And the gateway's config for a re-flash starts the counter above what it has seen.
    cfg = json.loads(stack.cli("device", "config", fw.dev).stdout)
    assert cfg["boot_floor"] >= int(ack["id"].split(":")[1])
