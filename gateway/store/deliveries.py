"""Deliveries: each (alert id, path) the gateway received, with when and how late.

The alert id stays the idempotency key across paths (docs/protocol.md "Paths"): a copy over a
new path adds a delivery row, never a second incident; a copy over a known path adds nothing.
"""
from __future__ import annotations

from typing import NamedTuple

from ..models import Outcome
from .devices import DevicesMixin


class Delivery(NamedTuple):
    """One (alert id, path) received: when, and how long after the press."""
    alert_id: str
    path: str
    incident_id: str | None
    dev: str
    received_ms: int
    latency_ms: int


DELIVERY_COLS = ", ".join(Delivery._fields)


class DeliveriesMixin(DevicesMixin):
    def _record_delivery(self, cur, out: Outcome) -> Outcome:
        """Add the delivery row of a stored alert (in the ingest's transaction) and say in
        `out.new_path` whether this path was new for it. A refused new press under an old id
        (id_reuse) was not delivered: it is not the stored alert."""
        if out.reason == "id_reuse":
            return out
        a = out.alert
        inc_id = out.incident.id if out.incident is not None else None
        out.new_path = self._exec(
            cur, "INSERT INTO deliveries (alert_id, path, incident_id, dev, received_ms, latency_ms) "
                 "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (alert_id, path) DO NOTHING",
            (a.id, a.path, inc_id, a.dev, a.received_ms, a.received_ms - a.press_ms)).rowcount > 0
        return out

    def deliveries(self, incident_id: str) -> list[Delivery]:
        """Every delivery of the incident's alerts, first arrival first."""
        rows = self._read(f"SELECT {DELIVERY_COLS} FROM deliveries WHERE incident_id = ? "
                          "ORDER BY received_ms, path", (incident_id,))
        return [Delivery(*r) for r in rows]

    def last_deliveries(self, devs: list[str] | None = None) -> dict[str, dict[str, int]]:
        """Each device's latest delivery per path (received ms): the last proof of each path."""
        where, args = "", []
        if devs is not None:
            if not devs:
                return {}
            where, args = f" WHERE dev IN ({', '.join('?' * len(devs))})", list(devs)
        rows = self._read(f"SELECT dev, path, MAX(received_ms) FROM deliveries{where} GROUP BY dev, path", args)
        out: dict[str, dict[str, int]] = {}
        for dev, path, at in rows:
            out.setdefault(dev, {})[path] = at
        return out
