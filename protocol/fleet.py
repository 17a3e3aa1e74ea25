"""Fleet messages of protocol v1, host side (docs/protocol.md "Fleet", issue 16): signed
commands to a device, its signed results and OTA chunk requests, and the binary OTA chunks.

    panic/v1/<dev>/cmd     gateway -> device  QoS 1  <json>\\n<hmac hex>   (a command)
    panic/v1/<dev>/result  device -> gateway  QoS 1  <json>\\n<hmac hex>   (a result or a "get")
    panic/v1/<dev>/ota     gateway -> device  QoS 0  b"PBO1" seq:u32 off:u32 data (not signed:
                                                     the signed manifest's SHA-256 covers the bundle)

Signing is the ack's (protocol.v1.sign: HMAC-SHA256 under the device secret as ASCII text,
over the bytes as sent). The firmware's `remote.py` checks commands and signs results the
same way; `protocol/vectors.json` ("fleet") holds bytes both sides must produce and accept.
"""
from __future__ import annotations

import struct
from typing import Any

from .v1 import INT_LIMIT, MAC_HEX_LEN, TOPIC_ROOT, VERSION, device_topic, encode, parse_object, sign, signed_body

CMD, RESULT, OTA = "cmd", "result", "ota"
# `keep` is the gateway's answer to a button running a release on trial (stage "trial"): its
# signed arrival proves broker, login and gateway all work with the new firmware.
OPS = ("locate", "selftest", "set", "reboot", "ota", "keep")
# The only configuration keys a command may change; broker hosts, secrets, pins and release
# keys stay with whoever holds the device (firmware/remote.py keeps the same tuple).
SETTABLE = ("heartbeat_s", "trigger", "long_press_ms", "wifi", "silent", "track_s", "battery_min_ota")
OTA_STAGES = ("accepted", "refused", "downloaded", "trial", "kept", "rolled_back")
SLOTS = ("factory", "a", "b")
# The device reads at most firmware/mqtt.py MAX_IN (1280) bytes of PUBLISH body: topic
# (up to ~80 bytes for a 64-character id), packet id, payload. A command must fit beside that.
MAX_COMMAND = 1180
MAX_RESULT = 1024
CHUNK_MAGIC = b"PBO1"
CHUNK_HEAD = struct.Struct(">4sII")
CHUNK_MAX = 1024
_ERR_MAX = 40


# --- topics ------------------------------------------------------------------------------
def cmd_topic(dev: str, root: str = TOPIC_ROOT) -> str:
    return device_topic(dev, CMD, root)


def result_topic(dev: str, root: str = TOPIC_ROOT) -> str:
    return device_topic(dev, RESULT, root)


def ota_topic(dev: str, root: str = TOPIC_ROOT) -> str:
    return device_topic(dev, OTA, root)


def shared_result_filter(group: str, root: str = TOPIC_ROOT) -> str:
    """What each gateway of a group subscribes so one of them handles each result."""
    return f"$share/{group}/{root}/+/{RESULT}"


# --- commands ----------------------------------------------------------------------------
def command_fields(*, dev: str, n: int, op: str, args: dict | None = None, by: str, t: int) -> dict:
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}")
    if type(n) is not int or not 1 <= n <= INT_LIMIT:
        raise ValueError("n must be a positive integer")
    return {"v": VERSION, "dev": dev, "n": n, "op": op, "args": dict(args or {}), "by": by, "t": t}


def command_body(**fields: Any) -> bytes:
    """Keyword arguments of `command_fields`."""
    body = encode(command_fields(**fields))
    if len(body) + 1 + MAC_HEX_LEN > MAX_COMMAND:
        raise ValueError(f"command of {len(body)} bytes does not fit the device's {MAX_COMMAND}")
    return body


def command(secret: str, **fields: Any) -> bytes:
    """The signed payload to publish on `cmd_topic(dev)`."""
    return sign(command_body(**fields), secret)


