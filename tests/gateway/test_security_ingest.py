"""Attacks on alert ingest by a holder of one button's credentials (docs/security.md, rows 1 and 4),
on the real stack: the project's mosquitto, the gateway as a process, SQLite or PostgreSQL."""
from __future__ import annotations

import json
import sqlite3

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway import config, ids
from gateway.store import open_store
from tests.conftest import wait_until
from tests.gateway.test_gateway_support import (
    custom_stack,
    device,
    pg_dsn,  # noqa: F401 (fixture)
)


@pytest.fixture
def two_buttons(tmp_path):
    s = custom_stack(tmp_path / "state")
    a, _ = device(s, "klj-kauman-rw05-rt03")
    b, _ = device(s, "klj-kauman-rw05-rt04")
    yield s, a, b
    a.close()
    b.close()
    s.down()


def test_a_message_that_keeps_failing_in_the_store_is_dead_lettered_and_the_rest_flow(two_buttons):
    s, a, b = two_buttons
    a.send(seq=1)
    first = a.ack()
    assert first["stage"] == "received"
    # The state two colliding alert ids leave behind: an incident already holds the id the
    # next alert of A derives. Its insert violates the incidents primary key, a real
    # IntegrityError in the real store, on every attempt and after every restart.
    poison_id = f"{a.dev}:1:2"
    with sqlite3.connect(s.state / "gateway.db") as db:
        db.execute("UPDATE incidents SET id = ? WHERE id = ?", (ids.incident_id(poison_id), first["inc"]))
    a.send(seq=2)
    b.send(seq=1)
    # B's alert is stored and acked although A's poison was taken first.
    got = b.ack(timeout=20)
    assert got["stage"] == "received" and got["id"] == f"{b.dev}:1:1"
    # A is told its alert was rejected, so it stops retransmitting the poison.
    told = a.ack(timeout=20)
    assert told == {**told, "id": poison_id, "stage": "rejected", "reason": "ingest_failed"}
    m = s.metrics()
    assert m["panic_ingest_dead_letters_total"] == 1
    store = open_store(config.load(s.config))
    try:
        [dead] = store.dead_letters()
    finally:
        store.close()
    assert dead.dev == a.dev and dead.alert_id == poison_id and dead.attempts >= 5
    assert "IntegrityError" in dead.reason and json.loads(dead.payload.split("\n")[0])["seq"] == 2
    # Acked to the broker: a gateway restart does not bring it back to stall ingest again.
    s.kill_gateway()
    s.start_gateway()
    b.send(seq=2)
    assert b.ack(timeout=10)["stage"] == "received"
    health = httpx.get(f"{s.api}/healthz", timeout=5).json()
    assert health["ok"] and health["ingest"]["ok"] and health["ingest"]["queue"] == 0
    assert s.metrics().get("panic_ingest_dead_letters_total", 0) == 0  # this process dead-lettered nothing


def test_incident_ids_are_128_bits():
    inc = ids.incident_id("klj-kauman-rw05-rt03:1:1")
    assert inc.startswith("inc-") and len(inc) == 4 + 32 and int(inc[4:], 16) >= 0


def test_healthz_says_when_ingest_stops_making_progress(tmp_path, pg_dsn):  # noqa: F811
    s = custom_stack(tmp_path / "state", store="postgres", dsn=pg_dsn)
    a, _ = device(s)
    try:
        assert httpx.get(f"{s.api}/healthz", timeout=5).json()["ingest"]["ok"]
        # Another session holds the alerts table for longer than the stall window, as a
        # stuck migration or a long backup would: ingest waits, the MQTT link stays up.
        with psycopg.connect(pg_dsn) as db:
            db.execute("LOCK TABLE alerts IN ACCESS EXCLUSIVE MODE")
            a.send(seq=1)

            def stalled() -> bool:
                r = httpx.get(f"{s.api}/healthz", timeout=5)
                return r.status_code == 503 and r.json()["mqtt"] and not r.json()["ingest"]["ok"]
            wait_until(stalled, timeout=30, interval=0.5, what="/healthz reporting the stall")
        # Only the store was stuck, not the message: it is stored, never dead-lettered.
        assert a.ack(timeout=30)["stage"] == "received"
        wait_until(lambda: httpx.get(f"{s.api}/healthz", timeout=5).status_code == 200, timeout=10)
        assert s.metrics().get("panic_ingest_dead_letters_total", 0) == 0
    finally:
        a.close()
        s.down()


def test_one_button_flooding_its_status_does_not_hold_up_another_buttons_alert(tmp_path):
    s = custom_stack(tmp_path / "state")
    flooder, fc = device(s, "klj-kauman-rw05-rt03")
    presser, _ = device(s, "klj-kauman-rw05-rt04")
    flooder.close()  # the flood comes from the device's own login and client id
    flood = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=fc["id"])
    flood.username_pw_set(fc["mqtt_username"], fc["mqtt_password"])
    flood.max_queued_messages_set(0)
    flood.connect("127.0.0.1", s.broker_port)
    flood.loop_start()
    n = 20_000
    try:
        topic = f"panic/v1/{fc['id']}/status"
        for i in range(n):
            body = {"v": 1, "dev": fc["id"], "state": "online", "up": i, "batt": 80, "outbox": 0}
            flood.publish(topic, json.dumps(body), qos=0)
        presser.send(seq=1)
        assert presser.ack(timeout=30)["stage"] == "received"
        # The last status the flooder sent is the one recorded: coalesced, not lost.
        wait_until(lambda: _up(s, fc["id"]) == n - 1, timeout=30, what="the flooder's latest status recorded")
        # Most of the flood never reached the health worker (nor the store's write lock):
        # each device has at most one status with the worker and a rate of about one a second.
        coalesced = s.metrics().get('panic_status_limited_total{reason="superseded"}', 0)
        assert coalesced > n / 2
        progress = httpx.get(f"{s.api}/healthz", timeout=5).json()["ingest"]
        assert progress["status_waiting"] <= 2 and progress["queue"] == 0
    finally:
        flood.disconnect()
        flood.loop_stop()
        presser.close()
        s.down()


def _up(s, dev: str) -> int | None:
    store = open_store(config.load(s.config))
    try:
        h = store.device_health(dev).get(dev)
        return h.up if h is not None else None
    finally:
        store.close()
