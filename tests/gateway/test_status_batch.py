"""Statuses recorded in batches, heartbeats held until the sweep writes them: per-device order,
the newest status wins, silence and health events exactly as one status at a time (real
SQLite and PostgreSQL)."""
from __future__ import annotations

import json

import pytest

from gateway.config import Config
from gateway.health import HealthMonitor
from gateway.ingest import Registry
from gateway.models import Device
from gateway.store.health import DeviceHealth
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.conftest import wait_until
from tests.gateway.test_gateway_support import pg_dsn  # noqa: F401 (fixture)

DEVS = ["klj-kauman-rw05-rt03", "klj-kauman-rw05-rt04"]
KW = dict(heartbeat_s=60, silent_factor=2.5, low_battery_pct=20, backlog_min=1)
T0 = 1_800_000_000_000


def open_store(kind: str, tmp_path, dsn: str = ""):
    s = SqliteStore(tmp_path / "g.db") if kind == "sqlite" else PostgresStore(dsn)
    s.add_devices([Device(id=d, secret="s" * 64, mqtt_password="p", created_ms=1) for d in DEVS])
    return s


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgres" else ""
    s = open_store(request.param, tmp_path, dsn)
    s.kind, s.dsn = request.param, dsn  # type: ignore[attr-defined]
    yield s
    s.close()


def beat(up: int, **extra) -> dict:
    return {"state": "online", "up": up, "batt": 80, "outbox": 0, **extra}


def health(store, dev: str = DEVS[0]) -> DeviceHealth:
    return store.device_health(dev)[dev]


def test_held_heartbeats_are_written_newest_last_and_per_device(store):
    d0, d1 = DEVS
    assert store.record_statuses([(d0, beat(1), False), (d1, beat(1), False)], T0, **KW) != [None, None]
    for i in range(2, 6):
        # one device twice in a batch: the later one is the one that stays
        out = store.record_statuses([(d0, beat(i * 10), False), (d1, beat(i), False), (d0, beat(i * 10 + 1), False)],
                                    T0 + i * 1000, defer=True, **KW)
        assert out == [None, None, None]
    assert health(store).up == 1  # held: the store still shows the last written heartbeat
    assert store.flush_heartbeats() == 2
    h0, h1 = health(store, d0), health(store, d1)
    assert (h0.up, h0.last_status_ms, h0.silent_at_ms) == (51, T0 + 5000, T0 + 5000 + 150_000)
    assert (h1.up, h1.last_status_ms) == (5, T0 + 5000)
    assert store.flush_heartbeats() == 0
    # nothing but "last heard" changed: no device event beyond the first
    assert [e.device["health"] for e in store.device_events(d0)] == ["online"]


def test_a_health_change_after_held_heartbeats_keeps_their_order(store):
    d0 = DEVS[0]
    store.record_statuses([(d0, beat(1), False)], T0, **KW)
    store.record_statuses([(d0, beat(2, batt=70), False)], T0 + 1000, defer=True, **KW)
    # low battery, then the will: both events, in order, and the will keeps the held reading
    out = store.record_statuses([(d0, beat(3, batt=10), False), (d0, {"state": "offline"}, False)], T0 + 2000,
                                defer=True, **KW)
    assert [o.health for o in out] == ["online", "offline"] and out[0].now.low_battery
    h = health(store)
    assert (h.health, h.up, h.batt, h.low_battery) == ("offline", 3, 10, True)
    assert [e.device["health"] for e in reversed(store.device_events(d0))] == ["online", "online", "offline"]


def test_the_sweep_writes_held_heartbeats_before_it_looks_for_silence(store):
    d0 = DEVS[0]
    store.record_statuses([(d0, beat(1), False)], T0, **KW)
    store.record_statuses([(d0, beat(2), False)], T0 + 100_000, defer=True, **KW)
    # 151 s after the first status but 51 s after the held one: not silent
    assert store.sweep_silent(T0 + 151_000) == []
    assert health(store).up == 2
    assert [c.health for c in store.sweep_silent(T0 + 251_000)] == ["silent"]
    # the next heartbeat is news (silent -> online), not a held "last heard"
    out = store.record_statuses([(d0, beat(3), False)], T0 + 252_000, defer=True, **KW)
    assert out[0].health == "online" and out[0].was == "silent"


def test_a_row_another_writer_changed_is_merged_afresh(store, tmp_path):
    """Two gateways share PostgreSQL (or a CLI shares the SQLite file): a held heartbeat whose
    row another writer marked silent meanwhile is written through the full path, and its
    health event is reported, not lost."""
    d0 = DEVS[0]
    store.record_statuses([(d0, beat(1), False)], T0, **KW)
    store.record_statuses([(d0, beat(2), False)], T0 + 200_000, defer=True, **KW)
    other = SqliteStore(tmp_path / "g.db") if store.kind == "sqlite" else PostgresStore(store.dsn)
    try:
        assert [c.health for c in other.sweep_silent(T0 + 151_000)] == ["silent"]
    finally:
        other.close()
    assert store.late_health_changes() == []
    assert store.flush_heartbeats() == 1
    late = store.late_health_changes()
    assert [(c.was, c.health) for c in late] == [("silent", "online")]
    assert health(store).health == "online" and health(store).up == 2
    assert store.late_health_changes() == []


def test_a_retained_replay_changes_nothing(store):
    d0 = DEVS[0]
    store.record_statuses([(d0, beat(5), False)], T0, **KW)
    assert store.record_statuses([(d0, beat(1), True)], T0 + 1000, defer=True, **KW) == [None]
    assert store.flush_heartbeats() == 0 and health(store).up == 5


class Msg:
    def __init__(self, dev: str, body: dict, retain: bool = False) -> None:
        self.topic = f"panic/v1/{dev}/status"
        self.payload = json.dumps({"v": 1, "dev": dev, **body}).encode()
        self.retain = retain


def test_the_monitor_records_a_batch_in_order_and_rejects_bad_ones(tmp_path):
    store = open_store("sqlite", tmp_path)
    acked = []
    mon = HealthMonitor(Config(path=tmp_path / "c.toml"), store, Registry(store), done=acked.extend)
    d0, d1 = DEVS
    msgs = [Msg(d0, beat(1)), Msg(d1, {"state": "party"}), Msg("klj-nobody-rw01-rt01", beat(1)),
            Msg(d1, beat(1)), Msg(d0, beat(2, batt=5)), Msg(d0, {"state": "offline"})]
    out = mon.handle_batch([(m.topic, m.payload, m.retain) for m in msgs])
    assert [o and (o.was, o.health, o.now.low_battery) for o in out] == [
        ("unknown", "online", False), None, None, ("unknown", "online", False), ("online", "online", True),
        ("online", "offline", True)]
    # through the worker thread: every message acked, held heartbeats written at stop
    mon.start()
    for i in range(3, 40):
        mon.submit([Msg(d1, beat(i))])
    wait_until(lambda: len(acked) == 37, what="every status acked")
    mon.stop()
    assert health(store, d1).up == 39
    store.close()