def _signed_object(payload: bytes, secret: str, limit: int) -> tuple[str | None, dict | None]:
    why, body = signed_body(payload, secret, limit)
    if body is None:
        return why, None
    try:
        d = parse_object(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "json", None
    if d.get("v") != VERSION or type(d.get("v")) is not int:
        return "version", None
    return None, d


def parse_command(payload: bytes, secret: str, dev: str) -> tuple[str | None, dict | None]:
    """Check a command as the device does (firmware/remote.py check): (None, cmd) or
    (reason, None), reasons size, format, mac, json, version, dev, field, op. The replay
    check (n <= the last executed) needs the device's state and is not here."""
    why, d = _signed_object(payload, secret, MAX_COMMAND)
    if d is None:
        return why, None
    if d.get("dev") != dev:
        return "dev", None
    n = d.get("n")
    if type(n) is not int or not 1 <= n <= INT_LIMIT or not isinstance(d.get("args", {}), dict):
        return "field", None
    if d.get("op") not in OPS:
        return "op", None
    return None, d


# --- results and chunk requests (device -> gateway) ---------------------------------------
def result_fields(*, dev: str, n: int, op: str, ok: bool, err: str | None = None, fw: str, slot: str,
                  **extra: Any) -> dict:
    """The result as the firmware builds it (alerting.result): extra keys (stage, rel,
    reboot, ...) after the fixed ones."""
    d: dict[str, Any] = {"v": VERSION, "dev": dev, "n": n, "op": op, "ok": ok, "err": err, "fw": fw, "slot": slot}
    d.update(extra)
    return d


def result_body(**fields: Any) -> bytes:
    return encode(result_fields(**fields))


def get_body(*, dev: str, rel: int, off: int) -> bytes:
    """A chunk request: the device wants the bytes of release `rel` from offset `off`."""
    return encode({"v": VERSION, "dev": dev, "op": "get", "rel": rel, "off": off})


def parse_result(payload: bytes, secret: str, dev: str | None = None) -> tuple[str | None, dict | None]:
    """Check what a device published on its `result` topic: (None, d) or (reason, None),
    reasons size, format, mac, json, version, dev (not the topic's device), field, op,
    stage. d["op"] == "get" is a chunk request (d["rel"], d["off"] checked integers);
    anything else is a command's result (n, op, ok checked; err a short string or None;
    an ota result's stage one of OTA_STAGES). Never raises."""
    why, d = _signed_object(payload, secret, MAX_RESULT)
    if d is None:
        return why, None
    if not isinstance(d.get("dev"), str) or (dev is not None and d["dev"] != dev):
        return "dev", None
    op = d.get("op")
    if op == "get":
        for key in ("rel", "off"):
            if type(d.get(key)) is not int or not 0 <= d[key] <= INT_LIMIT:
                return "field", None
        return None, d
    if op not in OPS:
        return "op", None
    n, err = d.get("n"), d.get("err")
    if type(n) is not int or not 1 <= n <= INT_LIMIT or type(d.get("ok")) is not bool:
        return "field", None
    if err is not None and (not isinstance(err, str) or len(err) > _ERR_MAX):
        return "field", None
    if op == "ota" and d.get("stage") not in OTA_STAGES:
        return "stage", None
    return None, d


# --- OTA chunks (gateway -> device) -------------------------------------------------------
def chunk(seq: int, off: int, data: bytes) -> bytes:
    """The `ota` payload carrying `data` at byte `off` of release `seq`'s bundle."""
    if len(data) > CHUNK_MAX:
        raise ValueError(f"a chunk carries at most {CHUNK_MAX} bytes")
    return CHUNK_HEAD.pack(CHUNK_MAGIC, seq, off) + bytes(data)


def parse_chunk(payload: bytes) -> tuple[int, int, bytes]:
    """(seq, off, data) or ValueError, as the firmware's ota.py reads it."""
    if len(payload) < CHUNK_HEAD.size or payload[:4] != CHUNK_MAGIC:
        raise ValueError("not a PBO1 chunk")
    if len(payload) - CHUNK_HEAD.size > CHUNK_MAX:
        raise ValueError("chunk too long")
    _, seq, off = CHUNK_HEAD.unpack_from(payload)
    return seq, off, bytes(payload[CHUNK_HEAD.size:])
