"""Device rows for the devices view: the registry, each device's health (domain/health.py's
word for it), its last alert, its false alarms within the policy window, and each path's
last proof (the last delivery over it; for cellular also the modem's last report)."""
from __future__ import annotations

from ..domain.health import label, link_problem
from ..store import Store
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
        seen = [t for t in ((h or {}).get("last_status_ms"), last.get(d.id)) if t]
        out.append({**d.public(), "last_alert_ms": last.get(d.id), "false_alarms": falses.get(d.id, 0),
                    "state": label(h, suspended=d.status == "suspended"),
                    "batt": h and h.get("batt"), "rssi": h and h.get("rssi"),
                    "last_seen_ms": max(seen, default=None), "low_battery": bool(h and h.get("low_battery")),
                    "fw": h and h.get("fw"), "backlog": bool(h and h.get("backlog")),
                    "reset_cause": h and h.get("reset_cause"), "reconnects": h and h.get("reconnects"),
                    "link_err": h and h.get("link_err"), "link_err_ms": h and h.get("link_err_ms"),
                    "link_problem": link_problem(h, suspended=d.status == "suspended"),
                    "paths": proofs.get(d.id, {}), "last_status_ms": h and h.get("last_status_ms"),
                    "cell": _cell(h)})
    return out, "health"


def _cell(h: dict | None) -> dict | None:
    """The modem's last report (registration, signal, last supervised test), when one came."""
    if not h or h.get("cell_ms") is None:
        return None
    return {"reg": h.get("cell_reg"), "csq": h.get("cell_csq"), "test_ms": h.get("cell_test_ms"),
            "at_ms": h.get("cell_ms")}
