"""Over-the-air updates on real parts (docs/firmware.md "Over-the-air updates"): the firmware
under micropython (the sim board, and the ESP32 stand-in where resets and the watchdog
matter) against the project's mosquitto and gateway. The gateway's release server is played
here by `Releases` (a paho client with the gateway's login: it signs `ota` commands with
protocol.fleet and answers chunk requests from the release file), so these tests pin the
device side whatever the gateway's rollout does."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from protocol import fleet
from protocol import release as R
from simulator.firmware import FirmwareDevice
from tests.conftest import KAUMAN

TEST_KEY = Path(__file__).resolve().parent / "release_test_key.pem"
DEV = "klj-kauman-rw05-rt03"
BUTTON = 27
RESET_RC = 3          # the sim board's "reset": the process ends, the host starts it again
# The unix port is 64-bit: its objects are up to twice an ESP32's. At 96K the idle app with
# remote commands leaves ~15 KB, less than a command + remote.py + ota.py + the RSA check
# take here (docs/firmware.md "Over-the-air updates", Memory); the tests give 128K and
# report the peak.
HEAP = "128K"


# --- the release side ----------------------------------------------------------------------
def compile_firmware(out: Path, fw: str = "1.1.0", replace: dict[str, str] | None = None) -> Path:
    """The firmware as `make firmware` builds it, under version `fw`, any module's source
    replaced (protocol.release.compile_firmware)."""
    return R.compile_firmware(out, fw, replace)


def make_release(tmp: Path, seq: int, fw: str = "1.1.0", key: Path = TEST_KEY, **kw) -> R.Release:
    d = compile_firmware(tmp / f"rel{seq}-{fw}", fw, **kw).parent
    return R.build(R.bundle_dir(d), fw=fw, seq=seq, private_key=R.load_private(key))


def trusted_keys() -> dict[str, str]:
    return R.public_entry(R.load_private(TEST_KEY).public_key().public_numbers().n)


class Releases:
    """The gateway's part of an update: signed `ota` commands, chunks on request, and the
    signed `keep` that answers a button on trial (unless `keeps` is off: a gateway gone)."""

    def __init__(self, stack, secret: str) -> None:
        from gateway import config
        cfg = config.load(stack.config)
        self.secret = secret
        self.releases: dict[int, bytes] = {}     # seq -> bundle bytes served
        self.results: list[dict] = []
        self.gets: list[int] = []
        self.on_get = None                       # fn(off) -> True to answer, False to drop
        self.fw = None                           # the device, for failure messages
        self.keeps = True
        self.deaf = 0                            # trial results to let fall, as with no gateway
        self.n = 0                               # the highest command number sent
        self.lock = threading.Lock()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-releases")
        self.c.username_pw_set(cfg.mqtt.username, cfg.mqtt.password)
        self.c.on_message = self._msg
        self.c.connect("127.0.0.1", stack.broker_port)
        self.c.subscribe(fleet.result_topic("+"), qos=1)
        self.c.loop_start()
        time.sleep(0.3)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()

    def _msg(self, client, userdata, msg) -> None:
        why, d = fleet.parse_result(msg.payload, self.secret, DEV)
        assert why is None, (why, msg.payload)
        assert d is not None
        if d["op"] != "get":
            with self.lock:
                self.results.append(d)
                if d["op"] == "ota" and d.get("stage") == "trial" and self.deaf > 0:
                    self.deaf -= 1
                elif self.keeps and d["op"] == "ota" and d.get("stage") == "trial":
                    self.n += 1
                    client.publish(fleet.cmd_topic(DEV), fleet.command(
                        self.secret, dev=DEV, n=self.n, op="keep", args={"rel": d["rel"]}, by="test",
                        t=int(time.time() * 1000)), qos=1)
            return
        off = d["off"]
        self.gets.append(off)
        if self.on_get is not None and not self.on_get(off):
            return
        data = self.releases.get(d["rel"])
        if data is not None and off < len(data):
            client.publish(fleet.ota_topic(DEV), fleet.chunk(d["rel"], off, data[off:off + fleet.CHUNK_MAX]), qos=0)

    def command(self, n: int, rel: R.Release, serve: bytes | None = None) -> None:
        self.n = max(self.n, n)
        self.releases[rel.seq] = rel.bundle if serve is None else serve
        payload = fleet.command(self.secret, dev=DEV, n=n, op="ota", args=R.ota_args(rel), by="test",
                                t=int(time.time() * 1000))
        self.c.publish(fleet.cmd_topic(DEV), payload, qos=1)

    def wait(self, timeout: float = 30, **fields) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for r in self.results:
                    if all(r.get(k) == v for k, v in fields.items()):
                        self.results.remove(r)
                        return r
            time.sleep(0.05)
        tail = (self.fw.history[-12:], self.fw.stderr_tail(1500)) if self.fw else ()
        raise TimeoutError(f"no result {fields}; got {self.results}; device: {tail}")


# --- helpers -------------------------------------------------------------------------------
@pytest.fixture
def creds(stack):
    return stack.add_device(DEV, *KAUMAN, kelurahan="Kauman")


@pytest.fixture
def releases(stack, creds):
    r = Releases(stack, creds["config"]["secret"])
    yield r
    r.close()


@pytest.fixture
def factory(tmp_path_factory):
    return compile_firmware(tmp_path_factory.mktemp("factory"), fw="1.0.0")


def sim_device(tmp_path, creds, factory, **config) -> FirmwareDevice:
    cfg = dict(creds["config"], retry_ms=1000, **config)
    fw = FirmwareDevice(tmp_path / "flash", cfg, heap=HEAP, main=factory)
    (fw.flash / "release_keys.json").write_text(json.dumps(trusted_keys()))
    return fw


def link_up(fw, timeout=20):
    e = fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", timeout)
    # The SUBSCRIBE follows the CONNACK: a command published before the broker has it
    # would find no subscription on a first session.
    time.sleep(0.5)
    return e


def ota_event(fw, stage, timeout=60):
    return fw.wait_for(lambda e: e["ev"] == "ota" and e.get("stage") == stage, timeout)


def start(fw, wait_ready: float = 10.0) -> str:
    """Start (again) and return the version its boot event reports."""
    n = len(fw.history)
    fw.start(wait_ready)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        boots = [e for e in fw.history[n:] if e["ev"] == "boot"]
        if boots:
            return boots[0]["fw"]
        time.sleep(0.02)
    raise TimeoutError(f"no boot event: {fw.history[-5:]} {fw.stderr_tail()}")


def reset_and_restart(fw, timeout=30) -> str:
    fw.wait_for(lambda e: e["ev"] == "reset", timeout)
    assert fw.proc is not None and fw.proc.wait(10) == RESET_RC
    return start(fw)


def state(fw) -> dict:
    return json.loads((fw.flash / "ota" / "state.json").read_text())


# --- tests ---------------------------------------------------------------------------------
def test_an_update_is_applied_kept_and_no_older_release_installs(stack, creds, releases, factory, tmp_path):
    rel = make_release(tmp_path, seq=5)
    fw = sim_device(tmp_path, creds, factory)
    releases.fw = fw
    try:
        fw.start()
        link_up(fw)
        releases.command(1, rel)
        assert releases.wait(ok=True, stage="accepted", rel=5)["fw"] == "1.0.0"
        ota_event(fw, "downloaded")
        r = releases.wait(stage="downloaded")
        assert (r["ok"], r["slot"]) == (True, "factory")
        # The trial boot runs the new slot, says so, and is kept on the gateway's signed keep
        # (command 2), with no alert raised for it.
        assert reset_and_restart(fw) == "1.1.0"
        t = releases.wait(stage="trial")
        assert (t["fw"], t["slot"], t["rel"], t["n"]) == ("1.1.0", "a", 5, 1)
        kept = releases.wait(stage="kept")
        assert (kept["ok"], kept["fw"], kept["slot"]) == (True, "1.1.0", "a")
        assert not fw.seen("alert"), "a trial raises no alert: nothing lands in the police queue"
        assert state(fw)["trial"] is False and state(fw)["report"] is None
        assert not (fw.flash / "ota" / "dl.bin").exists()
        assert len(releases.gets) >= len(rel.bundle) // fleet.CHUNK_MAX
        # Kept for good: the next power-up runs it too, and the same or an older release
        # is refused.
        fw.stop()
        assert start(fw) == "1.1.0"
        link_up(fw)
        releases.command(3, rel)
        assert releases.wait(stage="refused")["err"] == "old"
        older = make_release(tmp_path, seq=4, fw="1.0.9")
        releases.command(4, older)
        r = releases.wait(stage="refused")
        assert (r["err"], r["rel"], r["fw"]) == ("old", 4, "1.1.0")
    finally:
        fw.stop()


def test_interrupted_every_tenth_chunk_and_by_power_cuts_at_each_stage_then_kept(
        stack, creds, releases, factory, tmp_path):
    rel = make_release(tmp_path, seq=6)
    fw = sim_device(tmp_path, creds, factory, ota_chunk_ms=1000, reconnect_max_ms=1000)
    releases.fw = fw
    cuts: list[int] = []
    answered: set[int] = set()

    def every_tenth(off: int) -> bool:
        # The link drops at every tenth chunk: WiFi off before the answer, back 0.3 s later.
        k = off // fleet.CHUNK_MAX
        if k and k % 10 == 0 and k not in answered:
            answered.add(k)
            cuts.append(k)
            fw.send("wifi off")
            threading.Timer(0.3, lambda: fw.send("wifi on")).start()
            return False
        return True

    releases.on_get = every_tenth
    try:
        fw.start()
        link_up(fw)
        releases.command(1, rel)
        releases.wait(stage="accepted")
        # Power cut during the download, once 25 chunks are in.
        deadline = time.monotonic() + 60
        dl = fw.flash / "ota" / "dl.bin"
        while time.monotonic() < deadline and (not dl.exists() or dl.stat().st_size < 25 * 1024):
            time.sleep(0.02)
        fw.power_cut()
        part = dl.stat().st_size
        assert 0 < part < len(rel.bundle)
        n_gets = len(releases.gets)
        fw.start()
        # Resumed from the file's size, not from the start.
        ota_event(fw, "verify", 120)
        assert min(releases.gets[n_gets:]) >= part - part % fleet.CHUNK_MAX
        # Power cut after the download (hashing or unpacking).
        fw.power_cut()
        assert dl.stat().st_size == len(rel.bundle)
        fw.start()
        ota_event(fw, "downloaded", 60)
        # Power cut after the unpack and the state write, before the reset.
        fw.power_cut()
        assert state(fw)["trial"] is True and state(fw)["run"] == "a"
        # Power cut in the first trial boot (nobody answers its trial, so it is not kept first).
        releases.keeps = False
        assert start(fw) == "1.1.0"
        releases.wait(stage="trial")
        fw.power_cut()
        assert (fw.flash / "ota" / "boots").read_bytes() == b"x"
        releases.keeps = True
        assert start(fw) == "1.1.0"
        kept = releases.wait(stage="kept", timeout=60)
        assert (kept["fw"], kept["slot"], kept["rel"]) == ("1.1.0", "a", 6)
        assert len(cuts) >= 2, cuts
        # Every chunk answered once made it into the file at its place: the bundle is intact.
        files = R.parse_bundle(rel.bundle)
        for name, data in files.items():
            assert (fw.flash / "ota" / "a" / name).read_bytes() == data
        assert "setup.html" in files and "main.py" not in files and "manifest.mpy" not in files
    finally:
        fw.stop()


def test_a_trial_said_while_no_gateway_listened_is_said_again_and_kept(stack, creds, releases, factory, tmp_path):
    """Found in the Klojen run: buttons that booted their trial while the broker restarted
    said "trial" before any gateway had subscribed again; said once, it was gone, no keep
    came, and 11 of 675 rolled back. The trial is now said again until it is kept."""
    rel = make_release(tmp_path, seq=8)
    fw = sim_device(tmp_path, creds, factory, ota_chunk_ms=1000)
    releases.fw = fw
    try:
        fw.start()
        link_up(fw)
        releases.command(1, rel)
        ota_event(fw, "downloaded")
        releases.deaf = 1
        assert reset_and_restart(fw) == "1.1.0"
        first = releases.wait(stage="trial")
        again = releases.wait(stage="trial", timeout=20)
        assert (first["n"], again["n"]) == (1, 1)
        kept = releases.wait(stage="kept", timeout=20)
        assert (kept["fw"], kept["rel"]) == ("1.1.0", 8) and state(fw)["trial"] is False
    finally:
        fw.stop()


def test_a_trial_without_an_ack_is_rolled_back(stack, creds, releases, factory, tmp_path):
    rel = make_release(tmp_path, seq=7)
    fw = sim_device(tmp_path, creds, factory, ota_trial_s=10)
    releases.fw = fw
    try:
        fw.start()
        link_up(fw)
        releases.command(1, rel)
        ota_event(fw, "downloaded")
        releases.keeps = False          # the gateway that would answer the trial is gone
        assert reset_and_restart(fw) == "1.1.0"
        releases.wait(stage="trial")
        ota_event(fw, "rolled_back", 30)
        assert reset_and_restart(fw) == "1.0.0"
        r = releases.wait(stage="rolled_back")
        assert (r["ok"], r["err"], r["rel"], r["fw"], r["slot"]) == (False, "no_ack", 7, "1.0.0", "factory")
        assert state(fw)["run"] == "factory" and state(fw)["seq"] == 0
    finally:
        fw.stop()


def test_tampered_unsigned_and_wrong_key_releases_are_refused(stack, creds, releases, factory, tmp_path):
    rel = make_release(tmp_path, seq=8)
    fw = sim_device(tmp_path, creds, factory)
    releases.fw = fw
    try:
        fw.start()
        link_up(fw)
        # Signed by a key the device does not trust.
        other = tmp_path / "other"
        R.keygen("other", other)
        foreign = R.build(rel.bundle, fw="1.1.0", seq=8, private_key=R.load_private(other / "other.pem"))
        releases.command(1, foreign)
        assert releases.wait(stage="refused")["err"] == "key"
        # The trusted key's id on a manifest it did not sign (signed by the other key).
        forged = R.Release(rel.manifest_bytes, foreign.sig, rel.bundle)
        releases.command(2, forged)
        assert releases.wait(stage="refused")["err"] == "sig"
        # A manifest altered after signing (a bigger seq).
        altered = R.Release(rel.manifest_bytes.replace(b'"seq":8', b'"seq":9'), rel.sig, rel.bundle)
        releases.command(3, altered)
        assert releases.wait(stage="refused")["err"] == "sig"
        # Unsigned: no signature at all.
        releases.command(4, R.Release(rel.manifest_bytes, b"", rel.bundle))
        assert releases.wait(stage="refused")["err"] == "sig"
        # Well signed, but the bundle served is not the one signed: fetched twice, refused.
        bad = bytearray(rel.bundle)
        bad[len(bad) // 2] ^= 0xFF
        releases.command(5, rel, serve=bytes(bad))
        releases.wait(stage="accepted")
        ota_event(fw, "hash_retry", 60)
        r = releases.wait(stage="refused", timeout=60)
        assert (r["err"], r["rel"], r["n"]) == ("hash", 8, 5)
        assert not (fw.flash / "ota" / "dl.bin").exists()
        assert not (fw.flash / "ota" / "state.json").exists()
        fw.stop()
        assert start(fw) == "1.0.0"
    finally:
        fw.stop()


def test_no_update_while_an_alert_is_pending_or_the_battery_is_low(stack, creds, releases, factory, tmp_path):
    rel = make_release(tmp_path, seq=9)
    fw = sim_device(tmp_path, creds, factory, battery_min_ota=40)
    releases.fw = fw
    try:
        fw.start()
        link_up(fw)
        fw.send("battery 30")
        time.sleep(0.3)
        releases.command(1, rel)
        assert releases.wait(stage="refused")["err"] == "battery"
        fw.send("battery 80")
        stack.kill_gateway()            # the alert stays unacked: pending in the outbox
        fw.send("trigger")
        fw.wait_for(lambda e: e["ev"] == "alert", 10)
        releases.command(2, rel)
        assert releases.wait(stage="refused")["err"] == "busy_alert"
        assert not releases.gets
        # Once the alert is through, the same command is taken.
        stack.start_gateway()
        fw.wait_for(lambda e: e["ev"] == "ack", 30)
        releases.command(3, rel)
        releases.wait(stage="accepted")
        ota_event(fw, "downloaded", 60)
    finally:
        fw.stop()


def test_a_press_during_the_download_goes_first_and_the_download_resumes(
        stack, creds, releases, factory, tmp_path):
    rel = make_release(tmp_path, seq=10)
    fw = sim_device(tmp_path, creds, factory)
    releases.fw = fw
    pressed = threading.Event()

    def slow(off: int) -> bool:
        if off == 20 * fleet.CHUNK_MAX and not pressed.is_set():
            pressed.set()
            fw.send("trigger")          # the holder presses mid-download
        return True

    releases.on_get = slow
    try:
        fw.start()
        link_up(fw)
        releases.command(1, rel)
        alert = fw.wait_for(lambda e: e["ev"] == "alert", 60)
        ack = fw.wait_for(lambda e: e["ev"] == "ack" and e["id"] == alert["id"], 15)
        assert ack["stage"] == "received"
        ota_event(fw, "downloaded", 60)
    finally:
        fw.stop()


# --- the ESP32 stand-in: real resets, reset causes and the watchdog -------------------------
HANG = "import time\nwhile True:\n    time.sleep_ms(100)   # stuck at import: only the watchdog ends it\n"


@pytest.mark.parametrize(("app_py", "exit_code", "err"), [
    ('raise RuntimeError("broken release")\n', 71, "crash"),   # main.py: traceback, reset
    (HANG, 70, "watchdog"),                                    # the watchdog resets it
], ids=["crash", "hang"])
def test_a_bundle_that_crashes_or_hangs_at_import_is_rolled_back_by_itself(
        stack, creds, releases, tmp_path, app_py, exit_code, err):
    from tests.firmware.esp32.host import Esp32Device
    broken = make_release(tmp_path, seq=11, replace={"app.py": app_py})
    cfg = dict(creds["config"], wifi=[{"ssid": "RT03-home", "psk": "x"}], wdt_ms=4000)
    fw = Esp32Device(tmp_path / "flash", cfg, hw={}, heap_k=128)
    releases.fw = fw
    (fw.flash / "release_keys.json").write_text(json.dumps(trusted_keys()))
    try:
        fw.start()
        link_up(fw)
        releases.command(1, broken)
        releases.wait(stage="accepted")
        ota_event(fw, "downloaded", 120)
        assert fw.exit_code(20) == 71            # machine.reset() into the trial
        fw.start(wait_ready=0)
        assert fw.exit_code(30) == exit_code     # the new app fails at import
        assert start(fw) == "1.0.0"              # the loader rolled back before the app
        r = releases.wait(stage="rolled_back", timeout=30)
        assert (r["err"], r["rel"], r["slot"], r["fw"]) == (err, 11, "factory", "1.0.0")
        if err == "crash":
            assert "broken release" in fw.stderr_tail(4000)
        assert state(fw)["run"] == "factory" and not (fw.flash / "ota" / "boots").exists()
    finally:
        fw.stop()
