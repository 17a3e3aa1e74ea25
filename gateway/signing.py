"""Signed payloads of wire protocol v1, as the gateway uses them; the rules live in
`protocol.v1` (body bytes, b"\\n", lowercase hex HMAC-SHA256 of those bytes)."""
from __future__ import annotations

from protocol.v1 import MAC_HEX_LEN, mac, sign, split, verify

__all__ = ["MAC_HEX_LEN", "mac", "sign", "split", "verify"]
