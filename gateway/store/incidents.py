"""Alerts and incidents: ingest (group commit, duplicates, cancels), the lifecycle applied
inside a locked transaction, the false-alarm policy, escalation and the reads the report and
the console need.

The rules come from gateway/domain (lifecycle, policy); this part only stores their results.
"""
from __future__ import annotations

import json
from dataclasses import fields
from typing import NamedTuple

from .. import crashpoints
from ..domain import lifecycle, open_cap
from ..domain.lifecycle import ACK_STAGE, FINAL
from ..domain.policy import decide
from ..ids import incident_id
from ..models import Alert, Incident, Outcome
from .deliveries import DeliveriesMixin

INCIDENT_COLS = [f.name for f in fields(Incident) if f.name != "device"]
_COLS = ", ".join(INCIDENT_COLS)
_FINALS = ", ".join(f"'{s}'" for s in FINAL)

REUSE_TOLERANCE_MS = 1000


class ReportRow(NamedTuple):
    incident: Incident
    kelurahan: str


class IncidentEvent(NamedTuple):
    """One step of an incident's timeline."""
    stage: str
    at_ms: int
    actor: str
    note: str | None


def _scoped(where: str, args: list, units: frozenset[str] | None) -> tuple[str, list]:
    """`where` narrowed to incidents dispatched to `units` (None: no narrowing; empty: none)."""
    if units is None:
        return where, list(args)
    if not units:
        return f"{where} AND 1 = 0", list(args)
    return f"{where} AND unit IN ({', '.join('?' * len(units))})", [*args, *sorted(units)]


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


