"""The ESP32 layer's network, TLS, clock and link supervision on the ESP32 stand-in
(tests/firmware/esp32/), against the project's mosquitto and gateway: firmware/app.py +
board_esp32.py + mqtt.py unchanged under `micropython`, with the radio, DNS, NTP and TLS
made slow, partial or absent the way they are in the field."""
from __future__ import annotations

import json
import queue
import shutil
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway import config as gw_config
from simulator.stack import Stack
from tests.conftest import KAUMAN, wait_until
from tests.firmware.esp32.host import HARNESS_HEAP_K, WDT_EXIT, Esp32Device, fill_outbox, module_heap
from tests.gateway.test_gateway_support import custom_stack

BUTTON = 27
DEV = "klj-kauman-rw05-rt03"
BROKER_NAME = "mqtt.panic.test"


@pytest.fixture
def tls_stack(tmp_path):
    # One incident per alert (40 from one button): the per-button open-incident cap is off here.
    s = custom_stack(tmp_path / "state", start=False, open_incidents_per_device=0)
    s.broker_tls_port()
    s.start_broker()
    s.start_gateway()
    yield s
    s.down()


@pytest.fixture
def boards():
    made: list[Esp32Device] = []
    yield made
    for fw in made:
        fw.stop()


def esp32(stack: Stack, tmp_path: Path, boards: list, hw: dict | None = None, tls: bool = False,
          dev: str = DEV, heap_k: int = 96, **cfg) -> Esp32Device:
    creds = stack.add_device(dev, *KAUMAN, kelurahan="Kauman")
    config = dict(creds["config"], wifi=[{"ssid": "RT03-home", "psk": "wifi-pw"}],
                  pins={"button": BUTTON})
    config.update(cfg)
    fw = Esp32Device(tmp_path / dev, config, hw=hw, heap_k=heap_k)
    if tls:
        shutil.copy(stack.state / "broker" / "tls" / "ca.crt", fw.flash / "ca.crt")
    boards.append(fw)
    return fw


def hw_events(fw: Esp32Device, what: str) -> list[dict]:
    return [e for e in fw.history if e["ev"] == "esp32" and e.get("what") == what]


def link_up(fw: Esp32Device, timeout: float = 20) -> dict:
    return fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", timeout)


def acked(fw: Esp32Device) -> set[str]:
    return {e["id"] for e in fw.history if e["ev"] == "ack" and e["stage"] == "received"}


def retained_status(stack: Stack, dev: str) -> dict:
    """The device's retained status, as the broker holds it (read as the gateway's user)."""
    cfg = gw_config.load(stack.config)
    got: queue.Queue = queue.Queue()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="status-probe")
    c.username_pw_set(cfg.mqtt.username, cfg.mqtt.password)
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(f"{cfg.topic_root}/{dev}/status", 1)
    c.on_message = lambda cl, u, m: got.put(json.loads(m.payload))
    c.connect("127.0.0.1", stack.broker_port)
    c.loop_start()
    try:
        return got.get(timeout=10)
    finally:
        c.disconnect()
        c.loop_stop()


# ---- TLS writes -------------------------------------------------------------------------

# Firmware modules in RAM while the ESP32 layer runs (config and startup are unloaded after
# boot; main.py is a script compiled at boot and counts as data). The test checks that the
# peak's module list holds no other firmware module, so the code figure stays true.
STEADY_MODULES = ["board", "board_esp32", "battery", "edges", "patterns", "clockfloor", "monotonic",
                  "proto", "hmac256", "outbox", "gesture", "alerts", "mqtt", "alerting", "app"]
# Loaded at boot only, then dropped: frozen, they would take no heap at boot either.
BOOT_MODULES = ["config", "startup", "safemode", "cfgset"]
STAND_IN = {"harness", "esp32", "machine", "network", "ntptime", "select", "socket", "ssl", "time", "main"}


def frozen_image_heap(fw: Esp32Device, data_k: int = 64) -> str:
    """A heap for a board whose modules are frozen (firmware/manifest.py): `data_k` for the
    firmware's data, plus the stand-in's share, plus the bytecode of every module the board
    loads, which a frozen image keeps in flash and the .mpy files here put in the heap."""
    code = sum(module_heap(fw.build_dir, STEADY_MODULES + BOOT_MODULES).values())
    return f"{data_k + HARNESS_HEAP_K + -(-code // 1024)}K"


