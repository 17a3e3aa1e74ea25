"""`panic-gateway fleet ...` against the real gateway and mosquitto: a signed release stored
and rolled out to 5 % then widened, a tampered one refused with exit 2, status and halt, a
remote command sent, answered and audited, and `device config` giving the trusted keys."""
from __future__ import annotations

import json

import pytest

from gateway import config
from gateway import fleet as fleet_service
from gateway.store import open_store
from protocol import release as pbr
from tests.conftest import wait_until
from tests.gateway.test_fleet_worker import buttons, online
from tests.gateway.test_gateway_support import custom_stack


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    priv, pub = pbr.keygen("rm", folder)
    return pbr.load_private(priv), pub


def release_file(tmp_path, key, seq: int = 13) -> bytes:
    files = {"app.py": b"print('1.13')\n" * 300, "proto.py": b"FW = '1.13.0'\n"}
    rel = pbr.build(pbr.bundle(files), fw="1.13.0", seq=seq, private_key=key)
    return rel.pack()


@pytest.fixture
def stack(tmp_path, keys):
    s = custom_stack(tmp_path / "state", start=False)
    s.set_config("fleet", release_keys=str(keys[1]))
    s.start_broker()
    s.start_gateway()
    yield s
    s.down()


def status(stack) -> dict:
    return json.loads(stack.cli("fleet", "status", "--json").stdout)


def live(stack) -> dict:
    """What `fleet status --json` prints, read in-process: cheap enough to poll."""
    cfg = config.load(stack.config)
    store = open_store(cfg)
    try:
        return fleet_service.status(store, cfg)
    finally:
        store.close()


def test_release_verified_rolled_out_widened_and_a_tampered_one_refused(stack, keys, tmp_path):
    fleet = buttons(stack, 4)
    try:
        store = open_store(config.load(stack.config))
        online(store, fleet)
        store.close()
        good = tmp_path / "r13.pbr"
        good.write_bytes(release_file(tmp_path, keys[0]))
        tampered = bytearray(good.read_bytes())
        tampered[-5] ^= 1  # one bit of the bundle
        bad = tmp_path / "bad.pbr"
        bad.write_bytes(bytes(tampered))
        p = stack.cli("fleet", "release", str(bad), "--to", "5%", check=False)
        assert p.returncode == 2 and "release refused (hash)" in p.stderr, p.stderr
        unsigned = tmp_path / "other.pbr"
        other_key = pbr.load_private(pbr.keygen("stranger", tmp_path)[0])
        unsigned.write_bytes(release_file(tmp_path, other_key, seq=14))
        p = stack.cli("fleet", "release", str(unsigned), "--to", "5%", check=False)
        assert p.returncode == 2 and "release refused (key)" in p.stderr, p.stderr
        assert status(stack)["rollout"] is None

        stack.cli("fleet", "release", str(good), "--to", "5%", "--by", "rm-budi")
        wait_until(lambda: live(stack)["rollout"]["counts"].get("ok") == 1, 20, interval=0.2, what="the canary kept it")
        st = status(stack)
        assert st["rollout"]["wave"] == 1 and st["rollout"]["fw"] == "1.13.0" and st["rollout"]["by"] == "rm-budi"
        assert sum(1 for b in fleet if b.commands) == 1
        p = stack.cli("fleet", "release", "--to", "1%", check=False)
        assert p.returncode == 2 and "only widens" in p.stderr
        stack.cli("fleet", "release", "--to", "100%")
        wait_until(lambda: live(stack)["rollout"]["state"] == "done", 30, interval=0.2, what="rollout done")
        st = status(stack)
        assert {(d["fw"], d["slot"], d["rollout"]) for d in st["devices"]} == {("1.13.0", "a", "ok")}
        text = stack.cli("fleet", "status").stdout
        assert "release 13 (firmware 1.13.0) to 100 % (4 of 4 devices): DONE" in text
        log = stack.cli("fleet", "log", fleet[0].dev).stdout
        assert "ota" in log and "stage kept" in log and "by rollout:" in log
    finally:
        for b in fleet:
            b.close()


