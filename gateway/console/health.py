"""Device rows for the devices view: the registry, each device's health (domain/health.py's
word for it), its last alert, its false alarms within the policy window, and each path's
last proof (the last delivery over it; for cellular also the modem's last report)."""
from __future__ import annotations

from ..domain.health import label, link_problem
from ..store import Store
from ..store.health import DeviceHealth
from . import queries


def rows(store: Store, now_ms: int) -> tuple[list[dict], str]:
    """(rows, source); the source is always the gateway's health table."""
    devices = store.list_devices()
    table = store.device_health()
    last = store.last_alerts()
    proofs = store.last_deliveries()
    falses = queries.false_alarms(store, [d.id for d in devices], now_ms)
    out = []
    for d in devices:
        h = table.get(d.id)
        rec = h._asdict() if h is not None else None  # the domain's rules read health records as dicts
        suspended = d.status == "suspended"
        seen = [t for t in (h and h.last_status_ms, last.get(d.id)) if t]
        out.append({**d.public(), "last_alert_ms": last.get(d.id), "false_alarms": falses.get(d.id, 0),
                    "state": label(rec, suspended=suspended),
                    "batt": h and h.batt, "rssi": h and h.rssi,
                    "last_seen_ms": max(seen, default=None), "low_battery": bool(h and h.low_battery),
                    "fw": h and h.fw, "backlog": bool(h and h.backlog),
                    "reset_cause": h and h.reset_cause, "reconnects": h and h.reconnects,
                    "link_err": h and h.link_err, "link_err_ms": h and h.link_err_ms,
                    "link_problem": link_problem(rec, suspended=suspended),
                    "paths": proofs.get(d.id, {}), "last_status_ms": h and h.last_status_ms,
                    "cell": _cell(h)})
    return out, "health"


def _cell(h: DeviceHealth | None) -> dict | None:
    """The modem's last report (registration, signal, last supervised test), when one came."""
    if h is None or h.cell_ms is None:
        return None
    return {"reg": h.cell_reg, "csq": h.cell_csq, "test_ms": h.cell_test_ms, "at_ms": h.cell_ms}
