# The SMS form of protocol v1 (docs/protocol.md, "SMS"), device side: the one-segment
# signed alert text and the check of a signed ack. Must produce and accept exactly what
# protocol/sms.py does (protocol/vectors.json "sms"). Parsed by hand, not with `re`:
# MicroPython's regex has no counted repeats, and a hand parser allocates less.
from hmac256 import equal

SEGMENT = 160
MAC_LEN = 16
_KIND = {"panic": "P", "test": "T"}     # a cancel never travels by SMS
_SRC = {"gps": "G", "fixed": "F"}
STAGES = ("received", "acknowledged", "dispatched", "on_scene", "resolved", "cancelled",
          "rejected")


def _tag(mac, text):
    return mac.hexdigest(text.encode())[:MAC_LEN]


def alert_text(mac, dev, boot, seq, kind, lat6, lon6, src, acc, t_s, age_s):
    """The signed alert text, or None for a kind SMS does not carry (cancel) or one that
    would not fit one segment."""
    k = _KIND.get(kind)
    if k is None:
        return None
    when = "T%d" % t_s if t_s is not None else "A%d" % age_s
    body = "PB1 %s %d:%d %s %d %d %s%d %s" % (dev, boot, seq, k, lat6, lon6, _SRC[src], acc, when)
    out = body + " " + _tag(mac, body).decode()
    return out if len(out) <= SEGMENT else None


def _digits(s, lo, hi):
    if not lo <= len(s) <= hi:
        return False
    for c in s:
        if not "0" <= c <= "9":
            return False
    return True


def _word(s, hi):
    if not 1 <= len(s) <= hi:
        return False
    for c in s:
        if not ("a" <= c <= "z" or c == "_"):
            return False
    return True


def verify_ack(mac, text):
    """(None, {"boot", "seq", "stage", "reason", "now"}) or (reason, None) with the host's
    reasons: format, mac, stage. Never raises: an SMS is hostile until checked."""
    try:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode()
        t = text.strip()
    except Exception:  # noqa: BLE001 -- not text at all
        return "format", None
    p = t.split(" ")
    if len(p) != 5 or p[0] != "PB1A":
        return "format", None
    bs, _, ss = p[1].partition(":")
    st, colon, why = p[2].partition(":")
    if not (_digits(bs, 1, 16) and _digits(ss, 1, 16) and _word(st, 200)
            and (not colon or _word(why, 20)) and _digits(p[3], 1, 12)):
        return "format", None
    tag = p[4]
    if len(tag) != MAC_LEN:
        return "format", None
    for c in tag:
        if c not in "0123456789abcdef":
            return "format", None
    if not equal(_tag(mac, t[:len(t) - MAC_LEN - 1]), tag.encode()):
        return "mac", None
    if st not in STAGES:
        return "stage", None
    return None, {"boot": int(bs), "seq": int(ss), "stage": st, "reason": why or None,
                  "now": int(p[3]) * 1000}
