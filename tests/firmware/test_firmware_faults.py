"""The firmware under `micropython` against the real broker and gateway, in the faults an
RT head's button meets: broker gone, gateway gone, power cut, forged acks, bad GPS."""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway import config, signing
from simulator.firmware import BUILD_MAIN, FirmwareDevice
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]


def link_up(fw, timeout=15):
    return fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", timeout)


def acked_ids(fw) -> set[str]:
    return {e["id"] for e in fw.seen("ack") if e["stage"] == "received"}


def alert_ids(fw) -> set[str]:
    return {e["id"] for e in fw.seen("alert")}


def test_broker_down_during_20_presses_delivers_each_once(stack, make_device):
    fw = make_device(retry_ms=500, reconnect_min_ms=200, reconnect_max_ms=1000)
    link_up(fw)
    stack.stop_broker()
    fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "down", 10)
    for _ in range(20):
        fw.send("trigger")
    wait_until(lambda: len(fw.seen("boot")) and fw.seen("led", pattern="sending"), 5)
    stack.start_broker()
    up = link_up(fw, 20)
    wait_until(lambda: len(acked_ids(fw)) == 20, 20, what="20 acks")
    last_ack = max(e["host_t"] for e in fw.seen("ack"))
    print(f"drain after reconnection: {1000 * (last_ack - up['host_t']):.0f} ms for 20 alerts")
    incidents = stack.incidents()
    assert len(incidents) == 20
    assert {i["alert_id"] for i in incidents} == acked_ids(fw) == alert_ids(fw)


def test_power_cut_between_publish_and_ack_keeps_the_id(stack, make_device, tmp_path):
    fw = make_device()
    link_up(fw)
    stack.kill_gateway()  # so no ack can arrive between the publish and the cut
    fw.send("trigger")
    sent = fw.wait_for(lambda e: e["ev"] == "alert", 5)
    fw.power_cut()
    stack.start_gateway()
    fw.start(wait_ready=0)
    boot = fw.wait_for(lambda e: e["ev"] == "boot", 5)
    assert boot["outbox"] == 1
    ack = fw.wait_for(lambda e: e["ev"] == "ack" and e["stage"] == "received", 15)
    assert ack["id"] == sent["id"]
    assert [i["alert_id"] for i in stack.incidents()] == [sent["id"]]


# Counts one incident per alert: the per-button cap of open incidents (tested on its own) is off.
@pytest.mark.gateway(open_incidents_per_device=0)
def test_power_cuts_at_random_points_never_corrupt_the_outbox(stack, make_device):
    fw = make_device(retry_ms=300)
    link_up(fw)
    rng = random.Random(3)
    for _ in range(8):
        for _ in range(rng.randrange(1, 6)):
            fw.send("trigger")
        # Anywhere: before, during or after the journal write, the publish or the ack.
        time.sleep(rng.uniform(0, 0.05))
        fw.power_cut()
        fw.start(wait_ready=0)
        boot = fw.wait_for(lambda e: e["ev"] == "boot", 5)
        assert isinstance(boot["outbox"], int)
    link_up(fw)
    wait_until(lambda: alert_ids(fw) and alert_ids(fw) <= acked_ids(fw), 20, what="every sent alert acked")
    assert not fw.seen("config_error")
    assert {i["alert_id"] for i in stack.incidents()} == alert_ids(fw)


def test_gateway_down_button_retries_shows_failed_and_delivers(stack, make_device):
    fw = make_device(retry_ms=300, fail_ms=800)
    link_up(fw)
    stack.kill_gateway()
    fw.send("trigger")
    first = fw.wait_for(lambda e: e["ev"] == "alert", 5)
    fw.wait_for(lambda e: e["ev"] == "led" and e["pattern"] == "failed", 10)
    assert len([e for e in fw.seen("alert") if e["id"] == first["id"]]) >= 2
    stack.start_gateway()
    ack = fw.wait_for(lambda e: e["ev"] == "ack" and e["stage"] == "received", 15)
    assert ack["id"] == first["id"]
    fw.wait_for(lambda e: e["ev"] == "led" and e["pattern"] == "received", 5)


def test_forged_and_malformed_acks_are_ignored_and_nothing_is_lost(stack, make_device):
    fw = make_device(retry_ms=300)
    link_up(fw)
    stack.kill_gateway()
    fw.send("trigger")
    sent = fw.wait_for(lambda e: e["ev"] == "alert", 5)
    cfg = config.load(stack.config)
    # The gateway's own broker login may write acks: a stolen one is the worst case.
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="forger")
    c.username_pw_set(cfg.mqtt.username, cfg.mqtt.password)
    c.connect("127.0.0.1", stack.broker_port)
    c.loop_start()
    body = json.dumps({"v": 1, "id": sent["id"], "stage": "received", "inc": "inc-x", "reason": None,
                       "now": 1}).encode()
    topic = f"panic/v1/{fw.dev}/ack"
    for payload in (signing.sign(body, "0" * 64),          # wrong key
                    body,                                   # no MAC
                    signing.sign(b'{"v":1,"id":', fw.creds["secret"]),  # signed garbage
                    b"\xff" * 50):
        c.publish(topic, payload, qos=1).wait_for_publish(5)
    wait_until(lambda: len(fw.seen("bad_ack")) >= 4, 10, what="4 bad acks reported")
    c.disconnect()
    c.loop_stop()
    assert not fw.seen("ack")
    stack.start_gateway()
    ack = fw.wait_for(lambda e: e["ev"] == "ack" and e["stage"] == "received", 15)
    assert ack["id"] == sent["id"] and ack["inc"] != "inc-x"
    assert len(stack.incidents()) == 1


