"""The backup broker: a second MQTT path, so a button still reaches the gateway while one
broker is down. With real parts: two mosquittos from the configs `panic-gateway init
--backup-broker-port` writes, the gateway consuming from both, the real firmware under
`micropython` with both brokers in its config, and raw MQTT devices speaking exact bytes to
one broker or the other."""
from __future__ import annotations

import json
import os
import queue
import re
import subprocess

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

import protocol
from gateway import config
from gateway.store import open_store
from simulator.firmware import FirmwareDevice
from simulator.stack import BIN, Stack
from tests.conftest import KAUMAN, assert_no_secrets_in_logs, wait_until
from tests.devices import RawDevice

DEV = "klj-kauman-rw05-rt03"


@pytest.fixture
def stack(tmp_path):
    s = Stack(tmp_path / "state", backup=True)
    s.up()
    yield s
    s.down()
    assert_no_secrets_in_logs(s, extra_dirs=[tmp_path])


def deliveries(s: Stack, inc_id: str) -> list[dict]:
    store = open_store(config.load(s.config))
    try:
        return [d._asdict() for d in store.deliveries(inc_id)]  # as the API shows them
    finally:
        store.close()


def login_refused(creds: dict, port: int) -> bool:
    """Whether the broker on `port` refuses this device's login (a CONNACK failure)."""
    got: queue.Queue = queue.Queue()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=creds["id"])
    c.username_pw_set(creds["mqtt_username"], creds["mqtt_password"])
    c.on_connect = lambda cl, u, f, reason, p: got.put(reason.is_failure)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        return got.get(timeout=5)
    finally:
        c.disconnect()
        c.loop_stop()


def test_config_lists_both_brokers_and_health_reports_each(stack):
    creds = stack.add_device(DEV, *KAUMAN, kelurahan="Kauman")
    assert [b["port"] for b in creds["config"]["brokers"]] == [stack.broker_port, stack.backup_port]
    conf = (stack.state / "broker-backup" / "mosquitto.conf").read_text()
    assert f"listener {stack.backup_port} 127.0.0.1" in conf
    assert str(stack.state / "broker-backup" / "data") in conf  # its own persistence
    wait_until(lambda: all(b["connected"] for b in _health(stack)["brokers"]), 10, what="both brokers connected")
    assert [b["name"] for b in _health(stack)["brokers"]] == ["primary", "backup"]
    m = stack.metrics()
    assert m['panic_broker_connected{broker="primary"}'] == 1 and m['panic_broker_connected{broker="backup"}'] == 1
    stack.kill_broker("backup")
    wait_until(lambda: _health(stack)["brokers"][1]["connected"] is False, 30, what="backup seen down")
    h = _health(stack)
    assert h["ok"] and h["brokers"][0]["connected"]  # alerts still come in over the primary
    assert stack.metrics()['panic_broker_connected{broker="backup"}'] == 0


def _health(s: Stack) -> dict:
    return httpx.get(f"{s.api}/healthz", timeout=5).json()


def test_primary_killed_for_good_every_alert_is_acked_through_the_backup(stack, tmp_path):
    creds = stack.add_device(DEV, *KAUMAN, kelurahan="Kauman")
    fw = FirmwareDevice(tmp_path / "flash" / DEV, dict(creds["config"], retry_ms=500))
    fw.start()
    try:
        fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 10)
        fw.send("trigger")
        first = fw.wait_for(lambda e: e["ev"] == "ack", 10)
        stack.kill_broker("primary")
        ids: list[str] = []
        for _ in range(3):
            fw.send("trigger")
            done = {first["id"], *ids}
            aid = fw.wait_for(lambda e, done=done: e["ev"] == "alert" and e["id"] not in done, 10)["id"]
            ack = fw.wait_for(lambda e, aid=aid: e["ev"] == "ack" and e["id"] == aid, 30)
            assert ack["stage"] == "received"
            ids.append(aid)
        up = [e["broker"] for e in fw.seen("link") if e["state"] == "up"]
        assert up[-1] == f"127.0.0.1:{stack.backup_port}"
    finally:
        fw.stop()
    incs = {i["alert_id"]: i for i in stack.incidents()}
    assert incs[first["id"]]["path"] == "wifi"
    for aid in ids:
        inc = incs[aid]
        assert inc["path"] == "backup_broker"
        rows = deliveries(stack, inc["id"])
        assert [r["path"] for r in rows] == ["backup_broker"] and rows[0]["latency_ms"] >= 0


