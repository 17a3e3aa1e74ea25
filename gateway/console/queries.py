"""What the console reads, as views over the store's methods: the queue, what changed,
false-alarm marks, the dashboard's incidents. The statements live in gateway/store/."""
from __future__ import annotations

from ..domain.visibility import View, redact, sees
from ..models import Device, Incident
from ..store import ReportRow, Store


def open_and_recent(store: Store, now_ms: int, recent_ms: int = 2 * 3600_000, *,
                    view: View) -> list[Incident]:
    return in_sectors(store, store.open_and_recent(now_ms, recent_ms, units=view.units), view)


def in_sectors(store: Store, incidents: list[Incident], view: View) -> list[Incident]:
    """Those of the view's sectors (by their device's kecamatan); all of them for the command centre."""
    if view.sectors is None:
        return incidents
    devices = store.devices_by_id(list({i.dev for i in incidents}))
    return [i for i in incidents
            if sees(view, i.unit, kecamatan=d.kecamatan if (d := devices.get(i.dev)) else "")]


def event_cursor(store: Store) -> int:
    return store.event_cursor()


def changed_after(store: Store, cursor: int) -> tuple[int, list[str]]:
    """Incidents with an event after `cursor` (event ids only grow), and the new cursor.

    Every change (new alert, each action, en route, a cancel from the button) writes an event,
    so one indexed range read finds them all; the hub's poke only says when to look.
    """
    return store.changed_after(cursor)


def incidents_by_id(store: Store, ids: list[str], *, view: View) -> list[Incident]:
    return in_sectors(store, store.incidents_by_id(ids, units=view.units), view)


def false_alarms(store: Store, devs: list[str], now_ms: int) -> dict[str, int]:
    """False alarms per device within the gateway's false-alarm policy window (domain/policy.py)."""
    return store.false_alarm_counts(devs, store.false_alarm.since(now_ms))


def card(inc: Incident, device: Device | None, false_count: int, *, warns: bool,
         view: View | None = None) -> dict:
    """One incident as the queue shows it: no credentials, the holder's data as `view`
    allows (None: the desk's full view), flags worked out."""
    d = inc.to_json()
    d.pop("device", None)
    pub = device.public() if device else {}
    if view is not None:
        pub = redact(view, pub) or {}
    d["device"] = pub
    d["false_alarms"] = false_count
    d["repeat_false"] = warns
    # The gateway's false-alarm policy may flag a device for review (devices.flag): show why.
    if pub.get("flag"):
        d["repeat_false"] = True
        d["flag"] = pub["flag"]
    return d


def cards(store: Store, incidents: list[Incident], now_ms: int, *, view: View | None = None) -> list[dict]:
    devices = store.devices_by_id([i.dev for i in incidents])
    falses = false_alarms(store, list(devices), now_ms)
    policy = store.false_alarm
    return [card(i, devices.get(i.dev), falses.get(i.dev, 0), warns=policy.warns(falses.get(i.dev, 0)), view=view)
            for i in incidents]


def for_unit(store: Store, unit: str) -> list[Incident]:
    return store.open_for_unit(unit)


def sla_rows(store: Store, from_ms: int, to_ms: int, *, view: View | None = None) -> list[ReportRow]:
    """Panic incidents received in a period, with their kelurahan (domain/sla.py's window);
    with a view, those of its sectors only."""
    rows = store.report_incidents(from_ms, to_ms, ("panic",))
    if view is None or view.sectors is None:
        return rows
    kept = {i.id for i in in_sectors(store, [r.incident for r in rows], view)}
    return [r for r in rows if r.incident.id in kept]
