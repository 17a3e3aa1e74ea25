"""The gateway on a real three-node NATS cluster (PostgreSQL store): an MQTT alert on any
node becomes one incident and its signed `received` ack, a retransmission no second one;
the incident's state is kept for late readers; a device's login reaches only its own
subjects; a suspended device is disconnected on reload."""
from __future__ import annotations

import asyncio
import json
import queue

import nats
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.transport.nats import STATE_BUCKET
from tests.conftest import wait_until
from tests.devices import RawDevice
from tests.gateway.test_gateway_support import KAUMAN, pg_dsn  # noqa: F401 (fixture)
from tests.gateway.test_nats_support import nats_stack


@pytest.fixture
def cluster_stack(tmp_path, pg_dsn):  # noqa: F811
    s, cluster = nats_stack(tmp_path / "state", pg_dsn)
    try:
        yield s, cluster
    finally:
        s.down()
        cluster.down()


async def _kv_get(servers: list[str], user: str, password: str, key: str) -> bytes | None:
    nc = await nats.connect(servers=servers, user=user, password=password)
    try:
        kv = await nc.jetstream().key_value(STATE_BUCKET)
        return (await kv.get(key)).value
    finally:
        await nc.close()


def test_alert_on_any_node_is_one_incident_and_acked(cluster_stack):
    s, cluster = cluster_stack
    s.start_gateway()
    creds = s.add_device("klj-kauman-rw05-rt03", *KAUMAN, kelurahan="Kauman")
    # `device config` names every node, so the button fails over by itself.
    assert [(b["host"], b["port"]) for b in creds["config"]["brokers"]] == \
        [("127.0.0.1", n.mqtt_port) for n in cluster.nodes]
    devs = [RawDevice(creds, cluster.nodes[0].mqtt_port)]
    try:
        devs[0].send(seq=1)
        ack = devs[0].ack(timeout=15)
        assert ack["stage"] == "received" and ack["inc"]
        devs[0].close()
        # The same button on another node: a retransmission makes no second incident.
        devs.append(RawDevice(creds, cluster.nodes[2].mqtt_port))
        devs[1].sent = devs[0].sent
        devs[1].resend(1)
        again = devs[1].ack(timeout=15)
        assert again["id"] == ack["id"] and again["inc"] == ack["inc"]
        assert [i["alert_id"] for i in s.incidents()] == [ack["id"]]
        # The incident topic's latest state, for a dispatch system that connects late.
        wait_until(lambda: asyncio.run(_kv_get(cluster.cfg.nats.servers, "gateway", cluster.cfg.mqtt.password,
                                                f"incidents.{ack['inc']}")) is not None, timeout=15)
        state = json.loads(asyncio.run(_kv_get(cluster.cfg.nats.servers, "gateway", cluster.cfg.mqtt.password,
                                                f"incidents.{ack['inc']}")) or b"null")
        assert state["id"] == ack["inc"] and state["alert_id"] == ack["id"]
    finally:
        devs[-1].close()


def test_retained_status_and_will_reach_the_gateway(cluster_stack):
    s, cluster = cluster_stack
    creds = s.add_device("klj-kauman-rw05-rt03", *KAUMAN, kelurahan="Kauman")
    dev = creds["id"]
    topic = f"panic/v1/{dev}/status"
    button = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=dev)
    button.username_pw_set(creds["mqtt_username"], creds["mqtt_password"])
    button.will_set(topic, json.dumps({"v": 1, "dev": dev, "state": "offline"}), qos=1, retain=True)
    button.connect("127.0.0.1", cluster.nodes[1].mqtt_port, keepalive=5)
    button.loop_start()
    try:
        wait_until(button.is_connected, timeout=30, what="the button's MQTT session")
        birth = {"v": 1, "dev": dev, "state": "online", "fw": "1.0.0", "boot": 3, "up": 10, "batt": 87,
                 "rssi": -61, "outbox": 0}
        button.publish(topic, json.dumps(birth), qos=1, retain=True).wait_for_publish(10)
        # The gateway starts after the birth: it learns it from the retained stream.
        s.start_gateway()
        health = lambda: s.get(f"/api/devices/{dev}")["health"]["health"]  # noqa: E731
        wait_until(lambda: health() == "online", timeout=20, what="the retained birth read")
        # Power cut (no DISCONNECT): the node publishes the will, the gateway hears it live.
        button.loop_stop()
        sock = button.socket()
        assert sock is not None
        sock.close()
        wait_until(lambda: health() == "offline", timeout=30, what="the will")
    finally:
        button.loop_stop()


def _mqtt(port: int, creds: dict, client_id: str | None = None):
    got: queue.Queue = queue.Queue()
    connack: queue.Queue = queue.Queue()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or creds["id"])
    c.username_pw_set(creds["mqtt_username"], creds["mqtt_password"])
    c.on_connect = lambda cl, u, f, reason, p: connack.put(reason)
    c.on_message = lambda cl, u, m: got.put((m.topic, bytes(m.payload)))
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert not connack.get(timeout=10).is_failure
    return c, got


def test_device_login_reaches_only_its_own_subjects(cluster_stack):
    s, cluster = cluster_stack
    s.start_gateway()
    victim = s.add_device("klj-kauman-rw05-rt03", *KAUMAN, kelurahan="Kauman")
    thief = s.add_device("klj-kauman-rw05-rt04", *KAUMAN, kelurahan="Kauman")
    port = cluster.nodes[1].mqtt_port
    v = RawDevice(victim, port)
    t, stolen = _mqtt(port, thief)
    try:
        t.subscribe(f"panic/v1/{victim['id']}/ack", qos=1)
        t.subscribe("panic/v1/+/ack", qos=1)
        t.subscribe("#", qos=0)
        # An alert signed with the victim's secret but sent by the thief's login: refused by NATS.
        forged = RawDevice.__new__(RawDevice)
        forged.dev, forged.secret, forged.root, forged.sent, forged.client = \
            victim["id"], victim["secret"], "panic/v1", {}, t
        forged.send(seq=7)
        v.send(seq=1)
        assert v.ack(timeout=15)["stage"] == "received"
        assert [i["alert_id"] for i in s.incidents()] == [f"{victim['id']}:1:1"]
        assert stolen.empty(), "the thief read another device's traffic"
    finally:
        t.disconnect()
        t.loop_stop()
        v.close()

    # A device login speaks MQTT only: the NATS protocol refuses it outright.
    async def nats_login() -> None:
        nc = await nats.connect(servers=[cluster.nodes[0].url], user=thief["mqtt_username"],
                                password=thief["mqtt_password"], allow_reconnect=False, connect_timeout=3)
        await nc.close()

    with pytest.raises(nats.errors.Error, match=r"[Aa]uthoriz|[Nn]o servers"):
        asyncio.run(nats_login())

    # Suspension revokes the login on every node at once (reload, no restart).
    t, _ = _mqtt(cluster.nodes[2].mqtt_port, thief)
    try:
        s.cli("device", "suspend", thief["id"])
        wait_until(lambda: not t.is_connected(), timeout=10, what="the suspended device disconnected")
    finally:
        t.loop_stop()
