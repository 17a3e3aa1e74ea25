"""A dispatch system's HTTP endpoint: each event POSTed as JSON (or, with `format = "cap"`,
an incident event as CAP 1.2 XML), with an `Idempotency-Key` that stays the same on every
redelivery and, given a secret, an HMAC-SHA256 signature of the exact body bytes."""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from ..cap import to_cap
from .base import DeliveryError, Forward, SinkContext, SinkEntry

# Statuses that refuse the body itself: retrying the same body cannot help, and holding it
# at the head of the queue would stall every later event for this sink.
REFUSED = frozenset((400, 413, 415, 422))


@dataclass
class Options:
    url: str
    secret: str = field(default="", repr=False)
    format: str = "json"  # json | cap
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.format not in ("json", "cap"):
            raise ValueError(f"format must be json or cap, not {self.format!r}")
        if urlsplit(self.url).scheme not in ("http", "https"):
            raise ValueError("url must be an http:// or https:// URL")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")


def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


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
        headers = {"Content-Type": content_type, "Idempotency-Key": item.idem_key}
        if self.options.secret:
            headers["X-Panic-Signature"] = signature(body, self.options.secret)
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
