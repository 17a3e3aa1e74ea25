"""The hostile corpus against the live gateway: each case rejected with its reason and
counted, nothing stored, and valid alerts served between every two cases."""
from __future__ import annotations

import queue

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway import config
from gateway.store import open_store
from tests.conftest import wait_until
from tests.devices import RawDevice
from tests.gateway.hostile import CASES


@pytest.fixture
def device(raw_device):
    return raw_device


def test_hostile_corpus(stack, device):
    valid_seq = 1000
    for name, reason, build in CASES:
        before = stack.rejected(reason)
        device.publish(build(device))
        wait_until(lambda reason=reason, before=before: stack.rejected(reason) == before + 1, 5, what=f"{name}: rejected as {reason}")
        valid_seq += 1
        device.send(seq=valid_seq)
        ack = device.ack()
        while ack["id"] != f"{device.dev}:1:{valid_seq}":  # a `rejected` ack for the hostile case
            assert ack["stage"] == "rejected", (name, ack)
            ack = device.ack()
        assert ack["stage"] == "received", name
    incidents = stack.incidents()
    # Past the per-button cap of open incidents, valid alerts are folded into the newest one.
    folded = stack.metrics().get("panic_alerts_folded_total", 0)
    assert len(incidents) + folded == len(CASES), "exactly the valid alerts became incidents (or were folded)"
    assert all(i["alert_id"].split(":")[2].startswith("10") for i in incidents)


def test_replayed_alert_is_acked_again_not_doubled(stack, device):
    payload = device.body(seq=5)
    from gateway import signing
    signed = signing.sign(payload, device.secret)
    device.publish(signed)
    first = device.ack()
    for _ in range(5):
        device.publish(signed)
        assert device.ack()["inc"] == first["inc"]
    assert len(stack.incidents()) == 1
    assert stack.metrics()["panic_alerts_duplicate_total"] == 5


def test_suspended_device_is_rejected(stack, device):
    store = open_store(config.load(stack.config))
    store.update_device(device.dev, status="suspended")
    store.close()
    device.send(seq=1)
    wait_until(lambda: stack.rejected("suspended") == 1, 5)
    assert stack.incidents() == []


def test_megabyte_payload_is_stopped_at_the_broker(stack, device):
    # mosquitto's max_packet_size drops the sender before the gateway sees a byte of it.
    gone: queue.Queue = queue.Queue()
    device.client.on_disconnect = lambda *a: gone.put(True)
    device.client.publish(f"panic/v1/{device.dev}/alert", b"x" * 1_000_000, qos=1)
    assert gone.get(timeout=5)
    other = RawDevice(stack.add_device("klj-kauman-rw05-rt04", -7982600, 112627000), stack.broker_port)
    try:
        other.send(seq=1)
        assert other.ack()["stage"] == "received"
    finally:
        other.close()


def test_anonymous_and_wrong_password_are_refused(stack, device):
    for user, password in [(None, None), (device.dev, "wrong"), ("gateway", "wrong")]:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"intruder-{user}")
        if user:
            c.username_pw_set(user, password)
        result: queue.Queue = queue.Queue()
        c.on_connect = lambda cl, u, f, rc, p, result=result: result.put(rc)
        c.connect("127.0.0.1", stack.broker_port)
        c.loop_start()
        try:
            assert result.get(timeout=5).is_failure
        finally:
            c.loop_stop()
