"""Each rejection reason of check_alert, and the stale window as configured."""
from __future__ import annotations

import json
import time

import pytest

from gateway import signing
from gateway.models import Alert, Device
from gateway.validate import REASONS, check_alert
from tests.conftest import wait_until
from tests.gateway.test_gateway_support import custom_stack, device

DEV = "klj-kauman-rw05-rt03"
SECRET = "ab" * 32
NOW = 1_764_269_000_000


def body(**over) -> bytes:
    b = {"v": 1, "dev": DEV, "id": f"{DEV}:1:1", "boot": 1, "seq": 1, "kind": "panic", "t": NOW - 1000,
         "age": 5, "lat6": -7982600, "lon6": 112627000, "acc": 25, "src": "fixed", "batt": 87, "rssi": -61}
    b.update(over)
    return json.dumps(b).encode()


def check(payload: bytes, topic: str = f"panic/v1/{DEV}/alert", status: str = "active", past_s: int = 86400,
          future_s: int = 300):
    registry = {DEV: Device(id=DEV, secret=SECRET, mqtt_password="x", status=status)}
    return check_alert(topic, payload, root="panic/v1", max_payload=1024, device=registry.get, now_ms=NOW,
                       stale_past_ms=past_s * 1000, stale_future_ms=future_s * 1000)


@pytest.mark.parametrize("reason, args", [
    ("size", dict(payload=signing.sign(body(pad="x" * 1100), SECRET))),
    ("topic", dict(payload=signing.sign(body(), SECRET), topic="panic/v1/incidents/x/alert")),
    ("topic", dict(payload=signing.sign(body(), SECRET), topic=f"panic/v2/{DEV}/alert")),
    ("unknown_device", dict(payload=signing.sign(body(), SECRET), topic="panic/v1/klj-ghost-rw01-rt01/alert")),
    ("suspended", dict(payload=signing.sign(body(), SECRET), status="suspended")),
    ("format", dict(payload=body())),
    ("mac", dict(payload=signing.sign(body(), "cd" * 32))),
    ("json", dict(payload=signing.sign(b"[1, 2]", SECRET))),
    ("dev_mismatch", dict(payload=signing.sign(body(dev="klj-other-rw01-rt01"), SECRET))),
    ("schema", dict(payload=signing.sign(body(id=f"{DEV}:1:2"), SECRET))),
    ("schema", dict(payload=signing.sign(body(kind="cancel"), SECRET))),  # a cancel needs ref
    ("stale", dict(payload=signing.sign(body(t=NOW - 86_401_000), SECRET))),
    ("stale", dict(payload=signing.sign(body(t=NOW + 301_000), SECRET))),
    ("stale", dict(payload=signing.sign(body(t=None, age=61_000), SECRET), past_s=60)),
])
def test_each_reason(reason, args):
    r = check(**args)
    assert r.reason == reason and r.reason in REASONS


def test_valid_alert_and_press_time():
    a = check(signing.sign(body(t=None, age=1500), SECRET))
    assert isinstance(a, Alert) and a.press_ms == NOW - 1500
    assert check(signing.sign(body(t=NOW - 59_000), SECRET), past_s=60).press_ms == NOW - 59_000


def test_stale_window_is_configurable(tmp_path):
    s = custom_stack(tmp_path / "state", stale_past_s=60, stale_future_s=5)
    raw, _ = device(s)
    try:
        now = time.time_ns() // 1_000_000
        raw.send(seq=1, t=now - 120_000)  # two minutes old: outside a 60 s window
        ack = raw.ack()
        assert ack["stage"] == "rejected" and ack["reason"] == "stale" and ack["inc"] is None
        raw.send(seq=2, t=now + 30_000)  # 30 s ahead: outside +5 s
        assert raw.ack()["reason"] == "stale"
        raw.send(seq=3, t=None, age=30_000)  # no clock, pressed 30 s ago: inside
        assert raw.ack()["stage"] == "received"
        wait_until(lambda: s.rejected("stale") == 2)
        assert [i["alert_id"] for i in s.incidents()] == [f"{raw.dev}:1:3"]
    finally:
        raw.close()
        s.down()
