"""An incident as an OASIS Common Alerting Protocol 1.2 message.

For dispatch and warning systems that speak CAP rather than our JSON: `GET
/api/incidents/{id}.cap` and webhooks with `format = "cap"`. Element order follows the
CAP 1.2 schema (it is a sequence). The area is a circle around the press location with
the device's accuracy as radius (CAP wants "lat,lon radius_km").
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from xml.etree import ElementTree as ET

NS = "urn:oasis:names:tc:emergency:cap:1.2"
MIN_RADIUS_KM = 0.01  # a 0 m accuracy claim is not a point anyone can drive to


def cap_time(ms: int, utc_offset_min: int) -> str:
    """CAP's dateTime: no fractions, an explicit offset, never 'Z'."""
    tz = timezone(timedelta(minutes=utc_offset_min))
    return datetime.fromtimestamp(ms / 1000, tz).replace(microsecond=0).isoformat()


def status_of(kind: str) -> str:
    # A drill press (kind "test") is an exercise for dispatch; a system test message is "Test".
    return {"panic": "Actual", "test": "Exercise"}.get(kind, "Test")


def msg_type(state: str) -> str:
    if state == "new":
        return "Alert"
    return "Cancel" if state == "cancelled" else "Update"


def area_desc(inc: dict, device: dict | None) -> str:
    if device:
        parts = [device.get("kelurahan") and f"Kelurahan {device['kelurahan']}",
                 device.get("rw") and f"RW {device['rw']:02d}", device.get("rt") and f"RT {device['rt']:02d}",
                 device.get("kecamatan") and f"Kecamatan {device['kecamatan']}", "Kota Malang"]
        if device.get("address"):
            parts.insert(0, device["address"])
        return ", ".join(p for p in parts if p)
    return f"{inc['lat6'] / 1e6:.6f}, {inc['lon6'] / 1e6:.6f}"


def to_cap(inc: dict, device: dict | None = None, *, sender: str, utc_offset_min: int = 420,
           event: str | None = None, at_ms: int | None = None) -> str:
    """CAP XML for an incident (its JSON form, as in the API and webhooks)."""
    state = inc["state"]
    sent_ms = at_ms or inc.get("updated_ms") or inc["received_ms"]
    ET.register_namespace("", NS)
    alert = ET.Element(f"{{{NS}}}alert")

    def sub(parent, tag, text=None):
        el = ET.SubElement(parent, f"{{{NS}}}{tag}")
        if text is not None:
            el.text = str(text)
        return el

    first = state == "new" and event in (None, "new")
    sub(alert, "identifier", inc["id"] if first else f"{inc['id']}.{event or state}.{sent_ms}")
    sub(alert, "sender", sender)
    sub(alert, "sent", cap_time(sent_ms, utc_offset_min))
    sub(alert, "status", status_of(inc["kind"]))
    sub(alert, "msgType", "Alert" if first else msg_type(state))
    sub(alert, "source", f"panic button {inc['dev']}")
    sub(alert, "scope", "Restricted")
    sub(alert, "restriction", "police dispatch and city operations")
    if not first:
        # The original alert, as "sender,identifier,sent".
        sub(alert, "references", f"{sender},{inc['id']},{cap_time(inc['received_ms'], utc_offset_min)}")
    sub(alert, "incidents", inc["id"])

    info = sub(alert, "info")
    sub(info, "language", "id-ID")
    sub(info, "category", "Security")
    sub(info, "event", "Panic button pressed")
    sub(info, "responseType", "Monitor" if state in ("resolved", "cancelled") else "Execute")
    sub(info, "urgency", "Immediate")
    sub(info, "severity", "Severe")
    sub(info, "certainty", "Observed")
    sub(info, "onset", cap_time(inc["press_ms"], utc_offset_min))
    sub(info, "senderName", "Panic Button on Hand, Polresta Malang Kota")
    holder = f" ({device['holder']})" if device and device.get("holder") else ""
    sub(info, "headline", f"Panic button {inc['dev']}{holder}: {state}")
    desc = [f"Incident {inc['id']} from button {inc['dev']}, state {state}."]
    if inc.get("unit"):
        desc.append(f"Unit {inc['unit']}.")
    if inc.get("escalated"):
        desc.append("Escalated: not acknowledged in time.")
    sub(info, "description", " ".join(desc))
    if device and device.get("phone"):
        sub(info, "contact", device["phone"])
    for name, value in (("incident", inc["id"]), ("device", inc["dev"]), ("state", state),
                        ("location_source", inc.get("src")), ("press_clock", inc.get("clock"))):
        if value is not None:
            p = sub(info, "parameter")
            sub(p, "valueName", name)
            sub(p, "value", value)
    area = sub(info, "area")
    sub(area, "areaDesc", area_desc(inc, device))
    radius_km = max(MIN_RADIUS_KM, (inc.get("acc") or 0) / 1000)
    sub(area, "circle", f"{inc['lat6'] / 1e6:.6f},{inc['lon6'] / 1e6:.6f} {radius_km:g}")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(alert, encoding="unicode")
