# Wire protocol v1 (docs/protocol.md): signed alert out, signed ack in.
# A signed payload is: body bytes, b"\n", lowercase hex HMAC-SHA256(secret, body).
import json
from micropython import const
from hmac256 import equal

MAX_PAYLOAD = const(1024)
FW = "1.0.0"
STAGES = ("received", "acknowledged", "dispatched", "on_scene", "resolved", "cancelled",
          "rejected")


def sign(mac, body):
    return body + b"\n" + mac.hexdigest(body)


def alert_body(dev, rec, age, batt, rssi, loc, via=None):
    """loc: the fixed (lat6, lon6, acc), used when the record carries no GPS fix; via:
    "cellular" on a copy that leaves over the modem (absent means WiFi)."""
    gps = "lat6" in rec
    d = {"v": 1, "dev": dev, "id": rec["id"], "boot": rec["boot"],
         "seq": rec["seq"], "kind": rec["kind"], "t": rec["t"], "age": age,
         "lat6": rec["lat6"] if gps else loc[0], "lon6": rec["lon6"] if gps else loc[1],
         "acc": rec["acc"] if gps else loc[2], "src": "gps" if gps else "fixed",
         "batt": batt, "rssi": rssi}
    if rec.get("ref"):
        d["ref"] = rec["ref"]
    if via:
        d["via"] = via
    return json.dumps(d).encode()


def alert(mac, dev, rec, age, batt, rssi, loc, via=None):
    return sign(mac, alert_body(dev, rec, age, batt, rssi, loc, via))


def status_body(dev, state, boot, up, batt, rssi, outbox, diag=None):
    """diag: link diagnostics (reset cause, reconnects, last link error kind)."""
    d = {"v": 1, "dev": dev, "state": state, "fw": FW, "boot": boot,
         "up": up, "batt": batt, "rssi": rssi, "outbox": outbox}
    if diag:
        d.update(diag)
    return json.dumps(d).encode()


def will_body(dev):
    return json.dumps({"v": 1, "dev": dev, "state": "offline"}).encode()


def signed_body(mac, payload, limit):
    """The checks every signed payload passes before its JSON is read: (None, body) or
    (reason, None) with reason size, format or mac."""
    if payload is None or len(payload) > limit:
        return "size", None
    i = payload.rfind(b"\n")
    if i < 0:
        return "format", None
    body = payload[:i]
    sig = payload[i + 1:]
    if len(sig) != 64 or not equal(mac.hexdigest(body), sig):
        return "mac", None
    return None, body


def verify_ack(mac, payload):
    """Check a signed ack. Returns (None, ack_dict) or (reason, None); never raises:
    anything from the network is hostile until checked."""
    why, body = signed_body(mac, payload, MAX_PAYLOAD)
    if body is None:
        return why, None
    try:
        d = json.loads(body)
    except Exception:
        return "json", None
    if not isinstance(d, dict) or d.get("v") != 1:
        return "version", None
    aid = d.get("id")
    if not isinstance(aid, str) or not aid:
        return "field", None
    if d.get("stage") not in STAGES:
        return "stage", None
    now = d.get("now")
    if now is not None and not isinstance(now, int):
        return "field", None
    return None, d
