"""protocol/vectors.json under CPython: the host module signs the shared bodies to exactly
the shared payloads, builds the same alert/status bodies as the firmware's inputs call
for, and accepts and rejects the same acks with the same reasons. The same file runs
against the firmware under micropython (tests/firmware/mp_test_vectors.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import protocol
from gateway.models import Alert, Device
from gateway.validate import check_alert

ROOT = Path(__file__).resolve().parents[2]
V = json.loads((ROOT / "protocol" / "vectors.json").read_text())
SECRET = V["secret"]


def _payload(vec: dict) -> bytes:
    return bytes.fromhex(vec["payload_hex"]) if "payload_hex" in vec else vec["payload"].encode("latin-1")


def _host_alert_fields(vec: dict) -> dict:
    """The firmware's inputs (record, age, batt, rssi, fixed location) as host keyword arguments."""
    rec, loc = vec["rec"], vec["loc"]
    gps = "lat6" in rec
    return dict(dev=vec["dev"], boot=rec["boot"], seq=rec["seq"], kind=rec["kind"], t=rec["t"], age=vec["age"],
                lat6=rec["lat6"] if gps else loc[0], lon6=rec["lon6"] if gps else loc[1],
                acc=rec["acc"] if gps else loc[2], src="gps" if gps else "fixed", batt=vec["batt"],
                rssi=vec["rssi"], ref=rec.get("ref"))


def test_constants_match():
    assert V["max_payload"] == protocol.MAX_PAYLOAD
    assert V["topic_root"] == protocol.TOPIC_ROOT
    assert V["stage_rank"] == protocol.STAGE_RANK
    assert set(protocol.STAGES) == set(V["stage_rank"])
    assert V["config_defaults"] == protocol.DEVICE_DEFAULTS


def test_topics():
    dev = V["alerts"][0]["dev"]
    assert protocol.alert_topic(dev) == V["topics"]["alert"]
    assert protocol.ack_topic(dev) == V["topics"]["ack"]
    assert protocol.status_topic(dev) == V["topics"]["status"]
    assert protocol.topic_device(V["topics"]["alert"], "alert") == dev
    assert protocol.topic_device(V["topics"]["ack"], "alert") is None


@pytest.mark.parametrize("vec", V["alerts"], ids=lambda v: v["name"])
def test_alert_body_and_signature(vec):
    body = protocol.alert_body(**_host_alert_fields(vec))
    assert body == vec["body"].encode()
    assert protocol.sign(body, SECRET) == vec["payload"].encode()
    assert protocol.split(vec["payload"].encode()) == (body, vec["payload"].encode()[-64:])


@pytest.mark.parametrize("vec", V["alerts"], ids=lambda v: v["name"])
def test_gateway_accepts_the_alert_vectors(vec):
    dev = vec["dev"]
    registry = {dev: Device(id=dev, secret=SECRET, mqtt_password="x")}
    now = (vec["rec"]["t"] or 1_764_269_000_000) + vec["age"]
    got = check_alert(protocol.alert_topic(dev), vec["payload"].encode(), root=protocol.TOPIC_ROOT,
                      max_payload=protocol.MAX_PAYLOAD, device=registry.get, now_ms=now,
                      stale_past_ms=86_400_000, stale_future_ms=300_000)
    assert isinstance(got, Alert), got
    assert (got.id, got.kind, got.ref) == (vec["rec"]["id"], vec["rec"]["kind"], vec["rec"].get("ref"))


def test_status_and_will_bodies():
    s = V["status"]
    body = protocol.status_body(dev=s["dev"], state=s["state"], fw=s["fw"], boot=s["boot"], up=s["up"],
                                batt=s["batt"], rssi=s["rssi"], outbox=s["outbox"])
    assert json.loads(body) == s["expect"]
    assert json.loads(protocol.will_body(V["will"]["dev"])) == V["will"]["expect"]


@pytest.mark.parametrize("vec", V["acks_accept"], ids=lambda v: v["name"])
def test_acks_accepted(vec):
    reason, ack = protocol.parse_ack(_payload(vec), SECRET)
    assert reason is None and ack is not None
    assert (ack["id"], ack["stage"]) == (vec["id"], vec["stage"])


@pytest.mark.parametrize("vec", V["acks_reject"], ids=lambda v: v["name"])
def test_acks_rejected_with_the_firmware_reason(vec):
    assert protocol.parse_ack(_payload(vec), SECRET) == (vec["reason"], None)


def test_ack_body_round_trips_through_parse_ack():
    body = protocol.ack_body(alert_id="d-1:1:1", stage="rejected", inc=None, reason="id_reuse", now=5, floor=3)
    reason, ack = protocol.parse_ack(protocol.sign(body, SECRET), SECRET)
    assert reason is None and ack == {"v": 1, "id": "d-1:1:1", "stage": "rejected", "inc": None,
                                      "reason": "id_reuse", "now": 5, "floor": 3}
