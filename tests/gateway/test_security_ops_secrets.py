"""Device secrets at rest (docs/security.md, row 15): sealed in the database with a key kept in its
own 0600 file, still verifying every alert; rows from before sealing are sealed at start.
Against the gateway as a process on the project's mosquitto, SQLite and PostgreSQL."""
from __future__ import annotations

import json
import sqlite3
import stat

import psycopg
import pytest

from gateway import config, dynsec
from gateway.models import Device
from gateway.secretbox import PREFIX
from gateway.store import open_store
from gateway.store.sqlite import SqliteStore
from tests.devices import RawDevice
from tests.gateway.test_gateway_support import (
    close,
    custom_stack,
    device,
    login,
    pg_dsn,  # noqa: F401 (fixture)
)

DEV = "klj-kauman-rw05-rt03"


def database_bytes(state) -> bytes:
    return b"".join(p.read_bytes() for p in state.glob("gateway.db*"))


def test_a_copy_of_the_database_holds_no_device_secret(tmp_path):
    s = custom_stack(tmp_path / "state")
    try:
        raw, creds = device(s, DEV)
        raw.send(seq=1)
        assert raw.ack(timeout=20)["stage"] == "received"  # the gateway still verifies the HMAC
        raw.close()
        assert creds["secret"].encode() not in database_bytes(s.state)
        with sqlite3.connect(s.state / "gateway.db") as db:
            [(stored,)] = db.execute("SELECT secret FROM devices").fetchall()
        assert stored.startswith(PREFIX)
        key = s.state / "secret.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert json.loads(s.cli("device", "config", DEV).stdout)["secret"] == creds["secret"]
    finally:
        s.down()


def test_secrets_stored_before_sealing_are_sealed_at_start_and_keep_working(tmp_path):
    s = custom_stack(tmp_path / "state", start=False)
    (s.state / "secret.key").unlink(missing_ok=True)
    # A registry written before sealing: the plain secret in the row.
    old = SqliteStore(s.state / "gateway.db")
    old.add_device(Device(id=DEV, secret="ab" * 32, mqtt_password="legacy-password-123", created_ms=1))
    old.close()
    s.cli("broker-config")
    s.start_broker()
    s.start_gateway()
    try:
        assert b"ab" * 32 not in database_bytes(s.state)
        raw = RawDevice({"id": DEV, "secret": "ab" * 32, "mqtt_username": DEV,
                         "mqtt_password": "legacy-password-123"}, s.broker_port)
        raw.send(seq=1)
        assert raw.ack(timeout=20)["stage"] == "received"
        raw.close()
        # The plain MQTT password went with the upgrade; its hash still logs the button in.
        assert b"legacy-password-123" not in database_bytes(s.state)
        # The key is the database's now: without it the store refuses to open, saying why.
        (s.state / "secret.key").rename(s.state / "secret.key.away")
        got = s.cli("device", "list", check=False)
        assert got.returncode == 2 and "key" in got.stderr
    finally:
        s.down()


def test_postgres_store_seals_with_the_key_file(tmp_path, pg_dsn):  # noqa: F811
    cfg = config.Config(path=tmp_path / "gateway.toml")
    cfg.store.kind, cfg.store.dsn = "postgres", pg_dsn
    store = open_store(cfg)
    try:
        store.add_device(Device(id=DEV, secret="cd" * 32, mqtt_password="p", created_ms=1))
        assert store.get_device(DEV).secret == "cd" * 32
        assert store.list_devices()[0].secret == "cd" * 32
    finally:
        store.close()
    # What an attacker with the database (a dump, a replica) reads: not the secret.
    with psycopg.connect(pg_dsn) as conn:
        (raw,) = conn.execute("SELECT secret FROM devices").fetchone() or ("",)
    assert raw.startswith(PREFIX) and "cd" * 32 not in raw
    store = open_store(cfg)
    try:
        assert store.get_device(DEV).secret == "cd" * 32
    finally:
        store.close()
    # A second gateway with another key file cannot read them: it is told, not given garbage.
    other = config.Config(path=tmp_path / "other" / "gateway.toml")
    other.store.kind, other.store.dsn = "postgres", pg_dsn
    with pytest.raises(config.ConfigError, match="key"):
        open_store(other)


def test_the_registry_keeps_only_a_hash_of_each_mqtt_password(tmp_path):
    """A copy of the database gives no broker login; `device config` therefore issues a
    fresh password (the button's previous config stops logging in), and suspending and
    resuming a button needs no password at all."""
    s = custom_stack(tmp_path / "state")
    try:
        raw, creds = device(s, DEV)
        raw.close()
        assert creds["mqtt_password"].encode() not in database_bytes(s.state)
        with sqlite3.connect(s.state / "gateway.db") as db:
            [(stored,)] = db.execute("SELECT mqtt_password FROM devices").fetchall()
        entry = dynsec.parse_stored(stored)
        assert entry is not None and dynsec.verifies(entry, creds["mqtt_password"])
        again = json.loads(s.cli("device", "config", DEV).stdout)
        assert again["mqtt_password"] != creds["mqtt_password"] and again["secret"] == creds["secret"]
        reason, c = login(s.broker_port, DEV, creds["mqtt_password"])
        close(c)
        assert reason is not None and reason.is_failure
        s.cli("device", "suspend", DEV)
        s.cli("device", "resume", DEV)
        fresh = RawDevice({**creds, "mqtt_password": again["mqtt_password"]}, s.broker_port)
        try:
            fresh.send(seq=1)
            assert fresh.ack(timeout=20)["stage"] == "received"
        finally:
            fresh.close()
        assert again["mqtt_password"].encode() not in database_bytes(s.state)
        # A login the running broker lacks cannot be made from a hash: said, with the way out.
        store = open_store(config.load(s.config))
        try:
            store.add_device(Device(id="klj-kauman-rw05-rt04", secret="ef" * 32,
                                    mqtt_password=dynsec.stored_hash("never-handed-out"), created_ms=1))
        finally:
            store.close()
        told = s.cli("device", "unflag", DEV, check=False)  # no broker change: nothing to say
        assert told.returncode == 0
        told = s.cli("device", "suspend", DEV, check=False)
        assert told.returncode == 2 and "device config" in told.stderr and "klj-kauman-rw05-rt04" in told.stderr
    finally:
        s.down()