def test_garbage_nmea_is_ignored_and_a_fix_is_used(stack, make_device):
    fw = make_device(gps={"uart": 2, "tx": 17, "rx": 16, "baud": 9600, "fix_timeout_s": 30})
    link_up(fw)
    for junk in ("$GPGGA,garbage*00", "\x00\xff$$$", "$GPRMC,123519,A,0758.956,S,11237.620,E,0.0,0.0,271126,,*FF",
                 "not nmea at all"):
        fw.send(f"gps {junk}")
    fw.send("trigger")
    fw.wait_for(lambda e: e["ev"] == "ack", 10)
    inc = stack.incidents()[0]
    assert inc["src"] == "fixed" and (inc["lat6"], inc["lon6"]) == (-7982600, 112627000)
    # A valid GGA fix (checksum computed) then wins over the registered location.
    fw.send(_gga("0758.9560"))
    fw.send("trigger")
    wait_until(lambda: len(acked_ids(fw)) == 2, 10)
    gps_inc = [i for i in stack.incidents() if i["src"] == "gps"]
    assert len(gps_inc) == 1
    assert abs(gps_inc[0]["lat6"] - (-7982600)) < 100 and abs(gps_inc[0]["lon6"] - 112627000) < 100
    assert fw.running


def _gga(lat: str) -> str:
    body = f"GPGGA,101010.00,{lat},S,11237.6200,E,1,08,0.9,450.0,M,0.0,M,,"
    cs = 0
    for ch in body:
        cs ^= ord(ch)
    return f"gps ${body}*{cs:02X}"


def test_a_moving_gps_button_is_tracked_while_its_call_is_open_and_not_after(stack, make_device):
    fw = make_device(gps={"uart": 2, "tx": 17, "rx": 16, "baud": 9600, "fix_timeout_s": 30}, track_s=5)
    link_up(fw)
    fw.send(_gga("0758.9560"))
    fw.send("trigger")
    inc = fw.wait_for(lambda e: e["ev"] == "ack" and e["stage"] == "received", 10)["inc"]
    fw.send(_gga("0759.0000"))  # the holder is carried south, about 80 m

    def track() -> list:
        return stack.get(f"/api/incidents/{inc}")["track"]
    wait_until(lambda: any(p["lat6"] < -7983000 for p in track()), 20, what="the new position on the track")
    assert all(p["acc"] > 0 for p in track())
    assert stack.post(f"/api/incidents/{inc}/acknowledge").status_code == 200
    assert stack.post(f"/api/incidents/{inc}/resolve").status_code == 200
    fw.wait_for(lambda e: e["ev"] == "ack" and e["stage"] == "resolved", 10)
    n = len(track())
    time.sleep(7)  # more than one track_s: a resolved call is no longer tracked
    assert len(track()) == n


@pytest.mark.skipif(not BUILD_MAIN.exists(), reason="run `make firmware` first (make test does)")
def test_full_session_fits_an_88k_heap(stack, make_device, tmp_path):
    """Connect, 20 alerts queued while offline, reconnect, drain, acks: from the .mpy build.
    88 KB leaves an ESP32's MicroPython heap (about 110 KB without PSRAM) room for the radio
    stack's Python objects; since the OTA trial and remote-command hooks this session no
    longer fits 80 KB (docs/firmware.md, Memory)."""
    creds = stack.add_device("klj-kauman-rw05-rt09", -7982600, 112627000)
    fw = FirmwareDevice(tmp_path / "flash64", dict(creds["config"], retry_ms=500), heap="88K", main=BUILD_MAIN)
    fw.start()
    try:
        link_up(fw)
        fw.send("wifi off")
        fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "down", 5)
        for _ in range(20):
            fw.send("trigger")
        fw.send("status")
        fw.wait_for(lambda e: e["ev"] == "heap", 5)
        fw.send("wifi on")
        wait_until(lambda: len(acked_ids(fw)) == 20, 30, what="20 acks at 88K")
        fw.send("status")
        heap = fw.wait_for(lambda e: e["ev"] == "heap", 5)
        print(f"88K heap session: peak in use {heap['peak']} bytes, free now {heap['free']}")
        assert len(stack.incidents()) == 20
        assert fw.running and not fw.seen("log", msg="MemoryError")
    finally:
        fw.stop()