class IncidentsMixin(DeliveriesMixin):
    # 0: no cap. open_store sets [gateway] open_incidents_per_device for every process.
    open_per_device: int = 0

    # --- ingest --------------------------------------------------------------------
    def ingest(self, alerts: list[Alert]) -> list[Outcome]:
        """Store a batch of validated alerts in one transaction (group commit).

        A known alert id is a duplicate: it gets the ack it got before, never a new incident;
        over a path it had not come by, it adds a delivery row (deliveries.py).
        """
        with self._tx() as cur:
            outcomes = [self._record_delivery(cur, self._ingest_one(cur, alert)) for alert in alerts]
            crashpoints.reach("ingest_before_commit")
            return outcomes

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

    def _ingest_one(self, cur, a: Alert) -> Outcome:
        if a.kind == "cancel":
            return self._cancel(cur, a)
        inc = Incident(
            id=incident_id(a.id), alert_id=a.id, dev=a.dev, kind=a.kind, state="new",
            press_ms=a.press_ms, received_ms=a.received_ms, lat6=a.lat6, lon6=a.lon6,
            acc=a.acc, src=a.src, batt=a.batt, rssi=a.rssi,
            clock="device" if a.t is not None else "age", updated_ms=a.received_ms, path=a.path)
        if self.open_per_device > 0:
            # Only this device's open incidents, newest first: at most the cap is ever read.
            held = self._exec(cur, f"SELECT id FROM incidents WHERE dev = ? AND state NOT IN ({_FINALS}) "
                                   "ORDER BY received_ms DESC LIMIT ?", (a.dev, self.open_per_device)).fetchall()
            if open_cap.folds(len(held), self.open_per_device):
                return self._fold(cur, a, held[0][0])
        if not self._insert_alert(cur, a, inc.id):
            return self._duplicate(cur, a)
        self._exec(cur, f"INSERT INTO incidents ({_COLS}) VALUES ({', '.join('?' * len(INCIDENT_COLS))})",
                   [getattr(inc, c) for c in INCIDENT_COLS])
        self._event(cur, inc, "new", a.received_ms, f"device:{a.dev}", None)
        return Outcome(a, inc, created=True, duplicate=False, stage="received")

    def _fold(self, cur, a: Alert, newest_open: str) -> Outcome:
        """Past the device's cap: the alert is kept and acked, attached to its newest open
        incident (a retransmission of one already kept stays a duplicate)."""
        if not self._insert_alert(cur, a, newest_open):
            return self._duplicate(cur, a)
        inc = self._incident(cur, newest_open)
        assert inc is not None  # read in this transaction
        # On the incident's timeline (and so in the console's live stream), not a lifecycle
        # stage: the sinks are told of the incident, not of every alert attached to it.
        self._exec(cur, "INSERT INTO events (incident_id, stage, at_ms, actor, note) VALUES (?, ?, ?, ?, ?)",
                   (inc.id, "alert_folded", a.received_ms, f"device:{a.dev}",
                    f"alert {a.id}: over {self.open_per_device} open incidents from this button"))
        if self._exec(cur, "UPDATE devices SET flag = ? WHERE id = ? AND flag = ''",
                      (open_cap.FLAG.format(cap=self.open_per_device), a.dev)).rowcount:
            self._bump_registry(cur)
            self._device_event(cur, a.dev, "policy", a.received_ms, {"action": "flag", "reason": "open_cap"})
        return Outcome(a, inc, created=False, duplicate=False, stage=ACK_STAGE[inc.state], reason="open_cap")

    def _cancel(self, cur, a: Alert) -> Outcome:
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
                                  "cancelled from the button")
        return Outcome(a, inc, created=False, duplicate=False, stage="cancelled")

    # --- incidents -----------------------------------------------------------------
    def _incident(self, cur, inc_id: str, *, lock: bool = False) -> Incident | None:
        row = self._exec(cur, f"SELECT {_COLS} FROM incidents WHERE id = ?"
                              f"{self.for_update if lock else ''}", (inc_id,)).fetchone()
        return Incident(*row) if row else None

    def get_incident(self, inc_id: str) -> Incident | None:
        """The incident with its device's public fields."""
        with self._reading() as cur:
            inc = self._incident(cur, inc_id)
            if inc is not None:
                dev = self._device(cur, inc.dev)
                inc.device = dev.public() if dev else None
            return inc

    def _incidents(self, where: str, args: list, order: str, limit: int | None) -> list[Incident]:
        tail = " LIMIT ?" if limit is not None else ""
        rows = self._rows(f"SELECT {_COLS} FROM incidents WHERE {where} ORDER BY {order}{tail}",
                          [*args, limit] if limit is not None else list(args))
        return [Incident(*r) for r in rows]

    def list_incidents(self, since_ms: int = 0, limit: int = 500, state: str | None = None, *,
                       units: frozenset[str] | None = None) -> list[Incident]:
        """Newest first: every open incident, never cut by `limit` (a flood of newer alerts
        must not hide a call still waiting), and up to `limit` closed ones. `units`: only
        incidents dispatched to these (domain/visibility.py); None for all."""
        where, args = _scoped("received_ms >= ?", [since_ms], units)
        if state:
            where += " AND state = ?"
            args.append(state)
        opened = self._incidents(f"{where} AND state NOT IN ({_FINALS})", args, "received_ms DESC", None)
        closed = self._incidents(f"{where} AND state IN ({_FINALS})", args, "received_ms DESC", limit)
        return sorted(opened + closed, key=lambda i: i.received_ms, reverse=True)

    def open_and_recent(self, now_ms: int, recent_ms: int = 2 * 3600_000, *,
                        units: frozenset[str] | None = None) -> list[Incident]:
        """Every open incident, oldest first and never cut by a limit (the longest wait on
        top), then up to 50 closed within `recent_ms`, newest first."""
        where, args = _scoped(f"state NOT IN ({_FINALS})", [], units)
        closed, cargs = _scoped(f"state IN ({_FINALS}) AND updated_ms >= ?", [now_ms - recent_ms], units)
        return (self._incidents(where, args, "received_ms", None)
                + self._incidents(closed, cargs, "updated_ms DESC", 50))

    def incidents_by_id(self, ids: list[str], *, units: frozenset[str] | None = None) -> list[Incident]:
        if not ids:
            return []
        where, args = _scoped(f"id IN ({', '.join('?' * len(ids))})", list(ids), units)
        return self._incidents(where, args, "received_ms DESC", len(ids))

    def open_for_unit(self, unit: str) -> list[Incident]:
        return self._incidents(f"unit = ? AND state NOT IN ({_FINALS})", [unit], "received_ms DESC", 50)

    def events(self, inc_id: str) -> list[IncidentEvent]:
        rows = self._rows("SELECT stage, at_ms, actor, note FROM events WHERE incident_id = ? ORDER BY id",
                          (inc_id,))
        return [IncidentEvent(*r) for r in rows]

    def event_cursor(self) -> int:
        """The latest event id: event ids only grow."""
        return self._rows("SELECT MAX(id) FROM events")[0][0] or 0

    def changed_after(self, cursor: int) -> tuple[int, list[str]]:
        """Incidents with an event after `cursor`, and the new cursor. Every change writes an
        event, so one indexed range read finds them all."""
        rows = self._rows("SELECT id, incident_id FROM events WHERE id > ? ORDER BY id LIMIT 1000", (cursor,))
        if not rows:
            return cursor, []
        return rows[-1][0], list(dict.fromkeys(r[1] for r in rows))

    def units(self) -> list[str]:
        """Units an operator can dispatch to: responders' units and any used before."""
        rows = self._rows("SELECT unit FROM console_users WHERE unit != '' UNION "
                          "SELECT DISTINCT unit FROM incidents WHERE unit IS NOT NULL")
        return sorted({r[0] for r in rows if r[0]})

    def mark_escalated(self, inc_id: str, at_ms: int) -> bool:
        """Flag an incident escalated without queueing anything (seeding a console view)."""
        with self._tx() as cur:
            return self._exec(cur, "UPDATE incidents SET escalated = 1, escalated_ms = ? WHERE id = ?",
                              (at_ms, inc_id)).rowcount > 0

    # --- the lifecycle ---------------------------------------------------------------
    def transition(self, inc_id: str, action: str, actor: str, at_ms: int, *, role: str,
                   note: str | None = None, unit: str | None = None, actor_unit: str | None = None) -> Incident:
        """Apply an operator's or responder's action. Raises LookupError for an unknown
        incident, lifecycle.Forbidden when the role may not (or not on this incident: a field
        role's `actor_unit` must be the incident's), TransitionError when it does not fit.
        The web always passes `actor_unit`; None is for trusted local callers."""
        with self._tx() as cur:
            # Locked: two operators on two gateways cannot both acknowledge one incident.
            inc = self._incident(cur, inc_id, lock=True)
            if inc is None:
                raise LookupError(inc_id)
            before = inc.state
            inc = self._apply(cur, inc, action, actor, at_ms, role=role, note=note, unit=unit,
                              actor_unit=actor_unit)
        if self.on_transition is not None and inc.state != before:
            self.on_transition(before, inc)
        return inc

    def _apply(self, cur, inc: Incident, action: str, actor: str, at_ms: int, *, role: str,
               note: str | None, unit: str | None, actor_unit: str | None = None) -> Incident:
        t = lifecycle.check(action, inc.state, role, unit=unit, incident_unit=inc.unit, actor_unit=actor_unit)
        if action == "dispatch":
            if inc.acknowledged_ms is None:
                # Dispatching is acknowledging: the receive->acknowledge clock stops too.
                inc.acknowledged_ms = at_ms
                self._exec(cur, "UPDATE incidents SET acknowledged_ms = ? WHERE id = ?", (at_ms, inc.id))
            inc.unit = unit
            self._exec(cur, "UPDATE incidents SET unit = ? WHERE id = ?", (unit, inc.id))
        if action == "false_alarm":
            inc.false_alarm = 1
            self._exec(cur, "UPDATE incidents SET false_alarm = 1 WHERE id = ?", (inc.id,))
            note = note or "false alarm"
        if t.to_state is None:
            self._event(cur, inc, action, at_ms, actor, note)
            return inc
        inc = self._set_state(cur, inc, t.to_state, at_ms, actor, note)
        if action == "false_alarm":
            self._apply_false_alarm_policy(cur, inc.dev, at_ms)
        return inc

    def _set_state(self, cur, inc: Incident, state: str, at_ms: int, actor: str, note: str | None) -> Incident:
        setattr(inc, f"{state}_ms", at_ms)
        inc.state = state
        inc.updated_ms = at_ms
        self._exec(cur, f"UPDATE incidents SET state = ?, {state}_ms = ?, updated_ms = ? WHERE id = ?",
                   (state, at_ms, at_ms, inc.id))
        self._event(cur, inc, state, at_ms, actor, note)
        return inc

    # --- the false-alarm policy --------------------------------------------------------
    def _false_alarm_count(self, cur, dev: str, since_ms: int) -> int:
        return self._exec(cur, "SELECT COUNT(*) FROM incidents WHERE dev = ? AND false_alarm = 1 "
                               "AND cancelled_ms >= ?", (dev, since_ms)).fetchone()[0]

    def _apply_false_alarm_policy(self, cur, dev: str, at_ms: int) -> None:
        p = self.false_alarm
        if p.limit <= 0:
            return
        d = decide(p, self._false_alarm_count(cur, dev, p.since(at_ms)))
        if d is None:
            return
        if d.action == "suspend":
            n = self._exec(cur, "UPDATE devices SET status = 'suspended', flag = ? WHERE id = ? AND status = 'active'",
                           (d.flag, dev)).rowcount
        else:
            n = self._exec(cur, "UPDATE devices SET flag = ? WHERE id = ? AND flag = ''", (d.flag, dev)).rowcount
        if n:
            self._bump_registry(cur)
            self._device_event(cur, dev, "policy", at_ms, {"action": d.action, "false_alarms": d.count,
                                                           "reason": d.reason})

    def false_alarms(self, dev: str, since_ms: int) -> int:
        """Operator-marked false alarms of one device since `since_ms`."""
        with self._reading() as cur:
            return self._false_alarm_count(cur, dev, since_ms)

    def false_alarm_counts(self, devs: list[str], since_ms: int) -> dict[str, int]:
        """The same count for many devices; devices without any are left out."""
        if not devs:
            return {}
        marks = ", ".join("?" * len(devs))
        rows = self._rows(f"SELECT dev, COUNT(*) FROM incidents WHERE false_alarm = 1 AND cancelled_ms >= ? "
                          f"AND dev IN ({marks}) GROUP BY dev", [since_ms, *devs])
        return {d: int(n) for d, n in rows}

    # --- escalation ----------------------------------------------------------------
    def escalate_due(self, now_ms: int, after_ms: int) -> list[Incident]:
        """Flag every incident still `new` after `after_ms` and queue an `escalated` event.

        The conditional UPDATE is the claim: of two gateways sweeping at once, one escalates."""
        out: list[Incident] = []
        with self._tx() as cur:
            rows = self._exec(cur, f"SELECT {_COLS} FROM incidents "
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
                self._event(cur, inc, "escalated", now_ms, "gateway", f"not acknowledged after {waited} s")
                out.append(inc)
        return out

    # --- reports -------------------------------------------------------------------
    def report_incidents(self, since_ms: int, until_ms: int, kinds: tuple[str, ...]) -> list[ReportRow]:
        """Incidents received in [since, until) with their device's kelurahan (domain/sla.py:
        the period is by received time)."""
        marks = ", ".join("?" * len(kinds))
        cols = ", ".join("i." + c for c in INCIDENT_COLS)
        rows = self._rows(f"SELECT {cols}, COALESCE(d.kelurahan, '') FROM incidents i "
                          f"LEFT JOIN devices d ON d.id = i.dev WHERE i.received_ms >= ? AND i.received_ms < ? "
                          f"AND i.kind IN ({marks}) ORDER BY i.received_ms", (since_ms, until_ms, *kinds))
        return [ReportRow(Incident(*r[:-1]), r[-1]) for r in rows]