def test_40_queued_alerts_drain_over_slow_tls_with_every_byte_accounted_for(tls_stack, tmp_path, boards):
    """mbedTLS takes a record on WANT_WRITE and reports the next write's length as written:
    a retry with a longer buffer loses its tail. And a backlog above the send buffer used to
    drop the link and repeat the same burst.

    Heap: the process holds three shares: the stand-in's modules (the `baseline` event,
    within HARNESS_HEAP_K), the firmware's bytecode (module_heap: what a frozen image,
    firmware/manifest.py, keeps in flash; every module the board loads, at boot or in the
    loop) and the firmware's data, which gets 64K, as on a board with a frozen image. With
    the bytecode in the heap (.mpy files on the flash) the firmware's peak is above 96 KB
    (docs/firmware.md "Memory")."""
    fw = esp32(tls_stack, tmp_path, boards, tls=True, outbox_max=64,
               hw={"uplink_bps": 6000, "tls_date_check": False, "ntp": ["pool.ntp.org"],
                   "heap_sample_ms": 0})
    steady = sum(module_heap(fw.build_dir, STEADY_MODULES).values())
    code = sum(module_heap(fw.build_dir, STEADY_MODULES + BOOT_MODULES).values())
    fw.heap = frozen_image_heap(fw)
    ids = fill_outbox(fw.flash, DEV, 40)
    fw.start()
    try:
        wait_until(lambda: acked(fw) >= set(ids), 90, what="40 acks")
    finally:
        print(len(acked(fw)), "acked;", len(fw.seen("alert")), "alert sends;",
              [e["reason"] for e in fw.history if e["ev"] == "link" and e["state"] == "down"])
    assert not hw_events(fw, "tls_misuse"), hw_events(fw, "tls_misuse")[:3]
    downs = [e for e in fw.history if e["ev"] == "link" and e["state"] == "down"]
    assert not downs, downs
    assert {i["alert_id"] for i in tls_stack.incidents()} == set(ids)
    fw.stop()
    for e in hw_events(fw, "tls_bytes"):
        assert e["reported"] == e["sent"], e
    heap = hw_events(fw, "heap")[-1]
    assert set(heap["mods"]) <= set(STEADY_MODULES) | STAND_IN, heap["mods"]
    firmware = heap["peak"] - fw.baseline()
    print(f"ESP32 layer, 40 alerts over TLS (heap {fw.heap}): stand-in {fw.baseline() / 1024:.1f} KB, "
          f"firmware peak {firmware / 1024:.1f} KB = bytecode in the loop {steady / 1024:.1f} KB "
          f"+ data {(firmware - steady) / 1024:.1f} KB; bytecode loaded at all {code / 1024:.1f} KB")


def test_the_frozen_manifest_lists_every_module_the_board_runs():
    """firmware/manifest.py freezes the modules into the ESP32 image (docs/firmware.md
    "Memory"): a module left out would run from the heap, one listed but gone breaks the build."""
    fw = Path(__file__).resolve().parents[2] / "firmware"
    listed: list[str] = []
    exec((fw / "manifest.py").read_text(), {"include": lambda *a, **k: None,
                                            "module": lambda name, **k: listed.append(name)})
    have = {p.name for p in fw.glob("*.py")} - {"main.py", "board_sim.py", "manifest.py"}
    assert sorted(listed) == sorted(have)


def test_a_new_panic_goes_out_before_an_old_backlog(stack, tmp_path, boards):
    fw = esp32(stack, tmp_path, boards, hw={"uplink_bps": 1500, "ntp": []})
    fw.heap = frozen_image_heap(fw)     # a 20-alert backlog, as the 40-alert test above
    old = fill_outbox(fw.flash, DEV, 20)
    fw.start()
    link_up(fw)
    fw.hold(BUTTON, 2300)
    new = fw.wait_for(lambda e: e["ev"] == "alert" and e["id"] not in old, 10)["id"]
    wait_until(lambda: acked(fw) >= {*old, new}, 60, what="all acks")
    order = [e["id"] for e in fw.history if e["ev"] == "ack" and e["stage"] == "received"]
    assert order.index(new) < max(order.index(i) for i in old)
    assert not [e for e in fw.history if e["ev"] == "link" and e["state"] == "down"]


# ---- clock ------------------------------------------------------------------------------

def test_cold_boot_over_tls_with_no_time_source_still_delivers(tls_stack, tmp_path, boards):
    """RTC at 2000-01-01, no NTP anywhere: the CA's start date is a floor the handshake passes
    on, and the ack's `now` then sets the clock (kept in flash for the next power-up)."""
    fw = esp32(tls_stack, tmp_path, boards, tls=True, hw={"ntp": []})
    fw.start()
    link_up(fw, 30)
    fw.hold(BUTTON, 2300)
    alert = fw.wait_for(lambda e: e["ev"] == "alert", 10)
    fw.wait_for(lambda e: e["ev"] == "ack" and e["id"] == alert["id"] and e["stage"] == "received", 15)
    saved = int((fw.flash / "clock").read_text())  # seconds since 2000 (the ESP32 epoch)
    assert abs(saved + 946684800 - time.time()) < 60


def test_ntp_is_retried_soon_and_from_the_broker_host_when_the_pool_is_out_of_reach(stack, tmp_path, boards):
    fw = esp32(stack, tmp_path, boards, hw={"ntp": ["127.0.0.1"]})   # only the gateway's host answers
    fw.start()
    fw.wait_for(lambda e: e["ev"] == "esp32" and e.get("what") == "ntp", 20)
    assert hw_events(fw, "ntp")[0]["host"] == "127.0.0.1"


# ---- DNS, connect and handshake stalls ----------------------------------------------------

