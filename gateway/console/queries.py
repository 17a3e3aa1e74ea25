"""Reads the console needs beyond the Store interface: what changed, flags, last seen.

Plain SQL through the store's own transaction helpers, so SQLite and PostgreSQL both work.
"""
from __future__ import annotations

from dataclasses import asdict

from ..models import FINAL, Device, Incident
from ..store import Store
from ..store.base import INCIDENT_COLS

COLS = ", ".join(INCIDENT_COLS)
# An operator's "false alarm" is a cancel not made from the button itself.
FALSE_ALARM_WINDOW_MS = 90 * 86400_000
REPEAT_FALSE_ALARMS = 2


def _incidents(store: Store, where: str, args: list, order: str, limit: int) -> list[Incident]:
    rows = store._rows(f"SELECT {COLS} FROM incidents WHERE {where} ORDER BY {order} LIMIT ?", [*args, limit])
    return [Incident(*r) for r in rows]


def open_and_recent(store: Store, now_ms: int, recent_ms: int = 2 * 3600_000) -> list[Incident]:
    finals = ", ".join(f"'{s}'" for s in FINAL)
    return (_incidents(store, f"state NOT IN ({finals})", [], "received_ms DESC", 500)
            + _incidents(store, f"state IN ({finals}) AND updated_ms >= ?", [now_ms - recent_ms],
                         "updated_ms DESC", 50))


def event_cursor(store: Store) -> int:
    rows = store._rows("SELECT MAX(id) FROM events")
    return rows[0][0] or 0


def changed_after(store: Store, cursor: int) -> tuple[int, list[str]]:
    """Incidents with an event after `cursor` (event ids only grow), and the new cursor.

    Every change (new alert, each action, en route, a cancel from the button) writes an event,
    so one indexed range read finds them all; the hub's poke only says when to look.
    """
    rows = store._rows("SELECT id, incident_id FROM events WHERE id > ? ORDER BY id LIMIT 1000", (cursor,))
    if not rows:
        return cursor, []
    ids = list(dict.fromkeys(r[1] for r in rows))
    return rows[-1][0], ids


def incidents_by_id(store: Store, ids: list[str]) -> list[Incident]:
    if not ids:
        return []
    marks = ", ".join("?" * len(ids))
    return _incidents(store, f"id IN ({marks})", ids, "received_ms DESC", len(ids))


def false_alarms(store: Store, devs: list[str], now_ms: int) -> dict[str, int]:
    """Operator-marked false alarms per device, last 90 days (the programme blocks after 3)."""
    if not devs:
        return {}
    marks = ", ".join("?" * len(devs))
    rows = store._rows(
        "SELECT i.dev, COUNT(*) FROM events e JOIN incidents i ON i.id = e.incident_id "
        f"WHERE e.stage = 'cancelled' AND e.actor NOT LIKE 'device:%' AND e.at_ms >= ? AND i.dev IN ({marks}) "
        "GROUP BY i.dev", [now_ms - FALSE_ALARM_WINDOW_MS, *devs])
    return {d: n for d, n in rows}


def last_alerts(store: Store) -> dict[str, int]:
    return {d: t for d, t in store._rows("SELECT dev, MAX(received_ms) FROM alerts GROUP BY dev")}


def device_map(store: Store, devs: list[str]) -> dict[str, Device]:
    out = {}
    for dev in dict.fromkeys(devs):
        d = store.get_device(dev)
        if d is not None:
            out[dev] = d
    return out


def card(inc: Incident, device: Device | None, false_count: int) -> dict:
    """One incident as the queue shows it: no credentials, flags worked out."""
    d = inc.to_json()
    d.pop("device", None)
    pub = device.public() if device else {}
    d["device"] = pub
    d["false_alarms"] = false_count
    d["repeat_false"] = false_count >= REPEAT_FALSE_ALARMS
    # The gateway's false-alarm policy may flag a device for review (devices.flag): show why.
    if pub.get("flag"):
        d["repeat_false"] = True
        d["flag"] = pub["flag"]
    return d


def cards(store: Store, incidents: list[Incident], now_ms: int) -> list[dict]:
    devices = device_map(store, [i.dev for i in incidents])
    falses = false_alarms(store, list(devices), now_ms)
    return [card(i, devices.get(i.dev), falses.get(i.dev, 0)) for i in incidents]


def for_unit(store: Store, unit: str) -> list[Incident]:
    finals = ", ".join(f"'{s}'" for s in FINAL)
    return _incidents(store, f"unit = ? AND state NOT IN ({finals})", [unit], "received_ms DESC", 50)


def sla_rows(store: Store, from_ms: int, to_ms: int) -> list[tuple]:
    """(kelurahan, kind, state, press, received, acknowledged, dispatched, on_scene) in a period."""
    return store._rows(
        "SELECT COALESCE(d.kelurahan, ''), i.kind, i.state, i.press_ms, i.received_ms, i.acknowledged_ms, "
        "i.dispatched_ms, i.on_scene_ms FROM incidents i LEFT JOIN devices d ON d.id = i.dev "
        "WHERE i.press_ms >= ? AND i.press_ms < ?", (from_ms, to_ms))


def device_dict(d: Device) -> dict:
    pub = asdict(d)
    pub.pop("secret", None)
    pub.pop("mqtt_password", None)
    return pub
