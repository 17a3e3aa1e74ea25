"""Store logic shared by SQLite and PostgreSQL: plain SQL with `?` placeholders.

Each subclass supplies a connection, a transaction context and its placeholder.
Every write the gateway acks for happens inside one committed transaction first.
Statements that several gateways may race on (two copies of one alert, a forward
claimed by two forwarders, an escalation seen by two sweeps) are written so that the
database decides who wins: INSERT ... ON CONFLICT DO NOTHING, conditional UPDATEs,
row locks on PostgreSQL.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

from ..domain.lifecycle import TransitionError
from ..ids import incident_id
from ..models import ACK_STAGE, FINAL, STAGES, Alert, Device, Incident, Outcome
from .schema import MIGRATIONS

DEVICE_COLS = [f.name for f in fields(Device)]
INCIDENT_COLS = [f.name for f in fields(Incident) if f.name != "device"]
HEALTH_COLS = ["dev", "state", "health", "low_battery", "backlog", "fw", "boot", "up", "batt", "rssi",
               "outbox", "heartbeat_s", "last_status_ms", "silent_at_ms", "changed_ms"]
# Events about a device rather than an incident: go only to sinks that ask for them.
DEVICE_EVENTS = ("health", "policy")


@dataclass
class FalseAlarmPolicy:
    """After `limit` operator-marked false alarms within `window_ms`, flag or suspend the device."""
    limit: int = 3
    window_ms: int = 30 * 86400 * 1000
    action: str = "flag"  # flag | suspend


REUSE_TOLERANCE_MS = 1000


def _reused(stored_body: str, a: Alert) -> bool:
    """A retransmission carries the press time it was journaled with; a synced press time
    that differs means a new press under an id from an earlier life of the board (flash
    wiped, boot counter restarted). Unsynced presses cannot tell, and count as duplicates."""
    if a.t is None:
        return False
    try:
        t = json.loads(stored_body).get("t")
    except ValueError:
        return False
    return type(t) is int and abs(t - a.t) > REUSE_TOLERANCE_MS


class Store:
    placeholder = "?"
    serial = "INTEGER PRIMARY KEY"

    # Row locks where a database has them (PostgreSQL); SQLite serialises writers anyway.
    for_update = ""
    skip_locked = ""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        # sink -> events it takes; a sink not listed takes every incident event.
        self.routes: dict[str, frozenset[str] | None] = {}
        self.false_alarm = FalseAlarmPolicy()
        # Called after a committed transition with (state before, incident after): metrics.
        self.on_transition: Callable[[str, Incident], None] | None = None

    # --- plumbing each database provides -------------------------------------------
    def _connect(self):  # pragma: no cover - abstract
        raise NotImplementedError

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
                if version <= current:
                    continue
                for stmt in statements:
                    self._exec(cur, stmt.format(serial=self.serial))
                self._exec(cur, "INSERT INTO schema_version (version) VALUES (?)", (version,))
            return len(MIGRATIONS)

    # --- devices -------------------------------------------------------------------
    def _bump_registry(self, cur) -> None:
        # Gateways cache devices; a new version makes every gateway drop its cache at its
        # next batch, so a rotated secret or a suspension takes effect at once.
        self._exec(cur, "UPDATE meta SET value = value + 1 WHERE key = 'registry_version'")

    def registry_version(self) -> int:
        rows = self._read("SELECT value FROM meta WHERE key = 'registry_version'")
        return rows[0][0] if rows else 0

    def add_device(self, device: Device) -> None:
        self.add_devices([device])

    def add_devices(self, devices: list[Device]) -> None:
        cols = ", ".join(DEVICE_COLS)
        marks = ", ".join("?" * len(DEVICE_COLS))
        with self._tx() as cur:
            for device in devices:
                self._exec(cur, f"INSERT INTO devices ({cols}) VALUES ({marks})",
                           [getattr(device, c) for c in DEVICE_COLS])
            self._bump_registry(cur)

    def update_device(self, dev: str, **changes) -> bool:
        unknown = set(changes) - set(DEVICE_COLS)
        if unknown:
            raise ValueError(f"no device fields {sorted(unknown)}")
        sets = ", ".join(f"{k} = ?" for k in changes)
        with self._tx() as cur:
            n = self._exec(cur, f"UPDATE devices SET {sets} WHERE id = ?", [*changes.values(), dev]).rowcount
            self._bump_registry(cur)
            return n > 0

    def remove_device(self, dev: str) -> bool:
        with self._tx() as cur:
            n = self._exec(cur, "DELETE FROM devices WHERE id = ?", (dev,)).rowcount
            self._exec(cur, "DELETE FROM device_health WHERE dev = ?", (dev,))
            self._bump_registry(cur)
            return n > 0

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

    def _insert_alert(self, cur, a: Alert, inc_id: str | None) -> bool:
        """False when the id is known. ON CONFLICT makes the database the judge: on
        PostgreSQL a second gateway inserting the same id waits for the first to commit."""
        return self._exec(cur, "INSERT INTO alerts (id, dev, kind, incident_id, received_ms, body) "
                               "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                          (a.id, a.dev, a.kind, inc_id, a.received_ms, a.body)).rowcount > 0

    def _duplicate(self, cur, a: Alert) -> Outcome:
        row = self._exec(cur, "SELECT incident_id, body FROM alerts WHERE id = ?", (a.id,)).fetchone()
        if row and _reused(row[1], a):
            # Not a retransmission but a new press under an old id: acking it as a
            # duplicate would swallow it. The button re-keys it above `floor`.
            return Outcome(a, None, created=False, duplicate=False, stage="rejected", reason="id_reuse",
                           floor=self._max_boot(cur, a.dev))
        inc = self._incident(cur, row[0]) if row and row[0] else None
        stage = ACK_STAGE[inc.state] if inc else "rejected"
        if a.kind == "cancel" and inc is not None:
            stage = "cancelled"
        return Outcome(a, inc, created=False, duplicate=True, stage=stage,
                       reason=None if inc else "unknown ref")

    def _max_boot(self, cur, dev: str) -> int:
        ids = self._exec(cur, "SELECT id FROM alerts WHERE dev = ?", (dev,)).fetchall()
        return max((int(i.rsplit(":", 2)[1]) for (i,) in ids), default=0)

    def boot_floor(self, dev: str) -> int:
        """The highest boot number this device has used: a re-flashed button starts above it."""
        with self._tx() as cur:
            return self._max_boot(cur, dev)

    def _ingest_one(self, cur, a: Alert, sinks: list[str]) -> Outcome:
        if a.kind == "cancel":
            return self._cancel(cur, a, sinks)
        inc = Incident(
            id=incident_id(a.id), alert_id=a.id, dev=a.dev, kind=a.kind, state="new",
            press_ms=a.press_ms, received_ms=a.received_ms, lat6=a.lat6, lon6=a.lon6,
            acc=a.acc, src=a.src, batt=a.batt, rssi=a.rssi,
            clock="device" if a.t is not None else "age", updated_ms=a.received_ms)
        if not self._insert_alert(cur, a, inc.id):
            return self._duplicate(cur, a)
        cols = ", ".join(INCIDENT_COLS)
        self._exec(cur, f"INSERT INTO incidents ({cols}) VALUES ({', '.join('?' * len(INCIDENT_COLS))})",
                   [getattr(inc, c) for c in INCIDENT_COLS])
        self._event(cur, inc, "new", a.received_ms, f"device:{a.dev}", None, sinks)
        return Outcome(a, inc, created=True, duplicate=False, stage="received")

    def _cancel(self, cur, a: Alert, sinks: list[str]) -> Outcome:
        row = self._exec(cur, "SELECT incident_id FROM alerts WHERE id = ? AND dev = ?",
                         (a.ref, a.dev)).fetchone()
        inc_id = row[0] if row and row[0] else None
        if not self._insert_alert(cur, a, inc_id):
            return self._duplicate(cur, a)
        inc = self._incident(cur, inc_id, lock=True) if inc_id else None
        if inc is None:
            return Outcome(a, None, created=False, duplicate=False, stage="rejected", reason="unknown ref")
        if inc.state not in FINAL:
            inc = self._set_state(cur, inc, "cancelled", a.received_ms, f"device:{a.dev}",
                                  "cancelled from the button", sinks)
        return Outcome(a, inc, created=False, duplicate=False, stage="cancelled")

    # --- incidents -----------------------------------------------------------------
    def _incident(self, cur, inc_id: str, lock: bool = False) -> Incident | None:
        row = self._exec(cur, f"SELECT {', '.join(INCIDENT_COLS)} FROM incidents WHERE id = ?"
                              f"{self.for_update if lock else ''}", (inc_id,)).fetchone()
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
            # Locked: two operators on two gateways cannot both acknowledge one incident.
            inc = self._incident(cur, inc_id, lock=True)
            if inc is None:
                raise LookupError(inc_id)
            before = inc.state
            inc = self._transition(cur, inc, action, actor, at_ms, sinks, note, unit)
        if self.on_transition is not None and inc.state != before:
            self.on_transition(before, inc)
        return inc

    def _transition(self, cur, inc: Incident, action: str, actor: str, at_ms: int, sinks: list[str],
                    note: str | None, unit: str | None) -> Incident:
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
            inc.false_alarm = 1
            self._exec(cur, "UPDATE incidents SET false_alarm = 1 WHERE id = ?", (inc.id,))
            inc = self._set_state(cur, inc, "cancelled", at_ms, actor, note or "false alarm", sinks)
            self._apply_false_alarm_policy(cur, inc.dev, at_ms)
            return inc
        raise TransitionError(f"unknown action {action!r}")

    def _apply_false_alarm_policy(self, cur, dev: str, at_ms: int) -> None:
        p = self.false_alarm
        if p.limit <= 0:
            return
        count = self._exec(cur, "SELECT COUNT(*) FROM incidents WHERE dev = ? AND false_alarm = 1 "
                                "AND cancelled_ms >= ?", (dev, at_ms - p.window_ms)).fetchone()[0]
        if count < p.limit:
            return
        days = p.window_ms / 86_400_000
        reason = f"{count} false alarms within {days:g} days"
        if p.action == "suspend":
            n = self._exec(cur, "UPDATE devices SET status = 'suspended', flag = ? WHERE id = ? AND status = 'active'",
                           (f"suspended: {reason}", dev)).rowcount
        else:
            n = self._exec(cur, "UPDATE devices SET flag = ? WHERE id = ? AND flag = ''",
                           (f"review: {reason}", dev)).rowcount
        if n:
            self._bump_registry(cur)
            self._device_event(cur, dev, "policy", at_ms, {"action": p.action, "false_alarms": count,
                                                           "reason": reason})

    def _set_state(self, cur, inc: Incident, state: str, at_ms: int, actor: str,
                   note: str | None, sinks: list[str]) -> Incident:
        setattr(inc, f"{state}_ms", at_ms)
        inc.state = state
        inc.updated_ms = at_ms
        self._exec(cur, f"UPDATE incidents SET state = ?, {state}_ms = ?, updated_ms = ? WHERE id = ?",
                   (state, at_ms, at_ms, inc.id))
        self._event(cur, inc, state, at_ms, actor, note, sinks)
        return inc

    def _takes(self, sink: str, event: str) -> bool:
        events = self.routes.get(sink)
        if events is None:
            return event not in DEVICE_EVENTS
        return event in events

    def _event(self, cur, inc: Incident, stage: str, at_ms: int, actor: str,
               note: str | None, sinks: list[str]) -> None:
        self._exec(cur, "INSERT INTO events (incident_id, stage, at_ms, actor, note) VALUES (?, ?, ?, ?, ?)",
                   (inc.id, stage, at_ms, actor, note))
        payload = json.dumps({"event": stage, "at_ms": at_ms, "actor": actor, "incident": inc.to_json()})
        for sink in sinks:
            if self._takes(sink, stage):
                self._enqueue(cur, sink, inc.id, f"{inc.id}:{stage}", payload, at_ms)

    def _enqueue(self, cur, sink: str, subject: str, idem_key: str, payload: str, at_ms: int) -> None:
        self._exec(cur, "INSERT INTO forwards (sink, incident_id, idem_key, payload, created_ms, next_ms) "
                        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                   (sink, subject, idem_key, payload, at_ms, at_ms))

    # --- escalation ----------------------------------------------------------------
    def escalate_due(self, now_ms: int, after_ms: int, sinks: list[str]) -> list[Incident]:
        """Flag every incident still `new` after `after_ms` and queue an `escalated` event.

        The conditional UPDATE is the claim: of two gateways sweeping at once, one escalates."""
        out: list[Incident] = []
        with self._tx() as cur:
            rows = self._exec(cur, f"SELECT {', '.join(INCIDENT_COLS)} FROM incidents "
                                   "WHERE state = 'new' AND escalated = 0 AND received_ms <= ? "
                                   "ORDER BY received_ms LIMIT 500", (now_ms - after_ms,)).fetchall()
            for row in rows:
                inc = Incident(*row)
                n = self._exec(cur, "UPDATE incidents SET escalated = 1, escalated_ms = ? "
                                    "WHERE id = ? AND escalated = 0 AND state = 'new'", (now_ms, inc.id)).rowcount
                if not n:
                    continue
                inc.escalated, inc.escalated_ms = 1, now_ms
                waited = (now_ms - inc.received_ms) // 1000
                self._event(cur, inc, "escalated", now_ms, "gateway", f"not acknowledged after {waited} s", sinks)
                out.append(inc)
        return out

    # --- forwarding queue ------------------------------------------------------------
    def due_forwards(self, sink: str, now_ms: int, limit: int = 50) -> list[tuple]:
        return self._rows("SELECT id, idem_key, payload, created_ms, attempts FROM forwards "
                          "WHERE sink = ? AND delivered_ms IS NULL AND dead = 0 AND next_ms <= ? "
                          "ORDER BY id LIMIT ?", (sink, now_ms, limit))

    def has_due(self, sink: str, now_ms: int) -> bool:
        """Whether a claim could find anything: a read, so an idle sink woken by every
        stored batch does not take the write lock from ingest for nothing."""
        return bool(self._read("SELECT 1 FROM forwards WHERE sink = ? AND delivered_ms IS NULL AND dead = 0 "
                               "AND next_ms <= ? LIMIT 1", (sink, now_ms)))

    def _read(self, sql: str, args: tuple | list = ()) -> list[tuple]:
        return self._rows(sql, args)

    def claim_forwards(self, sink: str, owner: str, now_ms: int, lease_ms: int, limit: int = 50) -> list[tuple]:
        """Lease due entries to one forwarder: (id, idem_key, payload, created_ms, attempts).

        Several gateways drain one queue: a leased entry is not handed out again until its
        lease runs out (a forwarder killed mid-delivery), SKIP LOCKED keeps two claims from
        blocking each other, and an entry is only claimed when no earlier entry of the same
        incident is still pending, so a sink sees each incident's events in order."""
        sql = ("UPDATE forwards SET lease_until = ?, lease_owner = ? WHERE id IN ("
               " SELECT f.id FROM forwards f WHERE f.sink = ? AND f.delivered_ms IS NULL AND f.dead = 0"
               " AND f.next_ms <= ? AND (f.lease_until < ? OR f.lease_owner = ?)"
               " AND NOT EXISTS (SELECT 1 FROM forwards e WHERE e.sink = f.sink"
               "  AND e.incident_id = f.incident_id AND e.id < f.id AND e.delivered_ms IS NULL AND e.dead = 0)"
               f" ORDER BY f.id LIMIT ?{self.skip_locked}) "
               "RETURNING id, idem_key, payload, created_ms, attempts")
        with self._tx() as cur:
            rows = self._exec(cur, sql, (now_ms + lease_ms, owner, sink, now_ms, now_ms, owner, limit)).fetchall()
        return sorted(rows)

    def release_forwards(self, fids: list[int]) -> None:
        if not fids:
            return
        with self._tx() as cur:
            for fid in fids:
                self._exec(cur, "UPDATE forwards SET lease_until = 0, lease_owner = NULL WHERE id = ?", (fid,))

    def forwards_done(self, fids: list[int], now_ms: int) -> None:
        if not fids:
            return
        with self._tx() as cur:
            for fid in fids:
                self._exec(cur, "UPDATE forwards SET delivered_ms = ?, attempts = attempts + 1, lease_until = 0 "
                                "WHERE id = ?", (now_ms, fid))

    def forward_failed(self, fid: int, next_ms: int, error: str, dead: bool) -> None:
        with self._tx() as cur:
            self._exec(cur, "UPDATE forwards SET next_ms = ?, attempts = attempts + 1, last_error = ?, "
                            "dead = ?, lease_until = 0, lease_owner = NULL WHERE id = ?",
                       (next_ms, error[:500], int(dead), fid))

    def forward_stats(self) -> list[dict]:
        rows = self._rows("SELECT sink, SUM(CASE WHEN delivered_ms IS NULL AND dead = 0 THEN 1 ELSE 0 END), "
                          "SUM(CASE WHEN delivered_ms IS NOT NULL THEN 1 ELSE 0 END), SUM(dead) "
                          "FROM forwards GROUP BY sink ORDER BY sink")
        return [dict(sink=s, pending=int(p or 0), delivered=int(d or 0), dead=int(x or 0)) for s, p, d, x in rows]

    def dead_forwards(self, sink: str | None = None, limit: int = 500) -> list[dict]:
        sql = ("SELECT id, sink, incident_id, idem_key, created_ms, attempts, last_error, payload "
               "FROM forwards WHERE dead = 1")
        args: list = []
        if sink:
            sql += " AND sink = ?"
            args.append(sink)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [dict(id=i, sink=s, subject=subj, idem_key=k, created_ms=c, attempts=a, last_error=e,
                     payload=json.loads(p)) for i, s, subj, k, c, a, e, p in self._rows(sql, args)]

    def retry_forward(self, fid: int, now_ms: int) -> bool:
        """Put a dead letter back in its queue (an operator fixed the sink)."""
        with self._tx() as cur:
            return self._exec(cur, "UPDATE forwards SET dead = 0, next_ms = ?, created_ms = ?, lease_until = 0 "
                                   "WHERE id = ? AND dead = 1", (now_ms, now_ms, fid)).rowcount > 0

    # --- device health ---------------------------------------------------------------
    def _device_event(self, cur, dev: str, event: str, at_ms: int, detail: dict) -> None:
        body = {"event": event, "at_ms": at_ms, "actor": "gateway", "device": {"id": dev, **detail}}
        text = json.dumps(body)
        eid = self._exec(cur, "INSERT INTO device_events (dev, event, at_ms, body) VALUES (?, ?, ?, ?) RETURNING id",
                         (dev, event, at_ms, text)).fetchone()[0]
        for sink, events in self.routes.items():
            if events is not None and event in events:
                self._enqueue(cur, sink, dev, f"{dev}:{event}:{eid}", text, at_ms)

    def _health_row(self, cur, dev: str, now_ms: int) -> dict:
        # Make sure the row exists, then lock it: two gateways both see every status.
        self._exec(cur, "INSERT INTO device_health (dev, state, health, changed_ms) VALUES (?, 'unknown', "
                        "'unknown', ?) ON CONFLICT (dev) DO NOTHING", (dev, now_ms))
        row = self._exec(cur, f"SELECT {', '.join(HEALTH_COLS)} FROM device_health WHERE dev = ?{self.for_update}",
                         (dev,)).fetchone()
        return dict(zip(HEALTH_COLS, row))

    def _health_change(self, cur, old: dict, new: dict, now_ms: int) -> dict | None:
        keys = ("health", "low_battery", "backlog")
        changed = any(old[k] != new[k] for k in keys)
        if changed:
            new["changed_ms"] = now_ms
        sets = ", ".join(f"{k} = ?" for k in HEALTH_COLS[1:])
        self._exec(cur, f"UPDATE device_health SET {sets} WHERE dev = ?",
                   [new[k] for k in HEALTH_COLS[1:]] + [new["dev"]])
        if not changed:
            return None
        detail = {k: new[k] for k in HEALTH_COLS[1:] if k != "changed_ms"}
        detail["low_battery"], detail["backlog"] = bool(new["low_battery"]), bool(new["backlog"])
        detail["was"] = old["health"]
        self._device_event(cur, new["dev"], "health", now_ms, detail)
        return {"id": new["dev"], **detail}

    def record_status(self, dev: str, status: dict, now_ms: int, *, retained: bool, heartbeat_s: int,
                      silent_factor: float, low_battery_pct: int, backlog_min: int) -> dict | None:
        """Merge one status message into the device's health; return the health event when
        its health, low-battery or backlog condition changed, else None."""
        with self._tx() as cur:
            old = self._health_row(cur, dev, now_ms)
            if retained and old["last_status_ms"] is not None:
                # A retained status replayed at our (re)subscribe says nothing new about liveness.
                return None
            new = dict(old)
            for k in ("state", "fw", "boot", "up", "batt", "rssi", "outbox"):
                if status.get(k) is not None:
                    new[k] = status[k]
            if status["state"] == "offline":
                new["outbox"] = old["outbox"]  # the will carries no counters: keep the last known
            new["heartbeat_s"] = status.get("hb") or old["heartbeat_s"] or heartbeat_s
            new["last_status_ms"] = now_ms
            new["silent_at_ms"] = now_ms + int(silent_factor * new["heartbeat_s"] * 1000)
            new["health"] = new["state"]
            new["low_battery"] = int(new["batt"] is not None and new["batt"] <= low_battery_pct)
            new["backlog"] = int(new["state"] != "offline" and (new["outbox"] or 0) >= backlog_min)
            return self._health_change(cur, old, new, now_ms)

    def sweep_silent(self, now_ms: int) -> list[dict]:
        """Mark online or sleeping devices whose next status is overdue as silent."""
        out = []
        with self._tx() as cur:
            devs = [r[0] for r in self._exec(cur, "SELECT dev FROM device_health WHERE health IN ('online', "
                                                  "'sleeping') AND silent_at_ms < ? LIMIT 1000", (now_ms,))]
            for dev in devs:
                old = self._health_row(cur, dev, now_ms)
                if old["health"] not in ("online", "sleeping") or old["silent_at_ms"] >= now_ms:
                    continue  # another gateway got there first
                new = dict(old, health="silent")
                change = self._health_change(cur, old, new, now_ms)
                if change:
                    out.append(change)
        return out

    def device_health(self, dev: str | None = None) -> dict[str, dict]:
        """Health per device id; devices never heard from are `unknown`."""
        sql = (f"SELECT d.id, {', '.join('h.' + c for c in HEALTH_COLS[1:])} FROM devices d "
               "LEFT JOIN device_health h ON h.dev = d.id")
        args: tuple = ()
        if dev is not None:
            sql += " WHERE d.id = ?"
            args = (dev,)
        out = {}
        for row in self._rows(sql, args):
            h = dict(zip(HEALTH_COLS, row))
            h["health"] = h["health"] or "unknown"
            h["state"] = h["state"] or "unknown"
            h["low_battery"], h["backlog"] = bool(h["low_battery"]), bool(h["backlog"])
            out[h.pop("dev")] = h
        return out

    def health_counts(self) -> dict[str, int]:
        rows = self._rows("SELECT COALESCE(h.health, 'unknown'), COUNT(*), SUM(COALESCE(h.low_battery, 0)), "
                          "SUM(COALESCE(h.backlog, 0)) FROM devices d LEFT JOIN device_health h ON h.dev = d.id "
                          "GROUP BY COALESCE(h.health, 'unknown')")
        counts = {k: 0 for k in ("online", "offline", "sleeping", "silent", "unknown", "low_battery", "backlog")}
        for health, n, low, backlog in rows:
            counts[health] = counts.get(health, 0) + int(n)
            counts["low_battery"] += int(low or 0)
            counts["backlog"] += int(backlog or 0)
        return counts

    def device_events(self, dev: str, limit: int = 50) -> list[dict]:
        rows = self._rows("SELECT body FROM device_events WHERE dev = ? ORDER BY id DESC LIMIT ?", (dev, limit))
        return [json.loads(r[0]) for r in rows]

    def false_alarms(self, dev: str, since_ms: int) -> int:
        return self._rows("SELECT COUNT(*) FROM incidents WHERE dev = ? AND false_alarm = 1 AND cancelled_ms >= ?",
                          (dev, since_ms))[0][0]

    # --- reports -------------------------------------------------------------------
    def report_incidents(self, since_ms: int, until_ms: int, kinds: tuple[str, ...]) -> list[tuple[Incident, str]]:
        """Incidents received in [since, until) with their device's kelurahan."""
        marks = ", ".join("?" * len(kinds))
        cols = ", ".join("i." + c for c in INCIDENT_COLS)
        rows = self._rows(f"SELECT {cols}, COALESCE(d.kelurahan, '') FROM incidents i "
                          f"LEFT JOIN devices d ON d.id = i.dev WHERE i.received_ms >= ? AND i.received_ms < ? "
                          f"AND i.kind IN ({marks}) ORDER BY i.received_ms", (since_ms, until_ms, *kinds))
        return [(Incident(*r[:-1]), r[-1]) for r in rows]

    # --- API tokens ------------------------------------------------------------------
    def add_token(self, token_hash: str, role: str, name: str, now_ms: int) -> None:
        with self._tx() as cur:
            self._exec(cur, "INSERT INTO tokens (hash, role, name, created_ms) VALUES (?, ?, ?, ?)",
                       (token_hash, role, name, now_ms))

    def token(self, token_hash: str) -> tuple[str, str] | None:
        rows = self._rows("SELECT role, name FROM tokens WHERE hash = ?", (token_hash,))
        return (rows[0][0], rows[0][1]) if rows else None
