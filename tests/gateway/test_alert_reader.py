"""The gateway's lean alert connection (gateway/transport/alert_reader.py) against the
project's mosquitto: an alert is PUBACKed only when ingest says it is stored, the broker keeps
at most Receive Maximum unacked alerts in flight to it, a PUBACK never crosses to a newer
connection, and an MQTT 5 PUBLISH's properties are skipped."""
from __future__ import annotations

import queue
import tomllib

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.transport.alert_reader import AlertReader
from gateway.transport.lean import publish_parts
from simulator.stack import Stack
from tests.conftest import wait_until
from tests.gateway.test_gateway_support import KAUMAN

DEV = "klj-kauman-rw05-rt03"
TOPIC = f"panic/v1/{DEV}/alert"


def reader(broker: Stack, got: queue.Queue, receive_maximum: int = 1024) -> AlertReader:
    mq = tomllib.loads(broker.config.read_text())["mqtt"]
    return AlertReader(host="127.0.0.1", port=broker.broker_port, client_id="gw-alerts-test", username=mq["username"],
                       password=mq["password"], keepalive=5, topic="$share/gateways/panic/v1/+/alert",
                       unsubscribe="panic/v1/+/status", receive_maximum=receive_maximum,
                       on_alert=lambda *a: got.put(a))


def button(broker: Stack) -> mqtt.Client:
    creds = broker.add_device(DEV, *KAUMAN)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=creds["id"])
    c.username_pw_set(creds["mqtt_username"], creds["mqtt_password"])
    c.connect("127.0.0.1", broker.broker_port)
    c.loop_start()
    return c


def restart(r: AlertReader) -> None:
    """Drop the connection (as a network cut would) and wait for the next one."""
    gen = r.generation
    sock = r._sock
    assert sock is not None
    sock.shutdown(2)
    wait_until(lambda: r.generation > gen and r.connected.is_set(), timeout=15, what="the reader reconnected")


def drain(got: queue.Queue, timeout: float = 1.0) -> list:
    out = []
    while True:
        try:
            out.append(got.get(timeout=timeout))
        except queue.Empty:
            return out


def test_an_alert_is_settled_only_by_ack_and_only_on_its_own_connection(broker):
    got: queue.Queue = queue.Queue()
    r = reader(broker, got)
    b = button(broker)
    r.start()
    try:
        wait_until(r.connected.is_set, what="the alert connection")
        b.publish(TOPIC, b"press-1", qos=1).wait_for_publish(5)
        topic, payload, qos, retain, pid, gen = got.get(timeout=10)
        assert (topic, payload, qos, retain, gen) == (TOPIC, b"press-1", 1, False, r.generation)
        # Not acked: the session hands it to the next connection, with its packet id.
        restart(r)
        again = got.get(timeout=10)
        assert again[:2] == (TOPIC, b"press-1") and again[4] == pid and again[5] == r.generation > gen
        # A PUBACK for the old connection's copy is not written on this one: it comes again.
        r.ack([pid], gen)
        restart(r)
        third = got.get(timeout=10)
        assert third[:2] == (TOPIC, b"press-1")
        # Acked on its own connection: settled, not sent again.
        r.ack([third[4]], third[5])
        restart(r)
        assert drain(got) == []
    finally:
        r.stop()
        b.disconnect()
        b.loop_stop()


def test_the_broker_keeps_at_most_receive_maximum_unacked_alerts_in_flight(broker):
    got: queue.Queue = queue.Queue()
    r = reader(broker, got, receive_maximum=20)
    b = button(broker)
    r.start()
    try:
        wait_until(r.connected.is_set, what="the alert connection")
        for i in range(50):
            b.publish(TOPIC, b"press-%d" % i, qos=1).wait_for_publish(5)
        first = drain(got)
        assert [m[1] for m in first] == [b"press-%d" % i for i in range(20)]
        r.ack([m[4] for m in first], first[0][5])  # one write for the batch: the rest come
        rest = drain(got)
        assert [m[1] for m in rest] == [b"press-%d" % i for i in range(20, 50)]
    finally:
        r.stop()
        b.disconnect()
        b.loop_stop()


def test_an_mqtt5_publish_has_its_properties_skipped():
    # topic, packet id 9, properties (message expiry 60 s, a user property), payload
    props = b"\x02\x00\x00\x00\x3c" + b"\x26\x00\x01k\x00\x01v"
    body = b"\x00\x05a/b/c" + b"\x00\x09" + bytes((len(props),)) + props + b"payload"
    assert publish_parts(0x32, body, v5=True) == ("a/b/c", b"payload", False, 1, 9)
    assert publish_parts(0x31, b"\x00\x01t\x00{}", v5=True) == ("t", b"{}", True, 0, 0)