def test_halt_and_resume(stack, keys, tmp_path):
    [b] = buttons(stack, 1, mode="silent")
    try:
        path = tmp_path / "r13.pbr"
        path.write_bytes(release_file(tmp_path, keys[0]))
        stack.cli("fleet", "release", str(path), "--to", "50%")
        p = stack.cli("fleet", "halt", "--by", "admin-siti", "--why", "field report", check=False)
        assert p.returncode == 0, p.stderr
        st = status(stack)["rollout"]
        assert st["state"] == "halted" and st["why"] == "halted by admin-siti: field report"
        p = stack.cli("fleet", "release", "--to", "100%", check=False)
        assert p.returncode == 2 and "halted by admin-siti" in p.stderr
        stack.cli("fleet", "release", "--to", "100%", "--resume")
        assert status(stack)["rollout"]["state"] == "active"
        assert stack.cli("fleet", "halt", check=False).returncode == 0
        assert stack.cli("fleet", "halt", check=False).returncode == 2  # nothing active
    finally:
        b.close()


def test_a_command_is_sent_answered_and_audited(stack):
    [b] = buttons(stack, 1)
    try:
        p = stack.cli("fleet", "command", b.dev, "set", "heartbeat_s=300", "silent=true", "--by", "op:siti",
                      check=False)
        assert p.returncode == 0, p.stderr
        row = json.loads(p.stdout)
        assert row["ok"] is True and row["by"] == "op:siti" and row["args"] == {"heartbeat_s": 300, "silent": True}
        assert b.commands[-1]["args"] == {"heartbeat_s": 300, "silent": True} and b.commands[-1]["by"] == "op:siti"
        for bad in (["set", "secret=x"], ["set"], ["locate", "x=1"]):
            p = stack.cli("fleet", "command", b.dev, *bad, "--by", "op:siti", check=False)
            assert p.returncode == 2, bad
        assert stack.cli("fleet", "command", "klj-nobody", "locate", "--by", "x", check=False).returncode == 2
        assert stack.cli("fleet", "command", b.dev, "locate", "--by", "op:budi").returncode == 0
        b.mode = "silent"
        p = stack.cli("fleet", "command", b.dev, "reboot", "--by", "op:budi", "--wait", "1", check=False)
        assert p.returncode == 1 and "no result within" in p.stderr
        log = json.loads(stack.cli("fleet", "log", b.dev, "--json").stdout)
        assert [(c["n"], c["op"], c["by"], c["ok"]) for c in log] == [
            (3, "reboot", "op:budi", None), (2, "locate", "op:budi", True), (1, "set", "op:siti", True)]
    finally:
        b.close()


def test_device_config_writes_the_trusted_keys(stack, keys, tmp_path):
    stack.add_device("klj-kauman-rw05-rt09", -7982600, 112627000)
    out = tmp_path / "flash"
    stack.cli("device", "config", "klj-kauman-rw05-rt09", "--out", str(out))
    assert json.loads((out / "release_keys.json").read_text()) == json.loads(keys[1].read_text())




@pytest.mark.parametrize("values,words", [
    ({"halt_pct": 120}, "halt_pct must be 0..100"), ({"halt_pct": "ten"}, "halt_pct: expected a number"),
    ({"parallel": 0}, "positive"), ({"chunk_rate": "fast"}, "expected an integer"), ({"typo": 1}, "unknown keys"),
])
def test_bad_fleet_settings_are_refused(tmp_path, values, words):
    path = tmp_path / "gateway.toml"
    config.write({"fleet": values}, path)
    with pytest.raises(config.ConfigError, match=words):
        config.load(path)


def test_release_keys_that_do_not_load_are_a_clear_error(tmp_path):
    path = tmp_path / "gateway.toml"
    (tmp_path / "k.pub.json").write_text('{"0000000000000000": "AAAA"}')
    config.write({"fleet": {"release_keys": "k.pub.json"}}, path)
    with pytest.raises(fleet_service.ReleaseRefused, match="does not match its modulus"):
        fleet_service.trusted_keys(config.load(path))
    config.write({}, path)
    with pytest.raises(fleet_service.ReleaseRefused, match="set \\[fleet\\] release_keys"):
        fleet_service.trusted_keys(config.load(path))