def test_the_same_alert_on_both_brokers_is_one_incident_acked_on_each(stack):
    creds = stack.add_device(DEV, *KAUMAN, kelurahan="Kauman")
    wait_until(lambda: all(b["connected"] for b in _health(stack)["brokers"]), 10, what="both brokers connected")
    on_primary = RawDevice(creds, stack.broker_port)
    on_backup = RawDevice(creds, stack.backup_port)
    try:
        on_primary.send(7)
        on_backup.publish(on_primary.sent[(1, 7)])  # the very same signed bytes
        a1, a2 = on_primary.ack(10), on_backup.ack(10)
        assert a1["id"] == a2["id"] == f"{DEV}:1:7" and a1["inc"] == a2["inc"] is not None
        # A copy that says it left over the modem is the cellular path, on either broker.
        on_backup.send(8, via="cellular")
        assert on_backup.ack(10)["stage"] == "received"
        with pytest.raises(queue.Empty):
            on_primary.acks.get(timeout=1)  # answers went only to the broker each copy came by
    finally:
        on_primary.close()
        on_backup.close()
    incs = {i["alert_id"]: i for i in stack.incidents()}
    assert len(incs) == 2
    rows = deliveries(stack, a1["inc"])
    assert sorted(r["path"] for r in rows) == ["backup_broker", "wifi"]
    detail = stack.get(f"/api/incidents/{a1['inc']}")
    # The incident keeps whichever copy was stored first (the two race); the API tells what the store holds.
    assert detail["path"] in ("wifi", "backup_broker") and detail["deliveries"] == rows
    assert incs[f"{DEV}:1:8"]["path"] == "cellular"
    m = stack.metrics()
    assert m['panic_deliveries_total{path="wifi"}'] == 1
    assert m['panic_deliveries_total{path="backup_broker"}'] == 1
    assert m['panic_deliveries_total{path="cellular"}'] == 1


def test_registry_changes_reach_both_brokers(stack):
    creds = stack.add_device(DEV, *KAUMAN, kelurahan="Kauman")
    for port in (stack.broker_port, stack.backup_port):
        assert not login_refused(creds, port)
    stack.cli("device", "suspend", DEV)
    assert login_refused(creds, stack.broker_port) and login_refused(creds, stack.backup_port)
    stack.cli("device", "resume", DEV)
    assert not login_refused(creds, stack.backup_port)
    rotated = json.loads(stack.cli("device", "rotate-secret", DEV, "--json").stdout)
    for port in (stack.broker_port, stack.backup_port):
        assert login_refused(creds, port) and not login_refused(rotated, port)
    stack.cli("device", "remove", DEV)
    assert login_refused(rotated, stack.broker_port) and login_refused(rotated, stack.backup_port)


def test_one_broker_down_during_a_sync_does_not_stop_the_other(stack):
    first = stack.add_device(DEV, *KAUMAN, kelurahan="Kauman")
    stack.kill_broker("backup")
    added = stack.cli("device", "add", "klj-kauman-rw05-rt04", "--lat6", str(KAUMAN[0]), "--lon6", str(KAUMAN[1]),
                      "--json")
    creds = json.loads(added.stdout)
    assert "primary broker reloaded" in added.stderr
    assert "backup broker files written (no running broker)" in added.stderr
    removed = stack.cli("device", "remove", DEV)
    assert "primary broker reloaded" in removed.stderr
    assert not login_refused(creds, stack.broker_port)
    # The backup reads the state written while it was down: it knows the new button and
    # no longer the removed one.
    stack.start_backup_broker()
    assert not login_refused(creds, stack.backup_port)
    assert login_refused(first, stack.backup_port)
    # The primary down: the backup still gets the change.
    stack.kill_broker("primary")
    suspended = stack.cli("device", "suspend", "klj-kauman-rw05-rt04")
    assert "backup broker reloaded" in suspended.stderr
    assert login_refused(creds, stack.backup_port)
    stack.start_broker()
    assert login_refused(creds, stack.broker_port)


def console_client(s: Stack) -> httpx.Client:
    env = dict(os.environ, PANIC_CONFIG=str(s.config))
    subprocess.run([str(BIN / "panic-gateway"), "user", "add", "ops", "--role", "operator", "--password-stdin"],
                   input="kata-sandi-uji-1\n", text=True, check=True, capture_output=True, env=env)
    c = httpx.Client(base_url=s.api, follow_redirects=True, timeout=10, cookies={"pbh_lang": "en"})
    m = re.search(r'name="csrf" value="([^"]+)"', c.get("/console/login").text)
    assert m, "no login form"
    c.post("/console/login", data={"csrf": m.group(1), "username": "ops", "password": "kata-sandi-uji-1"})
    return c


