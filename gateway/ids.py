"""Identifiers: device ids, incident ids, secrets."""
from __future__ import annotations

import hashlib
import re
import secrets

DEVICE_ID = re.compile(r"[a-z0-9-]{3,64}")
# Names a device may not take: they are broker users or topic levels of the system itself.
RESERVED = frozenset({"gateway", "incidents", "dispatch", "admin", "ops", "panic-broker-admin"})


def valid_device_id(dev: object) -> bool:
    return isinstance(dev, str) and DEVICE_ID.fullmatch(dev) is not None and dev not in RESERVED


# 128 bits: a device that hashes its own alert ids offline cannot find two that collide
# (48 bits took 2^24 tries, under a minute on one core), nor can a million alerts by chance.
INCIDENT_ID_HEX = 32


def incident_id(alert_id: str) -> str:
    """Derived from the alert id, so every gateway that sees one alert names its incident alike."""
    return "inc-" + hashlib.sha256(alert_id.encode()).hexdigest()[:INCIDENT_ID_HEX]


def new_secret() -> str:
    return secrets.token_hex(32)


def new_password() -> str:
    return secrets.token_urlsafe(24)
