"""A dispatch system's HTTP endpoint: each event POSTed as JSON (or, with `format = "cap"`,
an incident event as CAP 1.2 XML), signed per the Standard Webhooks specification.

`webhook-id` is the forward's idempotency key (the same on every redelivery, so a receiver
drops what it already has); `webhook-timestamp` is the attempt's own send time, signed with
the body, so a receiver that checks it against a tolerance window refuses a captured request
replayed later. `X-Panic-Signature` (HMAC of the body alone, no timestamp) is deprecated and
sent only while `legacy_signature` is true; `Idempotency-Key` carries the same id as before.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from ..cap import to_cap
from .base import DeliveryError, Forward, SinkContext, SinkEntry

# Statuses that refuse the body itself: retrying the same body cannot help, and holding it
# at the head of the queue would stall every later event for this sink.
REFUSED = frozenset((400, 413, 415, 422))
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: a `whsec_` secret is base64 (the spec's form); any other
    string is its UTF-8 bytes, which a receiver passes to its library as bytes."""
    if not secret.startswith(SECRET_PREFIX):
        return secret.encode()
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("secret: a whsec_ secret must be base64 after the prefix") from None
    if len(key) < 16:
        raise ValueError("secret: a whsec_ secret must hold at least 16 bytes")
    return key


@dataclass
class Options:
    url: str
    secret: str = field(default="", repr=False)
    format: str = "json"  # json | cap
    timeout_s: float = 5.0
    # Deprecated: the timestamp-less X-Panic-Signature, kept for receivers not yet on Standard Webhooks.
    legacy_signature: bool = True

    def __post_init__(self) -> None:
        if self.format not in ("json", "cap"):
            raise ValueError(f"format must be json or cap, not {self.format!r}")
        if urlsplit(self.url).scheme not in ("http", "https"):
            raise ValueError("url must be an http:// or https:// URL")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if not self.secret:
            # Unsigned events would let anyone who can reach the receiver dispatch police.
            raise ValueError("secret is required (`panic-gateway init --webhook URL` generates one; "
                             "a Standard Webhooks secret is whsec_ and base64)")
        secret_key(self.secret)

    @property
    def key(self) -> bytes:
        return secret_key(self.secret)


def signature(body: bytes, secret: str) -> str:
    """The deprecated X-Panic-Signature value: HMAC-SHA256 of the body alone."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: v1 and the base64 HMAC-SHA256 of `id.timestamp.body`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(options: Options, msg_id: str, body: bytes, *, now_s: int) -> dict[str, str]:
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(now_s),
               "webhook-signature": standard_signature(options.key, msg_id, now_s, body)}
    if options.legacy_signature:
        headers["X-Panic-Signature"] = signature(body, options.secret)
    return headers


class WebhookSink:
    def __init__(self, name: str, events: frozenset[str] | None, options: Options, *,
                 cap_sender: str, utc_offset_min: int) -> None:
        self.name = name
        self.events = events
        self.options = options
        self.cap_sender = cap_sender
        self.utc_offset_min = utc_offset_min
        self.client = httpx.Client(timeout=options.timeout_s)

    def body(self, item: Forward) -> tuple[bytes, str]:
        if self.options.format == "cap":
            event = item.event()
            if isinstance(event.get("incident"), dict):
                xml = to_cap(event["incident"], None, sender=self.cap_sender, utc_offset_min=self.utc_offset_min,
                             event=event.get("event"), at_ms=event.get("at_ms"))
                return xml.encode(), "application/cap+xml"
        return item.payload.encode(), "application/json"

    def deliver(self, item: Forward) -> None:
        try:
            body, content_type = self.body(item)
        except (KeyError, TypeError, ValueError) as exc:
            raise DeliveryError(f"cannot render the event: {exc!r}", permanent=True) from None
        headers = {"Content-Type": content_type, "Idempotency-Key": item.idem_key,
                   **signed_headers(self.options, item.idem_key, body, now_s=int(time.time()))}
        try:
            resp = self.client.post(self.options.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            # The message only: the URL may carry a token.
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        if resp.status_code >= 300:
            raise DeliveryError(f"HTTP {resp.status_code}", permanent=resp.status_code in REFUSED)


def from_config(entry: SinkEntry, ctx: SinkContext) -> WebhookSink:
    return WebhookSink(entry.name, entry.events, entry.options, cap_sender=ctx.cfg.cap_sender,
                       utc_offset_min=ctx.cfg.utc_offset_min)