def test_console_shows_each_delivery_and_each_paths_last_proof(stack):
    creds = stack.add_device(DEV, *KAUMAN, kelurahan="Kauman")
    wait_until(lambda: all(b["connected"] for b in _health(stack)["brokers"]), 10, what="both brokers connected")
    on_primary = RawDevice(creds, stack.broker_port)
    on_backup = RawDevice(creds, stack.backup_port)
    status_topic = protocol.status_topic(DEV)
    try:
        on_primary.send(1)
        inc_id = on_primary.ack(10)["inc"]
        on_backup.publish(on_primary.sent[(1, 1)])
        on_backup.ack(10)
        before = stack.metrics().get('panic_status_rejected_total{reason="schema"}', 0.0)
        bad = {"v": 1, "dev": DEV, "state": "online", "cell": {"reg": "home", "csq": 40, "test": None}}
        on_backup.publish(json.dumps(bad).encode(), status_topic)
        wait_until(lambda: stack.metrics().get('panic_status_rejected_total{reason="schema"}', 0.0) == before + 1,
                   what="bad cell status counted")
        good = {"v": 1, "dev": DEV, "state": "online", "cell": {"reg": "roaming", "csq": 18, "test": 1764269000}}
        on_backup.publish(json.dumps(good).encode(), status_topic)
        h = wait_until(lambda: (h := _device_health(stack)).get("cell_reg") and h, what="cell status stored")
        assert (h["cell_reg"], h["cell_csq"], h["cell_test_ms"]) == ("roaming", 18, 1764269000_000)
    finally:
        on_primary.close()
        on_backup.close()
    c = console_client(stack)
    try:
        page = c.get(f"/console/incidents/{inc_id}").text
        rows = re.findall(r'<tr class="delivery path-([a-z_]+)">', page)
        assert rows == ["wifi", "backup_broker"]
        assert "WiFi, backup broker" in page
        devices = c.get("/console/devices").text
    finally:
        c.close()
    m = re.search(r'<td class="paths small">(.*?)</td>', devices, re.S)
    assert m, "no paths cell"
    cell = m.group(1)
    assert "Cellular:" in cell and "roaming" in cell and "CSQ 18" in cell and "test 28-11-2025 01:43:20" in cell  # WIB
    assert re.search(r'path-backup_broker">WiFi, backup broker: <span class="mono">\d\d-', cell)
    assert re.search(r'path-sms">SMS: <span class="mono">—', cell)


def _device_health(s: Stack) -> dict:
    return next(d for d in s.get("/api/devices")["devices"] if d["id"] == DEV)["health"]


def retained(port: int, cfg: config.Config, topic: str) -> queue.Queue:
    """Messages on `topic` from the broker on `port`, read with the gateway's login."""
    got: queue.Queue = queue.Queue()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{port}")
    c.username_pw_set(cfg.mqtt.username, cfg.mqtt.password)
    c.on_connect = lambda cl, u, f, r, p: cl.subscribe(topic, qos=1)
    c.on_message = lambda cl, u, m: got.put(json.loads(m.payload))
    c.connect("127.0.0.1", port)
    c.loop_start()
    got.client = c  # type: ignore[attr-defined]  # closed by the caller
    return got


def test_incident_state_is_retained_on_both_brokers_and_an_operators_ack_reaches_either(stack):
    creds = stack.add_device(DEV, *KAUMAN, kelurahan="Kauman")
    wait_until(lambda: all(b["connected"] for b in _health(stack)["brokers"]), 10, what="both brokers connected")
    button = RawDevice(creds, stack.backup_port)
    try:
        button.send(1)
        inc_id = button.ack(10)["inc"]
        cfg = config.load(stack.config)
        topic = protocol.incident_topic(inc_id)
        for port in (stack.broker_port, stack.backup_port):
            q = retained(port, cfg, topic)
            try:
                assert q.get(timeout=10)["id"] == inc_id
            finally:
                q.client.disconnect()  # type: ignore[attr-defined]
                q.client.loop_stop()  # type: ignore[attr-defined]
        # The desk acknowledges: the button hears it on the broker it is on (every broker is told).
        assert stack.post(f"/api/incidents/{inc_id}/acknowledge").status_code == 200
        assert button.ack(10)["stage"] == "acknowledged"
    finally:
        button.close()


def test_a_broker_that_refuses_the_change_is_named_and_broker_sync_catches_it_up(stack):
    creds = stack.add_device(DEV, *KAUMAN, kelurahan="Kauman")
    secret = stack.state / "broker-backup" / "broker-admin.secret"
    good = secret.read_text()
    secret.write_text("not-the-admin-password\n")  # the backup now refuses the admin login
    suspended = stack.cli("device", "suspend", DEV, check=False)
    assert suspended.returncode == 2, "a change one broker did not take is not reported as done"
    assert "backup broker NOT updated" in suspended.stderr and "primary broker reloaded" in suspended.stderr
    assert login_refused(creds, stack.broker_port)
    assert not login_refused(creds, stack.backup_port)  # the backup missed it...
    assert stack.cli("broker-sync", check=False).returncode == 1  # ...and broker-sync says so while it fails
    secret.write_text(good)
    assert stack.cli("broker-sync", check=False).returncode == 0
    assert login_refused(creds, stack.backup_port)
