"""The units registry: call sign, kind, home post, sector and status, with each unit's last
fix and every position it reported (kept with the incident it was serving, for the record).

A unit's status follows the incidents dispatched to it inside the same transaction as the
incident's step (dispatched, en route, on scene; available again once its incident closes),
so the board and the recommendation never disagree with the queue. Responders and the API
set the rest (available, off duty). Free-text units (not in the registry) stay allowed for
dispatch; they are just not followed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from ..domain.dispatch import UnitView, check_kind, check_sector, check_status
from ..models import Incident
from .incidents import IncidentsMixin

_UNIT = ("SELECT call_sign, kind, post, sector, status, post_lat6, post_lon6, lat6, lon6, acc, fix_ms, "
         "incident_id, status_ms FROM units")
# The unit status an incident's state or event puts its unit in.
_FOLLOWS = {"dispatched": "dispatched", "en_route": "en_route", "on_scene": "on_scene",
            "resolved": "available", "cancelled": "available"}


@dataclass
class Unit:
    call_sign: str
    kind: str
    post: str
    sector: str
    status: str
    post_lat6: int
    post_lon6: int
    lat6: int | None = None
    lon6: int | None = None
    acc: int | None = None
    fix_ms: int | None = None
    incident_id: str | None = None
    status_ms: int = 0

    def view(self) -> UnitView:
        return UnitView(self.call_sign, self.kind, self.sector, self.status, self.post_lat6, self.post_lon6,
                        self.lat6, self.lon6, self.fix_ms)

    def to_json(self, now_ms: int) -> dict[str, Any]:
        d = asdict(self)
        d["fix_age_s"] = None if self.fix_ms is None else max(0, now_ms - self.fix_ms) // 1000
        return d


class ServedPosition(NamedTuple):
    """A fix a unit reported while it served the incident asked about."""
    call_sign: str
    lat6: int
    lon6: int
    acc: int
    at_ms: int


class UnitFix(NamedTuple):
    """A fix of the unit asked about, with the incident it was serving then (None: none)."""
    lat6: int
    lon6: int
    acc: int
    at_ms: int
    incident_id: str | None


class UnitsMixin(IncidentsMixin):
    # --- the registry ----------------------------------------------------------------
    def add_unit(self, call_sign: str, *, kind: str, post: str, sector: str, post_lat6: int, post_lon6: int,
                 now_ms: int) -> bool:
        """Register a unit (available, at its post); False when the call sign exists."""
        check_kind(kind)
        sector = check_sector(sector)
        with self._tx() as cur:
            return self._exec(cur, "INSERT INTO units (call_sign, kind, post, sector, status, post_lat6, post_lon6, "
                                   "status_ms, created_ms) VALUES (?, ?, ?, ?, 'available', ?, ?, ?, ?) "
                                   "ON CONFLICT DO NOTHING",
                              (call_sign, kind, post, sector, post_lat6, post_lon6, now_ms, now_ms)).rowcount > 0

    def remove_unit(self, call_sign: str) -> bool:
        """Take a unit out of the registry; its positions stay with the incidents they belong to."""
        with self._tx() as cur:
            return self._exec(cur, "DELETE FROM units WHERE call_sign = ?", (call_sign,)).rowcount > 0

    def unit(self, call_sign: str) -> Unit | None:
        rows = self._read(f"{_UNIT} WHERE call_sign = ?", (call_sign,))
        return Unit(*rows[0]) if rows else None

    def list_units(self, *, sectors: tuple[str, ...] | None = None) -> list[Unit]:
        """Every unit, or those of the given sectors, by call sign."""
        if sectors is None:
            return [Unit(*r) for r in self._read(f"{_UNIT} ORDER BY call_sign")]
        if not sectors:
            return []
        marks = ", ".join("?" * len(sectors))
        return [Unit(*r) for r in self._read(f"{_UNIT} WHERE sector IN ({marks}) ORDER BY call_sign", sectors)]

    # --- status and positions ----------------------------------------------------------
    def set_unit_status(self, call_sign: str, status: str, at_ms: int) -> Unit | None:
        """Set a unit's status (the responder's or the desk's word); None for no such unit.
        Available and off duty release the incident it was serving."""
        check_status(status)
        with self._tx() as cur:
            release = ", incident_id = NULL" if status in ("available", "off_duty") else ""
            n = self._exec(cur, f"UPDATE units SET status = ?, status_ms = ?{release} WHERE call_sign = ?",
                           (status, at_ms, call_sign)).rowcount
        return self.unit(call_sign) if n else None

    def report_position(self, call_sign: str, *, lat6: int, lon6: int, acc: int, at_ms: int) -> Unit | None:
        """Record a fix: the unit's last position, and a row of its track tagged with the incident
        it serves. A fix older than the one held only joins the track. None for no such unit."""
        with self._tx() as cur:
            row = self._exec(cur, f"SELECT incident_id FROM units WHERE call_sign = ?{self.for_update}",
                             (call_sign,)).fetchone()
            if row is None:
                return None
            self._exec(cur, "INSERT INTO unit_positions (call_sign, lat6, lon6, acc, at_ms, incident_id) "
                            "VALUES (?, ?, ?, ?, ?, ?)", (call_sign, lat6, lon6, acc, at_ms, row[0]))
            self._exec(cur, "UPDATE units SET lat6 = ?, lon6 = ?, acc = ?, fix_ms = ? "
                            "WHERE call_sign = ? AND (fix_ms IS NULL OR fix_ms <= ?)",
                       (lat6, lon6, acc, at_ms, call_sign, at_ms))
        return self.unit(call_sign)

    def incident_track(self, inc_id: str) -> list[ServedPosition]:
        """Every position reported by a unit while it served this incident, oldest first."""
        rows = self._read("SELECT call_sign, lat6, lon6, acc, at_ms FROM unit_positions WHERE incident_id = ? "
                          "ORDER BY at_ms, id", (inc_id,))
        return [ServedPosition(*r) for r in rows]

    def unit_track(self, call_sign: str, since_ms: int) -> list[UnitFix]:
        rows = self._read("SELECT lat6, lon6, acc, at_ms, incident_id FROM unit_positions "
                          "WHERE call_sign = ? AND at_ms >= ? ORDER BY at_ms, id LIMIT 5000", (call_sign, since_ms))
        return [UnitFix(*r) for r in rows]

    # --- following the incidents ---------------------------------------------------------
    def _apply(self, cur, inc: Incident, action: str, actor: str, at_ms: int, **kw: Any) -> Incident:
        previous = inc.unit
        inc = super()._apply(cur, inc, action, actor, at_ms, **kw)
        if action == "dispatch" and previous and previous != inc.unit:
            # Re-assigned: the unit that was sent first is free again.
            self._exec(cur, "UPDATE units SET status = 'available', incident_id = NULL, status_ms = ? "
                            "WHERE call_sign = ? AND incident_id = ?", (at_ms, previous, inc.id))
        status = _FOLLOWS.get(action if action == "en_route" else inc.state)
        if inc.unit and status:
            if status == "available":
                self._exec(cur, "UPDATE units SET status = ?, incident_id = NULL, status_ms = ? "
                                "WHERE call_sign = ? AND incident_id = ?", (status, at_ms, inc.unit, inc.id))
            else:
                self._exec(cur, "UPDATE units SET status = ?, incident_id = ?, status_ms = ? WHERE call_sign = ?",
                           (status, inc.id, at_ms, inc.unit))
        return inc
