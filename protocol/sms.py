"""The SMS form of protocol v1 (docs/protocol.md, "SMS"): the last-resort path when no data
link delivers. One GSM-7 segment each way, plain text, signed with a truncated HMAC under the
device secret, so any phone network carries it and the command centre's SMS daemon hands it
to the gateway as is.

    alert  (button -> centre)  PB1 <dev> <boot>:<seq> <kind> <lat6> <lon6> <src><acc> <when> <mac>
    ack    (centre -> button)  PB1A <boot>:<seq> <stage>[:<reason>] <now_s> <mac>

kind is P (panic) or T (test); a cancel never travels by SMS (it waits for data, and only the
command side closes a call). src is G (GPS fix) or F (the registered place), acc its radius in
metres. when is T<unix seconds> when the button's clock is set, else A<seconds since the
press>. mac is the first 16 hex digits of HMAC-SHA256(secret as ASCII, every character before
the space that precedes it). The firmware's `sms.py` is the device side; `protocol/vectors.json`
("sms") holds bytes both sides must produce and accept.
"""
from __future__ import annotations

import hashlib
import hmac
import re

from .v1 import INT_LIMIT, STAGES, VERSION, alert_id

ALERT_TAG, ACK_TAG = "PB1", "PB1A"
MAC_LEN = 16  # 64 bits: forging one needs ~2^63 tries, and every wrong one is a counted rejection
SEGMENT = 160  # GSM-7 characters in one SMS
KINDS = {"P": "panic", "T": "test"}
SOURCES = {"G": "gps", "F": "fixed"}
_KIND_LETTER = {v: k for k, v in KINDS.items()}
_SRC_LETTER = {v: k for k, v in SOURCES.items()}

_ALERT = re.compile(
    r"PB1 (?P<dev>[a-z0-9-]{3,64}) (?P<boot>\d{1,16}):(?P<seq>\d{1,16}) (?P<kind>[PT]) "
    r"(?P<lat6>-?\d{1,8}) (?P<lon6>-?\d{1,9}) (?P<src>[GF])(?P<acc>\d{1,7}) "
    r"(?P<when>[TA])(?P<secs>\d{1,12}) (?P<mac>[0-9a-f]{16})")
_ACK = re.compile(r"PB1A (?P<boot>\d{1,16}):(?P<seq>\d{1,16}) (?P<stage>[a-z_]+)(?::(?P<reason>[a-z_]{1,20}))? "
                  r"(?P<now>\d{1,12}) (?P<mac>[0-9a-f]{16})")


class SmsError(ValueError):
    """Why an SMS was refused; `reason` is the counter label (format, mac)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def mac(text: str, secret: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()[:MAC_LEN]


def _signed(text: str, secret: str) -> str:
    out = f"{text} {mac(text, secret)}"
    assert len(out) <= SEGMENT, "an SMS of protocol v1 fits one segment"
    return out


def alert_text(*, dev: str, boot: int, seq: int, kind: str, lat6: int, lon6: int, src: str, acc: int,
               t_s: int | None, age_s: int, secret: str) -> str:
    when = f"T{t_s}" if t_s is not None else f"A{age_s}"
    return _signed(f"{ALERT_TAG} {dev} {boot}:{seq} {_KIND_LETTER[kind]} {lat6} {lon6} "
                   f"{_SRC_LETTER[src]}{acc} {when}", secret)


def ack_text(*, boot: int, seq: int, stage: str, reason: str | None, now_s: int, secret: str) -> str:
    word = f"{stage}:{reason}" if reason else stage
    return _signed(f"{ACK_TAG} {boot}:{seq} {word} {now_s}", secret)


def sms_device(text: str) -> str | None:
    """The device an alert SMS claims to come from (to find its secret), or None."""
    m = _ALERT.fullmatch(text.strip())
    return m["dev"] if m else None


def parse_alert(text: str, secret: str) -> dict:
    """The alert as the MQTT body's fields (check_alert_fields' keys, `v` and `dev` added),
    or SmsError. `t` is set from T<s>; `age` from A<s> (the network's delay is not in it)."""
    m = _ALERT.fullmatch(text.strip())
    if not m:
        raise SmsError("format", "not PB1 <dev> <boot>:<seq> <kind> <lat6> <lon6> <src><acc> <when> <mac>")
    signed, _, tag = text.strip().rpartition(" ")
    if not hmac.compare_digest(mac(signed, secret), tag):
        raise SmsError("mac", "the MAC does not verify under the device's secret")
    boot, seq, secs = int(m["boot"]), int(m["seq"]), int(m["secs"])
    lat6, lon6, acc = int(m["lat6"]), int(m["lon6"]), int(m["acc"])
    if not (-90_000_000 <= lat6 <= 90_000_000 and -180_000_000 <= lon6 <= 180_000_000) or boot > INT_LIMIT \
            or seq > INT_LIMIT:
        raise SmsError("format", "a number is out of range")
    dev = m["dev"]
    return {"v": VERSION, "dev": dev, "id": alert_id(dev, boot, seq), "boot": boot, "seq": seq,
            "kind": KINDS[m["kind"]], "t": secs * 1000 if m["when"] == "T" else None,
            "age": 0 if m["when"] == "T" else secs * 1000, "lat6": lat6, "lon6": lon6, "acc": acc,
            "src": SOURCES[m["src"]], "batt": None, "rssi": None}


def parse_ack(text: str, secret: str) -> tuple[str | None, dict | None]:
    """(None, {"boot", "seq", "stage", "reason", "now"}) or (reason, None), as the firmware checks it."""
    m = _ACK.fullmatch(text.strip())
    if not m:
        return "format", None
    signed, _, tag = text.strip().rpartition(" ")
    if not hmac.compare_digest(mac(signed, secret), tag):
        return "mac", None
    if m["stage"] not in STAGES:
        return "stage", None
    return None, {"boot": int(m["boot"]), "seq": int(m["seq"]), "stage": m["stage"], "reason": m["reason"],
                  "now": int(m["now"]) * 1000}
