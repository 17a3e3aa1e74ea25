"""What every part of the store shares: the connection plumbing, the schema, the registry
version and the event outbox.

Each database subclass supplies a transaction context (`_tx`, a DB-API cursor) and its
placeholder; statements are written once with `?`. Callers outside gateway/store/ use the
public methods of the parts (devices, incidents, forwards, health, accounts), never these.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson

from ..domain.policy import FalseAlarmPolicy
from ..models import Incident
from .schema import MIGRATIONS

# Migration 3's statements are all IF NOT EXISTS and are run again at every start: databases
# made while that slot was empty already record version 3 without its tables.
REPEATABLE = (3,)


def no_sinks(event: str) -> Sequence[str]:
    return ()


class StoreCore:
    placeholder = "?"
    serial = "INTEGER PRIMARY KEY"

    # Row locks where a database has them (PostgreSQL); SQLite serialises writers anyway.
    for_update = ""
    skip_locked = ""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        # event name -> names of the sinks that take it; the service sets it from the sink
        # configuration, so the store queues forwards without knowing what a sink is.
        self.route: Callable[[str], Sequence[str]] = no_sinks
        self.false_alarm = FalseAlarmPolicy()
        # Called after a committed transition with (state before, incident after): metrics.
        self.on_transition: Callable[[str, Incident], None] | None = None

    # --- plumbing each database provides -------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[Any]:  # pragma: no cover - abstract (a DB-API cursor)
        raise NotImplementedError
        yield

    def close(self) -> None:
        self.conn.close()  # type: ignore[attr-defined]  # SQLite's; PostgreSQL overrides

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _exec(self, cur, sql: str, args: tuple | list = ()):
        cur.execute(self._sql(sql), args)
        return cur

    def _rows(self, sql: str, args: tuple | list = ()) -> list[tuple]:
        with self._tx() as cur:
            return self._exec(cur, sql, args).fetchall()

    def _read(self, sql: str, args: tuple | list = ()) -> list[tuple]:
        """A read that needs no transaction; SQLite overrides it to take no write lock."""
        return self._rows(sql, args)

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        """A cursor for several reads; SQLite overrides it to take no write lock."""
        with self._tx() as cur:
            yield cur

    # --- schema ------------------------------------------------------------------
    def _migration_lock(self, cur) -> None:
        """Keep two gateways starting at once from migrating together (PostgreSQL)."""

    def migrate(self) -> int:
        with self._tx() as cur:
            self._migration_lock(cur)
            self._exec(cur, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self._exec(cur, "SELECT MAX(version) FROM schema_version").fetchone()
            current = row[0] or 0
            for version, statements in enumerate(MIGRATIONS, start=1):
                if version <= current and version not in REPEATABLE:
                    continue
                for stmt in statements:
                    self._exec(cur, stmt.format(serial=self.serial))
                if version > current:
                    self._exec(cur, "INSERT INTO schema_version (version) VALUES (?)", (version,))
            return len(MIGRATIONS)

    def schema_version(self) -> int:
        return self._rows("SELECT MAX(version) FROM schema_version")[0][0] or 0

    # --- registry version ----------------------------------------------------------
    def _bump_registry(self, cur) -> None:
        # Gateways cache devices; a new version makes every gateway drop its cache at its
        # next batch, so a rotated secret or a suspension takes effect at once.
        self._exec(cur, "UPDATE meta SET value = value + 1 WHERE key = 'registry_version'")

    def registry_version(self) -> int:
        rows = self._read("SELECT value FROM meta WHERE key = 'registry_version'")
        return rows[0][0] if rows else 0

    # --- the outbox: every event goes to the sinks that take it ---------------------
    def _enqueue(self, cur, sink: str, subject: str, idem_key: str, payload: str, at_ms: int) -> None:
        self._exec(cur, "INSERT INTO forwards (sink, incident_id, idem_key, payload, created_ms, next_ms) "
                        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                   (sink, subject, idem_key, payload, at_ms, at_ms))

    def _event(self, cur, inc: Incident, stage: str, at_ms: int, actor: str, note: str | None) -> None:
        """Record an incident event and queue it, in the same transaction, for its sinks."""
        self._exec(cur, "INSERT INTO events (incident_id, stage, at_ms, actor, note) VALUES (?, ?, ?, ?, ?)",
                   (inc.id, stage, at_ms, actor, note))
        sinks = self.route(stage)
        if not sinks:
            return
        payload = orjson.dumps({"event": stage, "at_ms": at_ms, "actor": actor, "incident": inc.to_json()}).decode()
        for sink in sinks:
            self._enqueue(cur, sink, inc.id, f"{inc.id}:{stage}", payload, at_ms)

    def _device_event(self, cur, dev: str, event: str, at_ms: int, detail: dict) -> None:
        """Record a device event (health, policy) and queue it for its sinks."""
        body = {"event": event, "at_ms": at_ms, "actor": "gateway", "device": {"id": dev, **detail}}
        text = orjson.dumps(body).decode()
        eid = self._exec(cur, "INSERT INTO device_events (dev, event, at_ms, body) VALUES (?, ?, ?, ?) RETURNING id",
                         (dev, event, at_ms, text)).fetchone()[0]
        for sink in self.route(event):
            self._enqueue(cur, sink, dev, f"{dev}:{event}:{eid}", text, at_ms)
