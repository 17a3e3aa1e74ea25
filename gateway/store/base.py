"""Store logic shared by SQLite and PostgreSQL: plain SQL with `?` placeholders.

Each subclass supplies a connection, a transaction context and its placeholder.
Every write the gateway acks for happens inside one committed transaction first.
"""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from dataclasses import fields
from typing import Iterator

from ..ids import incident_id
from ..models import ACK_STAGE, FINAL, STAGES, Alert, Device, Incident, Outcome
from .schema import MIGRATIONS

DEVICE_COLS = [f.name for f in fields(Device)]
INCIDENT_COLS = [f.name for f in fields(Incident) if f.name != "device"]


class TransitionError(Exception):
    """An action that does not fit the incident's state (HTTP 409)."""


class Store:
    placeholder = "?"
    serial = "INTEGER PRIMARY KEY"

    def __init__(self) -> None:
        self._lock = threading.RLock()

    # --- plumbing each database provides -------------------------------------------
    def _connect(self):  # pragma: no cover - abstract
        raise NotImplementedError

    @contextmanager
    def _tx(self) -> Iterator[object]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield

    def close(self) -> None:
        self.conn.close()

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _exec(self, cur, sql: str, args: tuple | list = ()):
        cur.execute(self._sql(sql), args)
        return cur

    def _rows(self, sql: str, args: tuple | list = ()) -> list[tuple]:
        with self._tx() as cur:
            return self._exec(cur, sql, args).fetchall()

    # --- schema ------------------------------------------------------------------
    def migrate(self) -> int:
        with self._tx() as cur:
            self._exec(cur, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self._exec(cur, "SELECT MAX(version) FROM schema_version").fetchone()
            current = row[0] or 0
            for version, statements in enumerate(MIGRATIONS, start=1):
                if version <= current:
                    continue
                for stmt in statements:
                    self._exec(cur, stmt.format(serial=self.serial))
                self._exec(cur, "INSERT INTO schema_version (version) VALUES (?)", (version,))
            return len(MIGRATIONS)

    # --- devices -------------------------------------------------------------------
    def add_device(self, device: Device) -> None:
        self.add_devices([device])

    def add_devices(self, devices: list[Device]) -> None:
        cols = ", ".join(DEVICE_COLS)
        marks = ", ".join("?" * len(DEVICE_COLS))
        with self._tx() as cur:
            for device in devices:
                self._exec(cur, f"INSERT INTO devices ({cols}) VALUES ({marks})",
                           [getattr(device, c) for c in DEVICE_COLS])

    def update_device(self, dev: str, **changes) -> None:
        sets = ", ".join(f"{k} = ?" for k in changes)
        with self._tx() as cur:
            self._exec(cur, f"UPDATE devices SET {sets} WHERE id = ?", [*changes.values(), dev])

    def remove_device(self, dev: str) -> bool:
        with self._tx() as cur:
            return self._exec(cur, "DELETE FROM devices WHERE id = ?", (dev,)).rowcount > 0

    def get_device(self, dev: str) -> Device | None:
        rows = self._rows(f"SELECT {', '.join(DEVICE_COLS)} FROM devices WHERE id = ?", (dev,))
        return Device(*rows[0]) if rows else None

    def list_devices(self) -> list[Device]:
        rows = self._rows(f"SELECT {', '.join(DEVICE_COLS)} FROM devices ORDER BY id")
        return [Device(*r) for r in rows]

    # --- ingest --------------------------------------------------------------------
    def ingest(self, alerts: list[Alert], sinks: list[str]) -> list[Outcome]:
        """Store a batch of validated alerts in one transaction (group commit).

        A known alert id is a duplicate: it gets the ack it got before, never a new incident.
        """
        out: list[Outcome] = []
        with self._tx() as cur:
            for alert in alerts:
                out.append(self._ingest_one(cur, alert, sinks))
        return out

    def _ingest_one(self, cur, a: Alert, sinks: list[str]) -> Outcome:
        row = self._exec(cur, "SELECT incident_id FROM alerts WHERE id = ?", (a.id,)).fetchone()
        if row is not None:
            inc = self._incident(cur, row[0]) if row[0] else None
            stage = ACK_STAGE[inc.state] if inc else "rejected"
            if a.kind == "cancel" and inc is not None:
                stage = "cancelled"
            return Outcome(a, inc, created=False, duplicate=True, stage=stage,
                           reason=None if inc else "unknown ref")
        if a.kind == "cancel":
            return self._cancel(cur, a, sinks)
        inc = Incident(
            id=incident_id(a.id), alert_id=a.id, dev=a.dev, kind=a.kind, state="new",
            press_ms=a.press_ms, received_ms=a.received_ms, lat6=a.lat6, lon6=a.lon6,
            acc=a.acc, src=a.src, batt=a.batt, rssi=a.rssi,
            clock="device" if a.t is not None else "age", updated_ms=a.received_ms)
        self._exec(cur, "INSERT INTO alerts (id, dev, kind, incident_id, received_ms, body) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                   (a.id, a.dev, a.kind, inc.id, a.received_ms, a.body))
        cols = ", ".join(INCIDENT_COLS)
        self._exec(cur, f"INSERT INTO incidents ({cols}) VALUES ({', '.join('?' * len(INCIDENT_COLS))})",
                   [getattr(inc, c) for c in INCIDENT_COLS])
        self._event(cur, inc, "new", a.received_ms, f"device:{a.dev}", None, sinks)
        return Outcome(a, inc, created=True, duplicate=False, stage="received")

    def _cancel(self, cur, a: Alert, sinks: list[str]) -> Outcome:
        row = self._exec(cur, "SELECT incident_id FROM alerts WHERE id = ? AND dev = ?",
                         (a.ref, a.dev)).fetchone()
        inc = self._incident(cur, row[0]) if row and row[0] else None
        self._exec(cur, "INSERT INTO alerts (id, dev, kind, incident_id, received_ms, body) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                   (a.id, a.dev, a.kind, inc.id if inc else None, a.received_ms, a.body))
        if inc is None:
            return Outcome(a, None, created=False, duplicate=False, stage="rejected", reason="unknown ref")
        if inc.state not in FINAL:
            inc = self._set_state(cur, inc, "cancelled", a.received_ms, f"device:{a.dev}",
                                  "cancelled from the button", sinks)
        return Outcome(a, inc, created=False, duplicate=False, stage="cancelled")

    # --- incidents -----------------------------------------------------------------
    def _incident(self, cur, inc_id: str) -> Incident | None:
        row = self._exec(cur, f"SELECT {', '.join(INCIDENT_COLS)} FROM incidents WHERE id = ?",
                         (inc_id,)).fetchone()
        return Incident(*row) if row else None

    def get_incident(self, inc_id: str) -> Incident | None:
        with self._tx() as cur:
            inc = self._incident(cur, inc_id)
            if inc is not None:
                dev = self._exec(cur, f"SELECT {', '.join(DEVICE_COLS)} FROM devices WHERE id = ?",
                                 (inc.dev,)).fetchone()
                inc.device = Device(*dev).public() if dev else None
            return inc

    def list_incidents(self, since_ms: int = 0, limit: int = 500, state: str | None = None) -> list[Incident]:
        sql = f"SELECT {', '.join(INCIDENT_COLS)} FROM incidents WHERE received_ms >= ?"
        args: list = [since_ms]
        if state:
            sql += " AND state = ?"
            args.append(state)
        sql += " ORDER BY received_ms DESC LIMIT ?"
        args.append(limit)
        return [Incident(*r) for r in self._rows(sql, args)]

    def events(self, inc_id: str) -> list[dict]:
        rows = self._rows("SELECT stage, at_ms, actor, note FROM events WHERE incident_id = ? ORDER BY id",
                          (inc_id,))
        return [dict(stage=s, at_ms=t, actor=a, note=n) for s, t, a, n in rows]

    def transition(self, inc_id: str, action: str, actor: str, at_ms: int, sinks: list[str],
                   note: str | None = None, unit: str | None = None) -> Incident:
        """Apply an operator's or responder's action; raise TransitionError when it does not fit."""
        with self._tx() as cur:
            inc = self._incident(cur, inc_id)
            if inc is None:
                raise LookupError(inc_id)
            if inc.state in FINAL:
                raise TransitionError(f"incident is {inc.state}")
            order = STAGES.index(inc.state)
            if action == "acknowledge":
                if inc.state != "new":
                    raise TransitionError(f"already {inc.state}")
                return self._set_state(cur, inc, "acknowledged", at_ms, actor, note, sinks)
            if action == "dispatch":
                if not unit:
                    raise TransitionError("dispatch needs a unit")
                if order >= STAGES.index("on_scene"):
                    raise TransitionError(f"already {inc.state}")
                if inc.acknowledged_ms is None:
                    # Dispatching is acknowledging: the receive->acknowledge clock stops too.
                    inc.acknowledged_ms = at_ms
                    self._exec(cur, "UPDATE incidents SET acknowledged_ms = ? WHERE id = ?", (at_ms, inc.id))
                inc.unit = unit
                self._exec(cur, "UPDATE incidents SET unit = ? WHERE id = ?", (unit, inc.id))
                return self._set_state(cur, inc, "dispatched", at_ms, actor, note, sinks)
            if action == "en_route":
                if inc.state != "dispatched":
                    raise TransitionError(f"not dispatched but {inc.state}")
                self._event(cur, inc, "en_route", at_ms, actor, note, sinks)
                return inc
            if action == "on_scene":
                if order >= STAGES.index("on_scene"):
                    raise TransitionError(f"already {inc.state}")
                return self._set_state(cur, inc, "on_scene", at_ms, actor, note, sinks)
            if action == "resolve":
                return self._set_state(cur, inc, "resolved", at_ms, actor, note, sinks)
            if action == "false_alarm":
                return self._set_state(cur, inc, "cancelled", at_ms, actor, note or "false alarm", sinks)
            raise TransitionError(f"unknown action {action!r}")

    def _set_state(self, cur, inc: Incident, state: str, at_ms: int, actor: str,
                   note: str | None, sinks: list[str]) -> Incident:
        setattr(inc, f"{state}_ms", at_ms)
        inc.state = state
        inc.updated_ms = at_ms
        self._exec(cur, f"UPDATE incidents SET state = ?, {state}_ms = ?, updated_ms = ? WHERE id = ?",
                   (state, at_ms, at_ms, inc.id))
        self._event(cur, inc, state, at_ms, actor, note, sinks)
        return inc

    def _event(self, cur, inc: Incident, stage: str, at_ms: int, actor: str,
               note: str | None, sinks: list[str]) -> None:
        self._exec(cur, "INSERT INTO events (incident_id, stage, at_ms, actor, note) VALUES (?, ?, ?, ?, ?)",
                   (inc.id, stage, at_ms, actor, note))
        payload = json.dumps({"event": stage, "at_ms": at_ms, "actor": actor, "incident": inc.to_json()})
        for sink in sinks:
            self._exec(cur, "INSERT INTO forwards (sink, incident_id, idem_key, payload, created_ms, next_ms) "
                            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                       (sink, inc.id, f"{inc.id}:{stage}", payload, at_ms, at_ms))

    # --- forwarding queue ------------------------------------------------------------
    def due_forwards(self, sink: str, now_ms: int, limit: int = 50) -> list[tuple]:
        return self._rows("SELECT id, idem_key, payload, created_ms, attempts FROM forwards "
                          "WHERE sink = ? AND delivered_ms IS NULL AND dead = 0 AND next_ms <= ? "
                          "ORDER BY id LIMIT ?", (sink, now_ms, limit))

    def forward_done(self, fid: int, now_ms: int) -> None:
        with self._tx() as cur:
            self._exec(cur, "UPDATE forwards SET delivered_ms = ?, attempts = attempts + 1 WHERE id = ?",
                       (now_ms, fid))

    def forward_failed(self, fid: int, next_ms: int, error: str, dead: bool) -> None:
        with self._tx() as cur:
            self._exec(cur, "UPDATE forwards SET next_ms = ?, attempts = attempts + 1, last_error = ?, "
                            "dead = ? WHERE id = ?", (next_ms, error[:500], int(dead), fid))

    def forward_stats(self) -> list[dict]:
        rows = self._rows("SELECT sink, SUM(CASE WHEN delivered_ms IS NULL AND dead = 0 THEN 1 ELSE 0 END), "
                          "SUM(CASE WHEN delivered_ms IS NOT NULL THEN 1 ELSE 0 END), SUM(dead) "
                          "FROM forwards GROUP BY sink")
        return [dict(sink=s, pending=p or 0, delivered=d or 0, dead=x or 0) for s, p, d, x in rows]

    # --- API tokens ------------------------------------------------------------------
    def add_token(self, token_hash: str, role: str, name: str, now_ms: int) -> None:
        with self._tx() as cur:
            self._exec(cur, "INSERT INTO tokens (hash, role, name, created_ms) VALUES (?, ?, ?, ?)",
                       (token_hash, role, name, now_ms))

    def token(self, token_hash: str) -> tuple[str, str] | None:
        rows = self._rows("SELECT role, name FROM tokens WHERE hash = ?", (token_hash,))
        return (rows[0][0], rows[0][1]) if rows else None
