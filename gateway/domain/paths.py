"""Which path a delivery came by (docs/protocol.md "Paths"): one rule, read by the MQTT ingest
and the SMS relay alike."""
from __future__ import annotations

WIFI = "wifi"
BACKUP_BROKER = "backup_broker"
CELLULAR = "cellular"
SMS = "sms"
PATHS = (WIFI, BACKUP_BROKER, CELLULAR, SMS)
# What an alert body may say about the link its transmission left on (absent: wifi).
VIA = ("wifi", "cellular")


def delivery_path(*, sms: bool, via: str | None, backup_broker: bool) -> str:
    """The path of one delivery: an SMS is `sms` whatever it claims; a body sent over the
    button's modem is `cellular` on either broker; otherwise the broker it came in on tells
    the home WiFi's two paths apart."""
    if sms:
        return SMS
    if via == CELLULAR:
        return CELLULAR
    return BACKUP_BROKER if backup_broker else WIFI


def e164(number: str) -> str | None:
    """The number in E.164 form (`+` then 8 to 15 digits, spaces and dashes dropped), or None
    when it is not one: a SIM is registered, and an SMS sender matched, in this one form."""
    n = number.strip().replace(" ", "").replace("-", "")
    digits = n[1:]
    if not n.startswith("+") or not digits.isdigit() or not 8 <= len(digits) <= 15 or digits[0] == "0":
        return None
    return n
