"""The track: where a GPS button reported itself while its incident was open.

A holder may be moving (carried off, running for help); the position in the alert is where
the press happened, the track is where to look now. Points come with statuses
(docs/protocol.md, status `pos`), at most one per incident and fix time, and at most
MAX_POINTS per incident, so a button cannot fill the database.
"""
from __future__ import annotations

from typing import NamedTuple

from ..domain.lifecycle import FINAL
from .health import HealthMixin

MAX_POINTS = 1440  # 12 hours at one point every 30 s


class TrackPoint(NamedTuple):
    at_ms: int  # the fix's time
    lat6: int
    lon6: int
    acc: int


TRACK_COLS = ", ".join(TrackPoint._fields)


class TrackMixin(HealthMixin):
    def add_track_point(self, dev: str, *, at_ms: int, lat6: int, lon6: int, acc: int) -> int:
        """Append the point to each open incident of the device; the number it was added to."""
        with self._tx() as cur:
            return self._exec(
                cur, "INSERT INTO incident_track (incident_id, at_ms, lat6, lon6, acc) "
                     "SELECT i.id, ?, ?, ?, ? FROM incidents i "
                     f"WHERE i.dev = ? AND i.state NOT IN ({', '.join('?' * len(FINAL))}) "
                     "AND (SELECT COUNT(*) FROM incident_track t WHERE t.incident_id = i.id) < ? "
                     "ON CONFLICT (incident_id, at_ms) DO NOTHING",
                (at_ms, lat6, lon6, acc, dev, *FINAL, MAX_POINTS)).rowcount

    def track(self, incident_id: str) -> list[TrackPoint]:
        """The incident's track, oldest point first."""
        rows = self._read(f"SELECT {TRACK_COLS} FROM incident_track WHERE incident_id = ? ORDER BY at_ms",
                          (incident_id,))
        return [TrackPoint(*r) for r in rows]
