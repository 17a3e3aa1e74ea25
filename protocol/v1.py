"""Wire protocol v1, host side (docs/protocol.md): the one place where Python code on a
host builds, signs, verifies and parses what buttons and gateways exchange.

The firmware's `proto.py` is the device side of the same contract; `protocol/vectors.json`
holds the bytes both sides must produce and accept, and tests run them under CPython and
under `micropython`.

Signed payloads are the body bytes, one b"\\n", then the lowercase hex HMAC-SHA256 of
those bytes under the device secret *as its ASCII text*. The MAC covers the bytes as
sent, so no canonical JSON is needed (MicroPython does not keep dict order).
"""
from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import orjson

VERSION = 1
TOPIC_ROOT = "panic/v1"
MAX_PAYLOAD = 1024
MAC_HEX_LEN = 64

KINDS = ("panic", "cancel", "test")
SOURCES = ("gps", "fixed")
# The link a transmission left on (docs/protocol.md "Paths"); absent means wifi.
VIAS = ("wifi", "cellular")
STAGES = ("received", "acknowledged", "dispatched", "on_scene", "resolved", "cancelled", "rejected")
# How far an alert has come, as the button shows it: a lower rank never overrides a
# higher one, and FINAL_RANK ends the alert's life on the button.
STAGE_RANK = {"received": 1, "acknowledged": 2, "dispatched": 3, "on_scene": 4,
              "resolved": 5, "cancelled": 5, "rejected": 5}
FINAL_RANK = 5
# Beyond this JSON numbers stop being exact in most consumers.
INT_LIMIT = 2**53

# The device settings the host side must agree with (firmware/config.py DEFAULTS;
# tests compare the two through protocol/vectors.json).
DEVICE_DEFAULTS: dict[str, Any] = {
    "topic_root": TOPIC_ROOT,
    "acc": 25,
    "trigger": "long",
    "long_press_ms": 2000,
    "triple_window_ms": 3000,
    "cancel_hold_ms": 5000,
    "cancel_confirm_ms": 10000,
    "cancel_window_s": 1800,
    "heartbeat_s": 60,
    "keepalive_s": 30,
    "retry_ms": 3000,
    "retry_max_ms": 30000,
    "reconnect_min_ms": 500,
    "reconnect_max_ms": 15000,
    "fail_ms": 10000,
    "outbox_max": 32,
    "cell_after_ms": 5000,
    "sms_after_ms": 60000,
    "sms_retry_ms": 300000,
    "track_s": 30,
    "cell_test_h": 24,
    "ota_trial_s": 300,
    "ota_chunk_ms": 5000,
    "battery_min_ota": 40,
    "silent": False,
}


# --- topics ------------------------------------------------------------------------------
def device_topic(dev: str, leaf: str, root: str = TOPIC_ROOT) -> str:
    return f"{root}/{dev}/{leaf}"


def alert_topic(dev: str, root: str = TOPIC_ROOT) -> str:
    return device_topic(dev, "alert", root)


def ack_topic(dev: str, root: str = TOPIC_ROOT) -> str:
    return device_topic(dev, "ack", root)


def status_topic(dev: str, root: str = TOPIC_ROOT) -> str:
    return device_topic(dev, "status", root)


def incident_topic(incident: str, root: str = TOPIC_ROOT) -> str:
    return f"{root}/incidents/{incident}"


def topic_device(topic: str, leaf: str, root: str = TOPIC_ROOT) -> str | None:
    """The `<dev>` level of `<root>/<dev>/<leaf>`, unchecked, or None for another topic."""
    prefix, suffix = root + "/", "/" + leaf
    if not topic.startswith(prefix) or not topic.endswith(suffix):
        return None
    return topic[len(prefix):-len(suffix)]


# --- signing -----------------------------------------------------------------------------
def mac(body: bytes, secret: str) -> str:
    # hmac.new, not the one-shot hmac.digest: that one lets the GIL go on every call, so on a
    # gateway thread beside busy ones each HMAC waits to get it back (10x slower beside a
    # spinning thread; press -> ack during a status flood pays it twice per alert).
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str) -> bytes:
    return body + b"\n" + mac(body, secret).encode()


def split(payload: bytes) -> tuple[bytes, bytes] | None:
    """(body, mac_hex), or None when the payload is not body + newline + 64 characters."""
    body, sep, tag = payload.rpartition(b"\n")
    if not sep or len(tag) != MAC_HEX_LEN:
        return None
    return body, tag


def verify(body: bytes, tag: bytes, secret: str) -> bool:
    return hmac.compare_digest(mac(body, secret).encode(), tag)


# --- bodies ------------------------------------------------------------------------------
def encode(obj: dict) -> bytes:
    """JSON bytes in the firmware's layout (", " and ": "); any layout verifies, since
    the MAC covers the bytes as sent."""
    return json.dumps(obj).encode()


def alert_id(dev: str, boot: int, seq: int) -> str:
    return f"{dev}:{boot}:{seq}"