def test_dns_is_resolved_once_across_reconnects(stack, tmp_path, boards):
    fw = esp32(stack, tmp_path, boards, hw={"hosts": {BROKER_NAME: "127.0.0.1", "pool.ntp.org": "162.159.200.1"},
                                            "ntp": ["pool.ntp.org"]},
               brokers=[{"host": BROKER_NAME, "port": stack.broker_port, "tls": False}])
    fw.start()
    link_up(fw)
    for _ in range(2):
        fw.set("wifi", False)
        fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "down", 10)
        fw.set("wifi", True)
        link_up(fw)
    lookups = [e for e in hw_events(fw, "dns") if e["host"] == BROKER_NAME]
    assert len(lookups) == 1, lookups


def test_a_press_during_a_3s_dns_stall_is_delivered(stack, tmp_path, boards):
    fw = esp32(stack, tmp_path, boards, hw={"hosts": {BROKER_NAME: "127.0.0.1"}, "dns_ms": 3000, "ntp": []},
               brokers=[{"host": BROKER_NAME, "port": stack.broker_port, "tls": False}])
    fw.start()
    fw.wait_for(lambda e: e["ev"] == "esp32" and e.get("what") == "dns" and e["host"] == BROKER_NAME, 20)
    fw.hold(BUTTON, 2500)      # inside the 3 s lookup: edges come in while the loop is blocked
    alert = fw.wait_for(lambda e: e["ev"] == "alert", 15)
    fw.wait_for(lambda e: e["ev"] == "ack" and e["id"] == alert["id"], 15)


def test_a_press_during_a_5s_handshake_is_handled_while_the_handshake_runs(tls_stack, tmp_path, boards):
    fw = esp32(tls_stack, tmp_path, boards, tls=True, hw={"handshake_ms": 5000, "tls_date_check": False, "ntp": []})
    fw.start()
    fw.wait_for(lambda e: e["ev"] == "esp32" and e.get("what") == "tls_start", 20)
    fw.hold(BUTTON, 2300)
    alert = fw.wait_for(lambda e: e["ev"] == "alert", 15)
    fw.wait_for(lambda e: e["ev"] == "ack" and e["id"] == alert["id"], 15)
    press = next(e for e in fw.history if e["ev"] == "buzzer" and e["pattern"] == "sending")
    done = hw_events(fw, "tls_done")[0]
    # The loop kept serving the button: the press was recognised before the handshake ended.
    assert press["host_t"] < done["host_t"]


def test_a_handshake_longer_than_the_watchdog_neither_resets_nor_fails(tls_stack, tmp_path, boards):
    fw = esp32(tls_stack, tmp_path, boards, tls=True, wdt_ms=8000,
               hw={"handshake_ms": 9000, "tls_date_check": False, "ntp": []})
    fw.start()
    link_up(fw, 30)
    assert not hw_events(fw, "reset")


# ---- link supervision -------------------------------------------------------------------

def test_a_dead_path_is_found_by_puback_timeout_and_the_alert_goes_after_reconnect(stack, tmp_path, boards):
    fw = esp32(stack, tmp_path, boards, hw={"ntp": []}, response_ms=1000)
    fw.start()
    link_up(fw)
    time.sleep(1)                    # SUBACK and the status's PUBACK are in
    fw.set("uplink_dead", True)      # WiFi still up: bytes leave the radio and vanish
    fw.hold(BUTTON, 2300)
    alert = fw.wait_for(lambda e: e["ev"] == "alert", 10)
    down = fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "down", 15)
    assert down["reason"] == "puback timeout"
    fw.set("uplink_dead", False)
    fw.wait_for(lambda e: e["ev"] == "ack" and e["id"] == alert["id"], 20)


def test_status_tells_no_broker_and_reset_cause(stack, tmp_path, boards):
    fw = esp32(stack, tmp_path, boards, hw={"broker": "blackhole", "ntp": []})
    fw.start()
    fw.wait_for(lambda e: e["ev"] == "log" and "connect timeout" in e["msg"], 20)
    fw.set("broker", "up")
    link_up(fw, 30)
    st = retained_status(stack, DEV)
    assert st["link_err"] == "no_broker" and st["reset"] == "pwron" and st["reconnects"] == 0


# ---- watchdog ---------------------------------------------------------------------------

def test_watchdog_fires_in_a_stuck_lookup_and_the_board_comes_back_with_its_outbox(stack, tmp_path, boards):
    fw = esp32(stack, tmp_path, boards, wdt_ms=8000,
               hw={"hosts": {BROKER_NAME: "127.0.0.1"}, "dns_ms": 60000, "ntp": []},
               brokers=[{"host": BROKER_NAME, "port": stack.broker_port, "tls": False}])
    ids = fill_outbox(fw.flash, DEV, 3)
    fw.start()
    assert fw.exit_code(30) == WDT_EXIT          # a lookup that never returns: reset
    fw.hw["dns_ms"] = 0                          # the resolver answers after the reset
    fw.write_hw()
    fw.start()
    boot = next(e for e in reversed(fw.history) if e["ev"] == "boot")
    assert boot["outbox"] == 3
    wait_until(lambda: acked(fw) >= set(ids), 30, what="the outbox delivered after the reset")
    assert retained_status(stack, DEV)["reset"] == "wdt"
