"""The gateway's lean publish connection (gateway/transport/publisher.py) against the
project's mosquitto: a batch in one write reaches buttons, a button that was away gets its ack
from its session, and what the broker had not confirmed when it went away (or was published
while it was down) is written again once it is back."""
from __future__ import annotations

import queue
import tomllib

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.transport import publisher as publisher_mod
from gateway.transport.publisher import Publisher
from simulator.stack import Stack
from tests.conftest import wait_until
from tests.gateway.test_gateway_support import KAUMAN

DEV = "klj-kauman-rw05-rt03"


def gateway_publisher(broker: Stack) -> Publisher:
    mq = tomllib.loads(broker.config.read_text())["mqtt"]
    return Publisher(host="127.0.0.1", port=broker.broker_port, client_id="gw-pub-test", username=mq["username"],
                     password=mq["password"], keepalive=2)


def subscriber(broker: Stack, creds: dict, topic: str, got: queue.Queue, *, session: bool) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=creds["id"], clean_session=not session)
    c.username_pw_set(creds["mqtt_username"], creds["mqtt_password"])
    c.on_message = lambda cl, u, m: got.put((m.payload, m.qos, m.retain))
    c.on_connect = lambda cl, u, flags, reason, props: cl.subscribe(topic, qos=1)
    c.connect("127.0.0.1", broker.broker_port)
    c.loop_start()
    wait_until(c.is_connected, what="the subscriber")
    return c


def test_acks_in_one_write_reach_a_button_even_one_that_was_away(broker):
    """QoS 1: a button with a persistent session that is away when its ack is written gets it
    when it comes back (docs/protocol.md)."""
    creds = broker.add_device(DEV, *KAUMAN)
    topic = f"panic/v1/{DEV}/ack"
    got: queue.Queue = queue.Queue()
    w = gateway_publisher(broker)
    w.start()
    c = subscriber(broker, creds, topic, got, session=True)
    try:
        wait_until(w.connected.is_set, what="the publish connection")
        sent = w.publish_many([(topic, b"ack-%d" % i) for i in range(50)])
        assert [got.get(timeout=10) for _ in range(50)] == [(b"ack-%d" % i, 1, False) for i in range(50)]
        wait_until(lambda: all(p.is_published() for p in sent), what="every PUBACK read")
        assert w.unconfirmed() == 0
        c.disconnect()
        c.loop_stop()
        w.publish_many([(topic, b"while away")])[0].wait_for_publish(5)
        assert not w._stop.wait(3.5) and w.connected.is_set()  # pings keep it up past 1.5 x keepalive
        c = subscriber(broker, creds, topic, got, session=True)
        assert got.get(timeout=10) == (b"while away", 1, False)
    finally:
        w.stop()
        c.disconnect()
        c.loop_stop()


def test_what_the_broker_did_not_confirm_is_written_again_when_it_is_back(broker):
    """A retained incident state published while the broker is down is not lost: it waits
    (unconfirmed) and is written once the connection is back; a late reader finds it."""
    w = gateway_publisher(broker)
    w.start()
    try:
        wait_until(w.connected.is_set, what="the publish connection")
        first = w.publish("panic/v1/incidents/INC-1", '{"state":"new"}', retain=True)
        first.wait_for_publish(5)
        assert first.is_published()
        broker.stop_broker()
        wait_until(lambda: not w.connected.is_set(), what="the publisher saw the broker go")
        down = w.publish("panic/v1/incidents/INC-1", '{"state":"dispatched"}', retain=True)
        down.wait_for_publish(0.5)
        assert not down.is_published() and w.unconfirmed() == 1
        broker.start_broker()
        down.wait_for_publish(20)
        assert down.is_published() and w.unconfirmed() == 0
        got: queue.Queue = queue.Queue()
        mq = tomllib.loads(broker.config.read_text())["mqtt"]
        reader = {"id": "late-dispatch-reader", "mqtt_username": mq["username"], "mqtt_password": mq["password"]}
        c = subscriber(broker, reader, "panic/v1/incidents/#", got, session=False)
        assert got.get(timeout=10) == (b'{"state":"dispatched"}', 1, True)
        c.disconnect()
        c.loop_stop()
    finally:
        w.stop()


def test_a_broker_away_for_long_does_not_grow_the_gateway_without_bound(monkeypatch):
    """Past MAX_UNCONFIRMED the oldest are given up and counted: their owners send again."""
    from gateway import metrics
    monkeypatch.setattr(publisher_mod, "MAX_UNCONFIRMED", 100)
    w = Publisher(host="127.0.0.1", port=1, client_id="x", username="", password="")
    before = metrics.publishes_dropped._value.get()
    kept = w.publish_many([("panic/v1/x/ack", b"%d" % i) for i in range(150)])
    assert w.unconfirmed() == 100 and metrics.publishes_dropped._value.get() - before == 50
    assert list(w._unconfirmed.values()) == kept[50:]
    assert w.publish("panic/v1/ops/x", "q0", qos=0).is_published()  # QoS 0: nothing to confirm