def alert_fields(*, dev: str, boot: int, seq: int, kind: str, t: int | None, age: int, lat6: int, lon6: int,
                 acc: int, src: str, batt: int | None, rssi: int | None, ref: str | None = None) -> dict:
    """The alert body as a dict, field order as documented; `ref` only on a cancel."""
    d: dict[str, Any] = {"v": VERSION, "dev": dev, "id": alert_id(dev, boot, seq), "boot": boot, "seq": seq,
                         "kind": kind, "t": t, "age": age, "lat6": lat6, "lon6": lon6, "acc": acc, "src": src,
                         "batt": batt, "rssi": rssi}
    if ref:
        d["ref"] = ref
    return d


def alert_body(**fields: Any) -> bytes:
    """Keyword arguments of `alert_fields`."""
    return encode(alert_fields(**fields))


def ack_body(*, alert_id: str, stage: str, inc: str | None, reason: str | None, now: int,
             floor: int | None = None) -> bytes:
    d: dict[str, Any] = {"v": VERSION, "id": alert_id, "stage": stage, "inc": inc, "reason": reason, "now": now}
    if floor is not None:
        d["floor"] = floor
    return encode(d)


def status_body(*, dev: str, state: str, fw: str, boot: int, up: int, batt: int | None, rssi: int | None,
                outbox: int, hb: int | None = None) -> bytes:
    d: dict[str, Any] = {"v": VERSION, "dev": dev, "state": state, "fw": fw, "boot": boot, "up": up,
                         "batt": batt, "rssi": rssi, "outbox": outbox}
    if hb is not None:
        d["hb"] = hb
    return encode(d)


def will_body(dev: str) -> bytes:
    """What the broker publishes for a device that vanished (its MQTT will)."""
    return encode({"v": VERSION, "dev": dev, "state": "offline"})


# --- parsing -----------------------------------------------------------------------------
def parse_object(raw: bytes) -> dict:
    """Strict JSON (RFC 8259, orjson): UTF-8, an object, no NaN/Infinity, no lone surrogates.
    Raises ValueError on anything else. An integer beyond 64 bits comes back a float, which
    every integer field's check refuses. A fifth of the stdlib decoder's cost, on every alert
    and status (docs/benchmarks.md)."""
    body = orjson.loads(raw)
    if not isinstance(body, dict):
        raise ValueError("body is not a JSON object")
    return body


def _int(body: dict, key: str, lo: int, hi: int, *, optional: bool = False) -> int | None:
    value = body.get(key)
    if value is None and optional:
        return None
    if type(value) is not int or not lo <= value <= hi:
        raise ValueError(f"{key} must be an integer in [{lo}, {hi}], got {value!r:.40}")
    return value


def check_alert_fields(body: dict, dev: str) -> dict:
    """Raise ValueError naming the first field that is wrong; return the normalised
    fields (id, boot, seq, kind, t, age, lat6, lon6, acc, src, batt, rssi, ref, via; via is
    None when the body does not say)."""
    if body.get("v") != VERSION or type(body.get("v")) is not int:
        raise ValueError(f"unsupported protocol version {body.get('v')!r:.20}")
    boot = _int(body, "boot", 0, INT_LIMIT)
    seq = _int(body, "seq", 0, INT_LIMIT)
    kind = body.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    aid = body.get("id")
    if aid != f"{dev}:{boot}:{seq}":
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
    via = body.get("via")
    if via is not None and via not in VIAS:
        raise ValueError(f"via must be one of {VIAS}")
    return dict(id=aid, boot=boot, seq=seq, kind=kind, t=t, age=age, lat6=lat6, lon6=lon6,
                acc=acc, src=src, batt=batt, rssi=rssi, ref=ref, via=via)


def signed_body(payload: bytes, secret: str, limit: int) -> tuple[str | None, bytes | None]:
    """The checks every signed payload passes before its JSON is read, in the firmware's
    order: (None, body) or (reason, None) with reason size, format or mac."""
    if len(payload) > limit:
        return "size", None
    body, sep, tag = payload.rpartition(b"\n")
    if not sep:
        return "format", None
    if len(tag) != MAC_HEX_LEN or not verify(body, tag, secret):
        return "mac", None
    return None, body


def parse_ack(payload: bytes, secret: str) -> tuple[str | None, dict | None]:
    """Check a signed ack as the firmware does (firmware/proto.py verify_ack): returns
    (None, ack) or (reason, None) with the firmware's reasons: size, format, mac, json,
    version, field, stage. Never raises: an ack is hostile until checked."""
    why, body = signed_body(payload, secret, MAX_PAYLOAD)
    if body is None:
        return why, None
    try:
        d = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "json", None
    if not isinstance(d, dict) or d.get("v") != VERSION:
        return "version", None
    aid = d.get("id")
    if not isinstance(aid, str) or not aid:
        return "field", None
    if d.get("stage") not in STAGES:
        return "stage", None
    now = d.get("now")
    if now is not None and type(now) is not int:
        return "field", None
    return None, d
