"""Sectors in the store: the escalation ladder's steps, each kelurahan's Bhabinkamtibmas, and
the holder's cancel as a request the desk confirms after its call-back (domain/verification.py).

A ladder step is claimed by a conditional UPDATE on the incident's `escalated` level, so of
several gateways sweeping at once exactly one takes each step. The Bhabinkamtibmas (the
kelurahan's community officer) is told of every new incident of the kelurahan: the event
`bhabinkamtibmas` is queued, in the transaction that stores the incident, for the sinks that
list it (an SMS gateway, a webhook), with the officer's name and phone in the payload.

A cancel from the button marks the open incident `cancel_requested` (once; an event for the
timeline and the sinks) and is acked with the incident's own stage, which the button takes as
its cancel's answer; the incident closes only by the desk's `confirm_cancel`.
"""
from __future__ import annotations

import json
from typing import Any, NamedTuple

from ..domain import verification
from ..domain.ladder import Step, note
from ..domain.lifecycle import ACK_STAGE, FINAL
from ..models import Alert, Incident, Outcome
from .incidents import INCIDENT_COLS
from .units import UnitsMixin

_COLS = ", ".join(INCIDENT_COLS)
NOTIFY_EVENT = "bhabinkamtibmas"


class Bhabinkamtibmas(NamedTuple):
    """A kelurahan's community officer, told of every new incident there."""
    kelurahan: str
    name: str
    phone: str


class SectorsMixin(UnitsMixin):
    # --- the escalation ladder ---------------------------------------------------------
    def escalate_step(self, now_ms: int, level: int, step: Step) -> list[Incident]:
        """Take ladder step `level` (0-based) for every incident still `new` that has climbed
        exactly `level` steps and was received at least `step.after_s` ago."""
        out: list[Incident] = []
        with self._tx() as cur:
            rows = self._exec(cur, f"SELECT {_COLS} FROM incidents WHERE state = 'new' AND escalated = ? "
                                   "AND received_ms <= ? ORDER BY received_ms LIMIT 500",
                              (level, now_ms - step.after_s * 1000)).fetchall()
            for row in rows:
                inc = Incident(*row)
                n = self._exec(cur, "UPDATE incidents SET escalated = ?, escalated_ms = ? "
                                    "WHERE id = ? AND escalated = ? AND state = 'new'",
                               (level + 1, now_ms, inc.id, level)).rowcount
                if not n:
                    continue
                inc.escalated, inc.escalated_ms = level + 1, now_ms
                self._event(cur, inc, step.event, now_ms, "gateway", note(step, (now_ms - inc.received_ms) // 1000))
                out.append(inc)
        return out

    # --- Bhabinkamtibmas ---------------------------------------------------------------------
    def set_bhabinkamtibmas(self, kelurahan: str, name: str, phone: str, now_ms: int) -> None:
        with self._tx() as cur:
            self._exec(cur, "INSERT INTO bhabinkamtibmas (kelurahan, name, phone, updated_ms) VALUES (?, ?, ?, ?) "
                            "ON CONFLICT (kelurahan) DO UPDATE SET name = excluded.name, phone = excluded.phone, "
                            "updated_ms = excluded.updated_ms", (kelurahan, name, phone, now_ms))

    def remove_bhabinkamtibmas(self, kelurahan: str) -> bool:
        with self._tx() as cur:
            return self._exec(cur, "DELETE FROM bhabinkamtibmas WHERE kelurahan = ?", (kelurahan,)).rowcount > 0

    def bhabinkamtibmas(self) -> list[Bhabinkamtibmas]:
        rows = self._read("SELECT kelurahan, name, phone FROM bhabinkamtibmas ORDER BY kelurahan")
        return [Bhabinkamtibmas(*r) for r in rows]

    def _ingest_one(self, cur, a: Alert) -> Outcome:
        out = super()._ingest_one(cur, a)
        if out.created and out.incident is not None:
            self._notify_bhabinkamtibmas(cur, out.incident, a.received_ms)
        return out

    def _notify_bhabinkamtibmas(self, cur, inc: Incident, at_ms: int) -> None:
        sinks = self.route(NOTIFY_EVENT)
        if not sinks:
            return  # nobody to tell through: no event claims a notification that never left
        row = self._exec(cur, "SELECT b.kelurahan, b.name, b.phone FROM devices d "
                              "JOIN bhabinkamtibmas b ON b.kelurahan = d.kelurahan WHERE d.id = ?",
                         (inc.dev,)).fetchone()
        if row is None:
            return
        kelurahan, name, phone = row
        self._exec(cur, "INSERT INTO events (incident_id, stage, at_ms, actor, note) VALUES (?, ?, ?, ?, ?)",
                   (inc.id, NOTIFY_EVENT, at_ms, "gateway", f"{name}, Bhabinkamtibmas {kelurahan}"))
        payload = json.dumps({"event": NOTIFY_EVENT, "at_ms": at_ms, "actor": "gateway",
                              "officer": {"kelurahan": kelurahan, "name": name, "phone": phone},
                              "incident": inc.to_json()})
        for sink in sinks:
            self._enqueue(cur, sink, inc.id, f"{inc.id}:{NOTIFY_EVENT}", payload, at_ms)

    # --- the holder's cancel: a request ---------------------------------------------------
    def _cancel(self, cur, a: Alert) -> Outcome:
        row = self._exec(cur, "SELECT incident_id FROM alerts WHERE id = ? AND dev = ?", (a.ref, a.dev)).fetchone()
        inc_id = row[0] if row and row[0] else None
        if not self._insert_alert(cur, a, inc_id):
            return self._duplicate(cur, a)
        inc = self._incident(cur, inc_id, lock=True) if inc_id else None
        if inc is None:
            return Outcome(a, None, created=False, duplicate=False, stage="rejected", reason="unknown ref")
        if inc.state not in FINAL and inc.cancel_requested_ms is None:
            inc.cancel_requested_ms = a.received_ms
            self._exec(cur, "UPDATE incidents SET cancel_requested_ms = ? WHERE id = ?", (a.received_ms, inc.id))
            self._event(cur, inc, "cancel_requested", a.received_ms, f"device:{a.dev}",
                        "cancel requested from the button: call the holder back")
        return Outcome(a, inc, created=False, duplicate=False, stage=ACK_STAGE[inc.state])

    def _duplicate(self, cur, a: Alert) -> Outcome:
        out = super()._duplicate(cur, a)
        if a.kind == "cancel" and out.incident is not None and out.stage == "cancelled":
            out.stage = ACK_STAGE[out.incident.state]  # the same answer the first copy got
        return out

    def _apply(self, cur, inc: Incident, action: str, actor: str, at_ms: int, **kw: Any) -> Incident:
        # The lifecycle's checks (role, state, unit) run first inside; the rules below raise
        # afterwards, and the transaction then undoes the step.
        inc = super()._apply(cur, inc, action, actor, at_ms, **kw)
        if action == "verify":
            outcome = verification.outcome_of(kw.get("note"))
            inc.verified_ms, inc.verify_outcome = at_ms, outcome
            self._exec(cur, "UPDATE incidents SET verified_ms = ?, verify_outcome = ? WHERE id = ?",
                       (at_ms, outcome, inc.id))
        elif action == "confirm_cancel":
            verification.check_confirm_cancel(cancel_requested_ms=inc.cancel_requested_ms,
                                              verify_outcome=inc.verify_outcome)
        return inc
