"""A staged rollout end to end on real parts: `panic-gateway fleet release` on the real
gateway and mosquitto, the firmware under `micropython` downloading from the gateway's fleet
worker, booting the release on trial and keeping it, or, for a release that crashes at
import, rolling back by itself until the rollout halts on its canaries."""
from __future__ import annotations

import json
import time

import pytest

from gateway import config
from gateway import fleet as fleet_service
from gateway.store import open_store
from protocol import release as R
from simulator.firmware import FirmwareDevice
from tests.conftest import KAUMAN, wait_until
from tests.firmware.test_firmware_ota import HEAP, compile_firmware, make_release, trusted_keys
from tests.gateway.test_gateway_support import custom_stack

DEVS = ["klj-kauman-rw05-rt01", "klj-kauman-rw05-rt02"]


def button(flash, cfg: dict, factory) -> FirmwareDevice:
    """A firmware process whose board is powered again whenever it resets or crashes, as a
    real button's would be (FirmwareDevice's reboots)."""
    fw = FirmwareDevice(flash, cfg, heap=HEAP, main=factory, reboots=True)
    (fw.flash / "release_keys.json").write_text(json.dumps(trusted_keys()))
    return fw.start()


@pytest.fixture
def rig(tmp_path, tmp_path_factory):
    s = custom_stack(tmp_path / "state", start=False)
    keys = tmp_path / "state" / "rm.pub.json"
    keys.write_text(json.dumps(trusted_keys()))
    s.set_config("fleet", release_keys=str(keys), chunk_rate=50, halt_min=2, trial_s=120)
    s.start_broker()
    s.start_gateway()
    creds = [s.add_device(d, *KAUMAN, kelurahan="Kauman") for d in DEVS]
    time.sleep(2.5)  # the gateway's registry cache knows them before their first status
    factory = compile_firmware(tmp_path_factory.mktemp("factory"), fw="1.0.0")
    buttons = [button(tmp_path / "flash" / c["id"], dict(c["config"], retry_ms=1000), factory) for c in creds]
    store = open_store(config.load(s.config))
    wait_until(lambda: all(r["health"] == "online" for r in store.firmware().values()), 20, interval=0.2,
               what="buttons online")
    yield s, store, buttons
    for b in buttons:
        b.stop()
    store.close()
    s.down()


def release_file(tmp_path, rel: R.Release):
    path = tmp_path / f"r{rel.seq}.pbr"
    path.write_bytes(rel.pack())
    return path


def test_a_release_rolls_out_to_every_button_and_is_kept(rig, tmp_path):
    stack, store, buttons = rig
    rel = make_release(tmp_path, seq=5, fw="1.1.0")
    t0 = time.monotonic()
    stack.cli("fleet", "release", str(release_file(tmp_path, rel)), "--to", "100%", "--by", "rm-test")
    wait_until(lambda: store.current_rollout().state == "done", 240, interval=0.5, what="rollout done")
    took = time.monotonic() - t0
    recs = store.firmware()
    assert {(r["fw"], r["slot"], r["seq"], r["stage"]) for r in recs.values()} == {("1.1.0", "a", 5, "kept")}
    for b in buttons:
        stages = [c["result"]["stage"] for c in store.commands(b.dev) if c["op"] == "ota"]
        assert stages == ["kept"]
    print(f"\nrollout of a {len(rel.bundle)}-byte release to {len(buttons)} firmware buttons: {took:.1f} s")


def test_a_release_that_crashes_at_import_is_rolled_back_and_halts_the_rollout(rig, tmp_path):
    stack, store, buttons = rig
    broken = make_release(tmp_path, seq=6, fw="1.2.0", replace={"app.py": 'raise RuntimeError("broken release")\n'})
    stack.cli("fleet", "release", str(release_file(tmp_path, broken)), "--to", "100%")
    wait_until(lambda: store.current_rollout().state == "halted", 240, interval=0.5, what="rollout halted")
    why = store.current_rollout().why
    assert why.startswith("2 of 2 devices with an outcome failed the trial") and "rolled back" in why, why
    st = fleet_service.status(store, config.load(stack.config))
    assert {(d["fw"], d["rollout"]) for d in st["devices"]} == {("1.0.0", "failed")}
    for b in buttons:
        assert b.restarts >= 2


def test_remote_commands_through_the_cli_are_run_and_audited(rig):
    stack, store, buttons = rig
    dev = buttons[0].dev
    for args in (("locate",), ("set", "heartbeat_s=30", "silent=true")):
        p = stack.cli("fleet", "command", dev, *args, "--by", "it:budi", check=False)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["ok"] is True
    # Not settable: refused by the gateway before a number is spent (the button refuses it too).
    p = stack.cli("fleet", "command", dev, "set", "brokers=[]", "--by", "it:budi", check=False)
    assert p.returncode == 2 and "not settable" in p.stderr
    log = store.commands(dev)
    assert [(c["n"], c["op"], c["ok"]) for c in log] == [(2, "set", True), (1, "locate", True)]
    assert all(c["by"] == "it:budi" and c["result"]["fw"] == "1.0.0" for c in log)
    assert json.loads((buttons[0].flash / "config.json").read_text())["heartbeat_s"] == 30
