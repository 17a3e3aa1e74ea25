"""Every alert from the network is hostile until this module says otherwise.

`check_alert` returns an Alert or a Rejection with one named reason; the reasons are
the label values of the gateway's reject counter and are listed in REASONS.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from protocol import v1 as protocol

from .domain.paths import delivery_path
from .ids import valid_device_id
from .models import Alert, Device

# id_reuse is decided by the store (it needs the stored alert), the rest here.
REASONS = ("size", "topic", "unknown_device", "suspended", "format", "mac", "json", "id_reuse",
           "schema", "dev_mismatch", "stale")
KINDS = protocol.KINDS
SOURCES = protocol.SOURCES
INT_LIMIT = protocol.INT_LIMIT
# The wire format's strict JSON and alert schema, under the names the gateway uses.
parse_body = protocol.parse_object
check_schema = protocol.check_alert_fields


@dataclass
class Rejection:
    reason: str
    detail: str
    dev: str | None = None
    alert_id: str | None = None


def topic_device(topic: str, root: str) -> str | None:
    dev = protocol.topic_device(topic, "alert", root)
    return dev if dev is not None and valid_device_id(dev) else None


def check_alert(topic: str, payload: bytes, *, root: str, max_payload: int,
                device: Callable[[str], Device | None], now_ms: int,
                stale_past_ms: int, stale_future_ms: int, backup_broker: bool = False) -> Alert | Rejection:
    """`backup_broker`: the message came in on a backup broker (its path, domain/paths.py)."""
    if len(payload) > max_payload:
        return Rejection("size", f"{len(payload)} bytes > {max_payload}")
    dev = topic_device(topic, root)
    if dev is None:
        return Rejection("topic", f"not an alert topic: {topic[:120]!r}")
    registered = device(dev)
    if registered is None:
        return Rejection("unknown_device", "not in the registry", dev)
    if registered.status != "active":
        return Rejection("suspended", f"device is {registered.status}", dev)
    parts = protocol.split(payload)
    if parts is None:
        return Rejection("format", "payload is not <body>\\n<64 hex MAC>", dev)
    raw, tag = parts
    # The MAC is checked before parsing so unauthenticated bytes never reach the JSON parser.
    if not protocol.verify(raw, tag, registered.secret):
        return Rejection("mac", "MAC does not verify under the device's secret", dev)
    try:
        body = parse_body(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return Rejection("json", str(exc)[:200], dev)
    if body.get("dev") != dev:
        return Rejection("dev_mismatch", f"body dev {str(body.get('dev'))[:70]!r} on topic of {dev}", dev)
    try:
        f = check_schema(body, dev)
    except ValueError as exc:
        return Rejection("schema", str(exc), dev, body.get("id") if isinstance(body.get("id"), str) else None)
    press = f["t"] if f["t"] is not None else now_ms - f["age"]
    if press < now_ms - stale_past_ms or press > now_ms + stale_future_ms:
        return Rejection("stale", f"press time {press} outside [-{stale_past_ms}, +{stale_future_ms}] ms of now",
                         dev, f["id"])
    path = delivery_path(sms=False, via=f["via"], backup_broker=backup_broker)
    return Alert(dev=dev, received_ms=now_ms, body=raw.decode(), path=path, **f)


