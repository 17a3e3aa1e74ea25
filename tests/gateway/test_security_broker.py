"""Attacks on the broker by a holder of one button's credentials (docs/security.md, rows 2 and 14):
real paho clients against mosquitto running the generated config, with the real gateway."""
from __future__ import annotations

import json
import os
import pwd
import queue
import shutil
import tempfile
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway import config
from tests.conftest import wait_until
from tests.devices import RawDevice
from tests.gateway.test_gateway_support import close, custom_stack, device, login

ROOT = "panic/v1"


@pytest.fixture
def stack_and_buttons(tmp_path):
    s = custom_stack(tmp_path / "state")
    victim, victim_creds = device(s, "klj-kauman-rw05-rt03")
    thief, thief_creds = device(s, "klj-kauman-rw05-rt04")
    yield s, victim, thief, victim_creds, thief_creds
    victim.close()
    thief.close()
    s.down()


def _client(creds: dict, client_id: str) -> tuple[mqtt.Client, queue.Queue]:
    events: queue.Queue = queue.Queue()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.username_pw_set(creds["mqtt_username"], creds["mqtt_password"])
    c.on_connect = lambda cl, u, flags, reason, props: events.put(("connect", reason))
    c.on_subscribe = lambda cl, u, mid, codes, props: events.put(("subscribe", codes))
    c.on_message = lambda cl, u, m: events.put(("message", m.topic))
    return c, events


def test_a_device_cannot_subscribe_outside_its_own_ack_nor_steal_alerts(stack_and_buttons):
    s, victim, thief, _victim_creds, _thief_creds = stack_and_buttons
    gw = config.load(s.config).mqtt
    stolen: list[str] = []
    thief.client.on_message = lambda c, u, m: stolen.append(m.topic)
    for topic in (f"$share/{gw.group}/{ROOT}/+/alert", f"$share/other/{ROOT}/+/alert", f"{ROOT}/+/alert",
                  f"{ROOT}/{victim.dev}/ack", f"{ROOT}/incidents/#", "#", "$CONTROL/dynamic-security/#"):
        [code] = thief.subscribe(topic)
        assert code.is_failure, f"the broker granted {topic} to a device"
    # Its own ack topic it may have (RawDevice subscribed it at connect).
    [own] = thief.subscribe(f"{ROOT}/{thief.dev}/ack")
    assert not own.is_failure
    # Every one of the victim's alerts reaches the gateway (4 attacker joins of the share
    # group took 8 of 10 before).
    for seq in range(1, 11):
        victim.send(seq=seq)
    got = {victim.ack(timeout=10)["id"] for _ in range(10)}
    assert got == {f"{victim.dev}:1:{seq}" for seq in range(1, 11)}
    assert stolen == []


def test_a_device_cannot_take_the_gateways_or_another_devices_client_id(stack_and_buttons):
    s, victim, _thief, _victim_creds, thief_creds = stack_and_buttons
    gw = config.load(s.config).mqtt
    for client_id in (gw.client_id, victim.dev, "panic-broker-admin"):
        c, events = _client(thief_creds, client_id)
        c.connect("127.0.0.1", s.broker_port)
        c.loop_start()
        try:
            kind, reason = events.get(timeout=5)
            assert kind == "connect" and reason.is_failure, f"a device logged in as client {client_id}"
        finally:
            close(c)
    # Nobody was kicked: the gateway stays connected and the victim's session still works.
    assert s.metrics()["panic_mqtt_connected"] == 1
    assert victim.client.is_connected()
    victim.send(seq=1)
    assert victim.ack()["stage"] == "received"


def test_the_gateways_login_is_not_a_devices_and_a_devices_only_is_its_own(stack_and_buttons):
    s, victim, thief, _victim_creds, thief_creds = stack_and_buttons
    gw = config.load(s.config).mqtt
    # The gateway's password under a device's name, and a device's password under the
    # gateway's name or the broker admin's, are all refused.
    for username, password in ((victim.dev, gw.password), (gw.username, thief_creds["mqtt_password"]),
                               ("panic-broker-admin", thief_creds["mqtt_password"])):
        reason, c = login(s.broker_port, username, password)
        close(c)
        assert reason is not None and reason.is_failure
    # A device cannot register a new device id: the registry refuses the broker's names.
    assert s.cli("device", "add", "panic-broker-admin", "--lat6", "0", "--lon6", "0", check=False).returncode != 0
    # Publishing on another device's alert topic never reaches the gateway.
    before = s.metrics().get("panic_alerts_received_total", 0)
    thief.publish(b"forged", topic=f"{ROOT}/{victim.dev}/alert")
    victim.send(seq=5)
    assert victim.ack()["id"] == f"{victim.dev}:1:5"
    assert s.metrics()["panic_alerts_received_total"] == before + 1


