"""Device health from status messages and wills: online, offline, silent, low battery,
backlog; each change an event on the ops topic, the ops webhook and in the API."""
from __future__ import annotations

import json
import queue

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway import config
from gateway.health import StatusError, parse_status
from tests.conftest import wait_until
from tests.gateway.test_gateway_support import KAUMAN, custom_stack

DEV = "klj-kauman-rw05-rt03"


def status(state="online", **extra) -> bytes:
    return json.dumps({"v": 1, "dev": DEV, "state": state, "fw": "1.0.0", "boot": 3, "up": 10,
                       "batt": 87, "rssi": -61, "outbox": 0, **extra}).encode()


class Button:
    """A device's MQTT session as the firmware opens it: retained birth, will = offline."""

    def __init__(self, creds: dict, port: int) -> None:
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=creds["id"])
        self.c.username_pw_set(creds["mqtt_username"], creds["mqtt_password"])
        self.topic = f"panic/v1/{creds['id']}/status"
        self.c.will_set(self.topic, json.dumps({"v": 1, "dev": creds["id"], "state": "offline"}), qos=1,
                        retain=True)
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()

    def status(self, payload: bytes) -> None:
        self.c.publish(self.topic, payload, qos=1, retain=True).wait_for_publish(5)

    def cut_power(self) -> None:
        # No DISCONNECT: the broker sees the link die and publishes the will.
        self.c.loop_stop()
        self.c.socket().close()


@pytest.fixture
def hstack(tmp_path, extra_webhook):
    s = custom_stack(tmp_path / "state", heartbeat_s=1, low_battery_pct=20, backlog_min=2,
                     extra_webhooks=[{"url": extra_webhook.url, "secret": "ops", "name": "ops", "events": ["health"]}])
    yield s
    s.down()


def _ops_reader(s) -> queue.Queue:
    cfg = config.load(s.config)
    got: queue.Queue = queue.Queue()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ops-reader")
    c.username_pw_set(cfg.mqtt.username, cfg.mqtt.password)
    c.on_message = lambda cl, u, m: got.put((m.topic, json.loads(m.payload)))
    c.connect("127.0.0.1", s.broker_port)
    c.subscribe("panic/v1/ops/#", qos=1)
    c.loop_start()
    got.client = c  # type: ignore[attr-defined]
    return got


def _health(s) -> dict:
    return s.get(f"/api/devices/{DEV}")["health"]


def test_health_changes_become_events(hstack, extra_webhook):
    s = hstack
    creds = s.add_device(DEV, *KAUMAN, kelurahan="Kauman", rw=5, rt=3)
    assert _health(s)["health"] == "unknown"
    ops = _ops_reader(s)
    b = Button(creds, s.broker_port)
    try:
        b.status(status())
        wait_until(lambda: _health(s)["health"] == "online")
        topic, event = ops.get(timeout=5)
        assert topic == f"panic/v1/ops/health/{DEV}" and event["device"]["health"] == "online"
        assert event["device"]["was"] == "unknown"

        b.status(status(batt=12, outbox=3))
        wait_until(lambda: _health(s)["low_battery"] and _health(s)["backlog"])
        # The gauges follow at the monitor's next sweep (a fraction of a heartbeat).
        wait_until(lambda: s.metrics()['panic_devices_by_health{health="low_battery"}'] == 1)

        # No status for 2.5 heartbeats: silent.
        wait_until(lambda: _health(s)["health"] == "silent", timeout=10)
        b.status(status(batt=90))
        wait_until(lambda: _health(s)["health"] == "online" and not _health(s)["low_battery"])
        b.cut_power()
        wait_until(lambda: _health(s)["health"] == "offline")
        wait_until(lambda: s.metrics()['panic_devices_by_health{health="offline"}'] == 1)

        got = s.get(f"/api/devices/{DEV}")
        seen = [(e["device"]["was"], e["device"]["health"]) for e in reversed(got["events"])]
        assert seen[0] == ("unknown", "online") and ("online", "silent") in seen and seen[-1][1] == "offline"
        listed = s.get("/api/devices", health="offline")["devices"]
        assert [d["id"] for d in listed] == [DEV]
        # The operations webhook gets every change once, in order.
        posts = extra_webhook.wait(len(seen))
        wait_until(lambda: all(x["pending"] == 0 for x in s.get("/api/forwards")["sinks"]))
        assert [p["json"]["device"]["health"] for p in extra_webhook.posts] == [h for _, h in seen]
        assert len({p["headers"]["Idempotency-Key"] for p in posts}) == len(posts)
    finally:
        ops.client.disconnect()
        ops.client.loop_stop()


def test_retained_status_at_restart_is_not_a_change(hstack):
    s = hstack
    creds = s.add_device(DEV, *KAUMAN)
    b = Button(creds, s.broker_port)
    b.status(status(state="sleeping", hb=3600))  # its own heartbeat: never silent in this test
    wait_until(lambda: _health(s)["health"] == "sleeping")
    events = len(s.get(f"/api/devices/{DEV}")["events"])
    s.kill_gateway()
    s.start_gateway()  # the broker replays the retained "sleeping"
    assert s.metrics()["panic_mqtt_connected"] == 1
    b.status(status(state="sleeping", hb=3600, up=99))  # a live status after the replay: still no change
    wait_until(lambda: _health(s)["up"] == 99)
    assert len(s.get(f"/api/devices/{DEV}")["events"]) == events
    b.c.disconnect()
    b.c.loop_stop()


@pytest.mark.parametrize("payload, reason", [
    (b"", "empty"),
    (b"not json", "json"),
    (b'{"v":1,"dev":"klj-other-rw01-rt01","state":"online"}', "dev_mismatch"),
    (b'{"v":1,"dev":"' + DEV.encode() + b'","state":"party"}', "schema"),
    (b'{"v":1,"dev":"' + DEV.encode() + b'","state":"online","batt":300}', "schema"),
    (b"x" * 2000, "size"),
])
def test_bad_status_is_ignored_with_a_reason(payload, reason):
    with pytest.raises(StatusError) as err:
        parse_status(f"panic/v1/{DEV}/status", payload, "panic/v1")
    assert err.value.reason == reason
    assert parse_status(f"panic/v1/{DEV}/status", status(hb=30), "panic/v1")[1]["hb"] == 30
