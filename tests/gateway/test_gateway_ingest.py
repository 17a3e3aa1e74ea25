"""The gateway against a real broker: valid alerts become one incident each, hostile
ones are rejected with a named, counted reason, and service goes on."""
from __future__ import annotations

import hashlib
import hmac
import json
import queue

import pytest

from gateway import broker, config, signing
from gateway.models import Device
from gateway.store import open_store
from tests.conftest import wait_until
from tests.devices import RawDevice


@pytest.fixture
def device(raw_device):
    return raw_device


def test_alert_becomes_incident_ack_and_webhook(stack, device):
    device.send(seq=1)
    ack = device.ack()
    assert ack["stage"] == "received" and ack["id"] == f"{device.dev}:1:1" and ack["inc"].startswith("inc-")
    incidents = stack.incidents()
    assert [i["id"] for i in incidents] == [ack["inc"]]
    inc = stack.get(f"/api/incidents/{ack['inc']}")
    assert inc["lat6"] == -7982600 and inc["lon6"] == 112627000 and inc["device"]["kelurahan"] == "Kauman"
    assert inc["latency_ms"]["press_to_received"] >= 0
    posts = stack.webhook.wait(1)
    assert len(posts) == 1
    post = posts[0]
    assert post["json"]["incident"]["id"] == ack["inc"]
    assert post["json"]["incident"]["lat6"] == -7982600
    assert post["headers"]["Idempotency-Key"] == f"{ack['inc']}:new"
    secret = config.load(stack.config).webhooks[0].secret
    expected = "sha256=" + hmac.new(secret.encode(), post["raw"], hashlib.sha256).hexdigest()
    assert post["headers"]["X-Panic-Signature"] == expected
    forged = "sha256=" + hmac.new(b"some-other-secret", post["raw"], hashlib.sha256).hexdigest()
    assert not hmac.compare_digest(post["headers"]["X-Panic-Signature"], forged)


def test_duplicate_delivery_makes_one_incident(stack, device):
    body = device.body(seq=7)
    payload = signing.sign(body, device.secret)
    device.publish(payload)
    first = device.ack()
    device.publish(payload)
    second = device.ack()
    assert first["inc"] == second["inc"] and second["stage"] == "received"
    assert len(stack.incidents()) == 1
    assert stack.metrics()["panic_alerts_duplicate_total"] == 1
    assert len(stack.webhook.wait(1)) == 1


def test_forged_ack_would_not_verify(device):
    # The ack check in RawDevice.ack is what makes the other tests meaningful.
    body = b'{"v":1,"id":"x","stage":"received"}'
    assert not signing.verify(body, signing.mac(body, "other-secret").encode(), device.secret)


@pytest.mark.parametrize("reason, make", [
    ("mac", lambda d: d.body(seq=2) + b"\n" + b"0" * 64),
    ("format", lambda d: d.body(seq=2)),
    ("json", lambda d: signing.sign(b'{"v":1,"dev":', d.secret)),
    ("json", lambda d: signing.sign(b"\xff\xfe not utf-8", d.secret)),
    ("json", lambda d: signing.sign(d.body(seq=2).replace(b'"acc": 25', b'"acc": NaN'), d.secret)),
    ("size", lambda d: signing.sign(d.body(seq=2, pad="x" * 2000), d.secret)),
    ("dev_mismatch", lambda d: signing.sign(d.body(seq=2, dev="klj-other-rw01-rt01"), d.secret)),
    ("schema", lambda d: signing.sign(d.body(seq=2, lat6="south"), d.secret)),
    ("schema", lambda d: signing.sign(d.body(seq=2, kind="party"), d.secret)),
    ("stale", lambda d: signing.sign(d.body(seq=2, t=1_000_000), d.secret)),
])
def test_bad_input_is_rejected_counted_and_service_goes_on(stack, device, reason, make):
    before = stack.rejected(reason)
    device.publish(make(device))
    wait_until(lambda: stack.rejected(reason) == before + 1)
    assert stack.incidents() == []
    if reason in ("schema", "stale"):
        # The device's MAC verified: it is told to stop retransmitting what can never be accepted.
        assert device.ack()["stage"] == "rejected"
    device.send(seq=3)
    assert device.ack()["stage"] == "received"
    assert len(stack.incidents()) == 1


def test_unknown_device_is_rejected(stack, device, tmp_path):
    # A login the broker knows but the registry does not (e.g. a registry restored from an
    # old backup): the gateway must not trust the broker's word alone.
    cfg = config.load(stack.config)
    ghost_login = Device(id="klj-ghost-rw01-rt01", secret="s" * 64, mqtt_password="ghostpw")
    assert broker.sync(cfg, [*open_store(cfg).list_devices(), ghost_login])
    ghost = RawDevice({"id": "klj-ghost-rw01-rt01", "secret": "s" * 64, "mqtt_username": "klj-ghost-rw01-rt01",
                       "mqtt_password": "ghostpw"}, stack.broker_port)
    try:
        ghost.send(seq=1)
        wait_until(lambda: stack.rejected("unknown_device") == 1)
        with pytest.raises(queue.Empty):
            ghost.acks.get(timeout=0.3)
    finally:
        ghost.close()
    assert stack.incidents() == []


def test_acl_keeps_devices_apart(stack, device):
    other = stack.add_device("klj-kauman-rw05-rt04", -7982700, 112627100)
    b = RawDevice(other, stack.broker_port, subscribe_ack=False)
    try:
        # B may not read A's acks, nor anything else (mosquitto grants the SUBACK but
        # delivers nothing the ACL denies, so the proof is what arrives).
        for topic in (f"panic/v1/{device.dev}/ack", "panic/v1/+/ack", "#"):
            b.subscribe(topic)
        # B publishing on A's alert topic never reaches the gateway.
        b.publish(signing.sign(device.body(seq=9), device.secret), topic=f"panic/v1/{device.dev}/alert")
        device.send(seq=10)
        assert device.ack()["id"] == f"{device.dev}:1:10"
        assert [i["alert_id"] for i in stack.incidents()] == [f"{device.dev}:1:10"]
        with pytest.raises(queue.Empty):
            b.acks.get(timeout=0.5)
    finally:
        b.close()


def test_api_needs_a_token(stack):
    import httpx
    assert httpx.get(stack.api + "/api/incidents").status_code == 401
    assert httpx.get(stack.api + "/api/incidents", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert httpx.get(stack.api + "/healthz").json()["ok"] is True
    assert stack.get("/api/incidents", role="viewer") == {"incidents": []}


def test_retained_incident_topic(stack, device):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    device.send(seq=1)
    inc = device.ack()["inc"]
    cfg = config.load(stack.config)
    got: queue.Queue = queue.Queue()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="dispatch-reader")
    c.username_pw_set(cfg.mqtt.username, cfg.mqtt.password)
    c.on_message = lambda cl, u, m: got.put((m.topic, m.retain, json.loads(m.payload)))
    c.connect("127.0.0.1", stack.broker_port)
    c.loop_start()
    try:
        wait_until(lambda: stack.get("/api/forwards")["sinks"][0]["delivered"] >= 1)
        c.subscribe("panic/v1/incidents/#", qos=1)
        topic, retain, body = got.get(timeout=5)
        assert topic == f"panic/v1/incidents/{inc}" and retain and body["state"] == "new"
    finally:
        c.disconnect()
        c.loop_stop()
