"""Device rows for the devices view: the gateway's health table when it has one, else the
registry and each device's last alert. Degrades rather than fails, so the console works on a
gateway with or without device health tracking."""
from __future__ import annotations

from . import queries

LOW_BATTERY = 20  # percent, only used when the gateway has no health table of its own


def _health_table(store) -> dict[str, dict] | None:
    """dev -> health from the gateway's health tracking (Store.device_health), else from its
    `device_health` table directly, or None on a gateway without either."""
    if hasattr(store, "device_health"):
        try:
            return store.device_health()
        except Exception:  # a database not yet migrated: fall back below
            pass
    try:
        rows = store._rows("SELECT dev, state, health, low_battery, batt, rssi, last_status_ms, fw "
                           "FROM device_health")
    except Exception:  # no such table on this database: fall back
        return None
    keys = ("dev", "state", "health", "low_battery", "batt", "rssi", "last_status_ms", "fw")
    return {r[0]: dict(zip(keys, r)) for r in rows}


def _last_incident_radio(store) -> dict[str, tuple]:
    rows = store._rows("SELECT dev, batt, rssi, received_ms FROM incidents i WHERE received_ms = "
                       "(SELECT MAX(received_ms) FROM incidents j WHERE j.dev = i.dev)")
    return {d: (b, r, t) for d, b, r, t in rows}


def classify(h: dict | None) -> str:
    """One word for the operator: silent beats offline beats sleeping beats low battery."""
    if h is None:
        return "unknown"
    health, state = (h.get("health") or "").lower(), (h.get("state") or "").lower()
    if health in ("silent", "offline", "sleeping"):
        return health
    if state in ("offline", "sleeping"):
        return state
    if h.get("low_battery"):
        return "low_battery"
    return "online" if state == "online" else "unknown"


def rows(store, now_ms: int) -> tuple[list[dict], str]:
    """(rows, source) where source is 'health' or 'alerts'."""
    devices = store.list_devices()
    table = _health_table(store)
    last = queries.last_alerts(store)
    falses = queries.false_alarms(store, [d.id for d in devices], now_ms) if devices else {}
    radio = _last_incident_radio(store) if table is None else {}
    out = []
    for d in devices:
        pub = queries.device_dict(d)
        h = table.get(d.id) if table is not None else None
        row = {**pub, "last_alert_ms": last.get(d.id), "false_alarms": falses.get(d.id, 0)}
        if table is not None:
            row.update(state=classify(h), batt=h and h.get("batt"), rssi=h and h.get("rssi"),
                       last_seen_ms=max(filter(None, [h and h.get("last_status_ms"), last.get(d.id)]), default=None),
                       low_battery=bool(h and h.get("low_battery")), fw=h and h.get("fw"),
                       backlog=bool(h and h.get("backlog")))
        else:
            b, r, _ = radio.get(d.id, (None, None, None))
            row.update(state="unknown", batt=b, rssi=r, last_seen_ms=last.get(d.id),
                       low_battery=b is not None and b < LOW_BATTERY, fw=None)
            if row["low_battery"]:
                row["state"] = "low_battery"
        if d.status == "suspended":
            row["state"] = "suspended"
        out.append(row)
    return out, "health" if table is not None else "alerts"
