"""Signed payloads of wire protocol v1: body bytes, b"\\n", lowercase hex HMAC-SHA256.

The MAC covers the body bytes exactly as sent, so no canonical JSON is needed
(MicroPython does not keep dict order).
"""
from __future__ import annotations

import hashlib
import hmac

MAC_HEX_LEN = 64


def mac(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str) -> bytes:
    return body + b"\n" + mac(body, secret).encode()


def split(payload: bytes) -> tuple[bytes, bytes] | None:
    """Return (body, mac_hex) or None when the payload is not body + newline + 64 hex."""
    body, sep, tag = payload.rpartition(b"\n")
    if not sep or len(tag) != MAC_HEX_LEN:
        return None
    return body, tag


def verify(body: bytes, tag: bytes, secret: str) -> bool:
    return hmac.compare_digest(mac(body, secret).encode(), tag)
