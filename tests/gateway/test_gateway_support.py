"""Helpers for the gateway's tests (no tests here): stacks with their own settings, a
fresh PostgreSQL schema per test, logins and devices."""
from __future__ import annotations

import os
import queue
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from simulator.stack import Stack
from tests.devices import RawDevice

KAUMAN = (-7982600, 112627000)
# The machine's PostgreSQL (.ci/run starts it): trust auth, database `test`.
PG_BASE = os.environ.get("PANIC_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def pg_schema():
    """A DSN whose search_path is a schema of its own, dropped afterwards: parallel runs and
    tests never see each other's tables."""
    name = "pbt_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture
def pg_dsn():
    with pg_schema() as dsn:
        yield dsn


def custom_stack(state: Path, webhooks: list[str] | None = None, extra_webhooks: list[dict] | None = None,
                 store: str = "sqlite", dsn: str = "", start: bool = True, **gateway_values) -> Stack:
    """A stack whose gateway runs with the given [gateway] settings (and extra [[webhooks]])."""
    s = Stack(state, webhooks=webhooks, store=store, dsn=dsn)
    s.init()
    if gateway_values:
        s.set_config("gateway", **gateway_values)
    if extra_webhooks:
        import tomllib

        from gateway.config import write
        data = tomllib.loads(s.config.read_text())
        data.setdefault("webhooks", []).extend(extra_webhooks)
        write(data, s.config)
    if start:
        try:
            s.start_broker()
            s.start_gateway()
        except BaseException:
            s.down()  # a broker or gateway that did start must not outlive the test
            raise
    return s


def device(stack: Stack, dev: str = "klj-kauman-rw05-rt03", **fields: Any) -> tuple[RawDevice, dict]:
    values: dict[str, Any] = {"kelurahan": "Kauman", "rw": 5, "rt": 3, **fields}
    creds = stack.add_device(dev, *KAUMAN, **values)
    return RawDevice(creds, stack.broker_port), creds


def login(port: int, username: str, password: str, client_id: str | None = None, tls: dict | None = None):
    """Try an MQTT login; return the CONNACK reason code (0 = accepted) and the client."""
    got: queue.Queue = queue.Queue()
    # A device login connects only with its id as client id (the broker binds them).
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or username)
    c.username_pw_set(username, password)
    if tls:
        c.tls_set(**tls)
    c.on_connect = lambda cl, u, flags, reason, props: got.put(reason)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        reason = got.get(timeout=5)
    except queue.Empty:
        reason = None
    return reason, c


def close(client) -> None:
    client.disconnect()
    client.loop_stop()