def test_one_connection_per_device_login(stack_and_buttons):
    """The client id is bound to the login: a second connection under another client id is
    refused, and one under the device's own id replaces the first (its own session) rather
    than adding one more."""
    s, _, thief, _victim_creds, thief_creds = stack_and_buttons
    extra, events = _client(thief_creds, thief.dev + "-2")
    extra.connect("127.0.0.1", s.broker_port)
    extra.loop_start()
    try:
        kind, reason = events.get(timeout=5)
        assert kind == "connect" and reason.is_failure
    finally:
        close(extra)
    second = RawDevice(thief_creds, s.broker_port)
    try:
        wait_until(lambda: not thief.client.is_connected(), timeout=5, what="the first connection replaced")
        assert second.client.is_connected()
    finally:
        second.close()


def _mosquitto_pid(state: Path) -> int:
    return int((state / "broker" / "mosquitto.pid").read_text().strip())


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])  # the real uid
    raise AssertionError("no Uid line")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can drop to another user")
def test_started_as_root_the_broker_runs_as_mosquitto_and_still_serves(tmp_path):
    try:
        account = pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no mosquitto account on this host")
    # pytest's own tmp folders are root-only; a state folder a service account can reach:
    base = Path(tempfile.mkdtemp(prefix="panic-sec-"))
    os.chmod(base, 0o755)
    try:
        s = custom_stack(base / "state", start=False)
        tls_port = s.broker_tls_port()
        conf = (s.state / "broker" / "mosquitto.conf").read_text()
        assert "user mosquitto" in conf
        s.start_broker()
        s.start_gateway()
        try:
            assert _uid_of(_mosquitto_pid(s.state)) == account.pw_uid
            assert f"listener {tls_port} 127.0.0.1" in conf  # explicit, loopback unless configured
            d, _ = device(s)
            try:
                d.send(seq=1)
                assert d.ack()["stage"] == "received"
            finally:
                d.close()
            # The folder and the config stay root's: the broker's account cannot change how
            # it is started next time.
            broker_dir = s.state / "broker"
            assert broker_dir.stat().st_uid == 0 and (broker_dir / "mosquitto.conf").stat().st_uid == 0
            admin = (broker_dir / "broker-admin.secret").stat()
            assert admin.st_uid == 0 and admin.st_mode & 0o077 == 0
        finally:
            s.down()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_broker_folder_the_service_account_cannot_reach_keeps_the_owner_and_says_why(tmp_path):
    s = custom_stack(tmp_path / "state", start=False)
    conf = (s.state / "broker" / "mosquitto.conf").read_text()
    if os.geteuid() == 0:
        # pytest's tmp folders are 0700 root: mosquitto could not read its own files.
        assert "user root" in conf and "# runs as root:" in conf and "not reachable" in conf
    else:
        assert f"user {pwd.getpwuid(os.geteuid()).pw_name}" in conf


def test_registry_changes_reach_a_running_broker_without_a_restart(stack_and_buttons):
    s, victim, thief, victim_creds, thief_creds = stack_and_buttons
    text = (s.state / "broker" / "run" / "dynamic-security.json").read_text()
    users = {c["username"]: c for c in json.loads(text)["clients"]}
    assert users[victim.dev]["clientid"] == victim.dev
    assert victim_creds["mqtt_password"] not in text  # only salted hashes
    assert (s.state / "broker" / "run").stat().st_mode & 0o077 == 0  # the broker rewrites it with its umask
    s.cli("device", "remove", thief.dev)
    wait_until(lambda: not thief.client.is_connected(), timeout=5, what="the removed device disconnected")
    reason, c = login(s.broker_port, thief.dev, thief_creds["mqtt_password"])
    close(c)
    assert reason.is_failure
