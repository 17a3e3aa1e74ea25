"""Every alert from the network is hostile until this module says otherwise.

`check_alert` returns an Alert or a Rejection with one named reason; the reasons are
the label values of the gateway's reject counter and are listed in REASONS.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from . import signing
from .ids import valid_device_id
from .models import Alert, Device

# id_reuse is decided by the store (it needs the stored alert), the rest here.
REASONS = ("size", "topic", "unknown_device", "suspended", "format", "mac", "json", "id_reuse",
           "schema", "dev_mismatch", "stale")
KINDS = ("panic", "cancel", "test")
SOURCES = ("gps", "fixed")
INT_LIMIT = 2**53  # beyond this JSON numbers stop being exact in most consumers


@dataclass
class Rejection:
    reason: str
    detail: str
    dev: str | None = None
    alert_id: str | None = None


def _int(body: dict, key: str, lo: int, hi: int, optional: bool = False) -> int | None:
    value = body.get(key)
    if value is None and optional:
        return None
    if type(value) is not int or not lo <= value <= hi:
        raise ValueError(f"{key} must be an integer in [{lo}, {hi}], got {value!r:.40}")
    return value


def _reject_constant(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


def parse_body(raw: bytes) -> dict:
    """Strict JSON: UTF-8, an object, no NaN/Infinity."""
    body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    if not isinstance(body, dict):
        raise ValueError("body is not a JSON object")
    return body


def check_schema(body: dict, dev: str) -> dict:
    """Raise ValueError naming the first field that is wrong; return the normalised fields."""
    if body.get("v") != 1 or type(body.get("v")) is not int:
        raise ValueError(f"unsupported protocol version {body.get('v')!r:.20}")
    boot = _int(body, "boot", 0, INT_LIMIT)
    seq = _int(body, "seq", 0, INT_LIMIT)
    kind = body.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    alert_id = body.get("id")
    if alert_id != f"{dev}:{boot}:{seq}":
        raise ValueError("id must be <dev>:<boot>:<seq>")
    t = _int(body, "t", 0, INT_LIMIT, optional=True)
    age = _int(body, "age", 0, 10 * 365 * 86400 * 1000)
    lat6 = _int(body, "lat6", -90_000_000, 90_000_000)
    lon6 = _int(body, "lon6", -180_000_000, 180_000_000)
    acc = _int(body, "acc", 0, 1_000_000)
    src = body.get("src")
    if src not in SOURCES:
        raise ValueError(f"src must be one of {SOURCES}")
    batt = _int(body, "batt", 0, 100, optional=True)
    rssi = _int(body, "rssi", -200, 0, optional=True)
    ref = body.get("ref")
    if kind == "cancel":
        if not isinstance(ref, str) or not ref.startswith(dev + ":") or len(ref) > 200:
            raise ValueError("a cancel needs ref: the id of one of this device's alerts")
    else:
        ref = None
    return dict(id=alert_id, boot=boot, seq=seq, kind=kind, t=t, age=age, lat6=lat6, lon6=lon6,
                acc=acc, src=src, batt=batt, rssi=rssi, ref=ref)


def topic_device(topic: str, root: str) -> str | None:
    prefix = root + "/"
    if not topic.startswith(prefix) or not topic.endswith("/alert"):
        return None
    dev = topic[len(prefix):-len("/alert")]
    return dev if valid_device_id(dev) else None


def check_alert(topic: str, payload: bytes, *, root: str, max_payload: int,
                device: Callable[[str], Device | None], now_ms: int,
                stale_past_ms: int, stale_future_ms: int) -> Alert | Rejection:
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
    parts = signing.split(payload)
    if parts is None:
        return Rejection("format", "payload is not <body>\\n<64 hex MAC>", dev)
    raw, tag = parts
    # The MAC is checked before parsing so unauthenticated bytes never reach the JSON parser.
    if not signing.verify(raw, tag, registered.secret):
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
    return Alert(dev=dev, received_ms=now_ms, body=raw.decode(), **f)


