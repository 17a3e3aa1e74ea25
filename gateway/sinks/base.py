"""What every dispatch sink is: the interface the forwarder drives, and what it is built with.

A sink is anything that takes forwarded events: the retained MQTT incident topic, the
operations topics, a dispatch webhook, and whatever a deployment adds (SMS, SIA DC-09).
The forwarder knows sinks only through `Sink`; the registry builds them from config.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

if TYPE_CHECKING:
    from ..config import Config
    from ..store import Store

# Incident stages and escalation: what a sink without an `events` list takes.
INCIDENT_EVENTS = ("new", "acknowledged", "dispatched", "en_route", "on_scene", "resolved", "cancelled",
                   "escalated", "verify", "cancel_requested")
# Events about a device rather than an incident: only sinks that list them take them.
DEVICE_EVENTS = ("health", "policy")
# Notices for someone outside the desk (the 112 centre at the ladder's top, the kelurahan's
# Bhabinkamtibmas): only sinks that list them take them.
NOTICE_EVENTS = ("escalated_112", "bhabinkamtibmas")
EVENTS = INCIDENT_EVENTS + DEVICE_EVENTS + NOTICE_EVENTS


def takes(events: frozenset[str] | None, event: str) -> bool:
    """Whether a sink taking `events` (None: every incident event) takes `event`."""
    if events is None:
        return event not in DEVICE_EVENTS and event not in NOTICE_EVENTS
    return event in events


class DeliveryError(Exception):
    """A delivery that failed. `permanent`: this entry can never succeed (the sink refused
    its body), so it is dead-lettered at once instead of blocking the entries behind it."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Forward:
    """One queued event for one sink. `payload` is the event's JSON text; `idem_key` is the
    same on every redelivery, so a sink can drop what it already has."""
    idem_key: str
    payload: str
    created_ms: int = 0
    attempts: int = 0

    def event(self) -> dict[str, Any]:
        """The payload parsed; a payload that is not a JSON object is a permanent failure."""
        try:
            parsed = orjson.loads(self.payload)
        except orjson.JSONDecodeError as exc:
            raise DeliveryError(f"payload is not JSON: {exc}", permanent=True) from None
        if not isinstance(parsed, dict):
            raise DeliveryError("payload is not a JSON object", permanent=True)
        return parsed


class Sink(Protocol):
    # Unique and stable: it keys the sink's rows in the durable forward queue and its metrics.
    name: str
    # The events it takes; None: every incident event (no device events).
    events: frozenset[str] | None

    def deliver(self, item: Forward) -> None:
        """Hand one event over, or raise DeliveryError (any other exception counts as transient)."""
        ...

    # A sink that can hand over a claimed batch at once (publish all, then wait for every
    # confirmation) may also define `deliver_many(items) -> list[Exception | None]`: one
    # outcome per item, in order, as `deliver` would have raised it (forward.py).


class Publisher(Protocol):
    """The part of a broker transport the MQTT sinks use (transport/base.py)."""

    def publish(self, topic: str, payload: str, qos: int = 0, retain: bool = False) -> Any: ...


@dataclass(frozen=True)
class SinkEntry:
    """One validated `[[sinks]]` (or `[[webhooks]]`) table: `options` is an instance of the
    sink module's `Options` dataclass (None when the module takes no options)."""
    type: str
    module: str
    name: str
    events: frozenset[str] | None
    options: Any = None


@dataclass
class SinkContext:
    """What sinks are built with: the gateway's config and its broker connection."""
    cfg: Config
    mqtt: Publisher | None = None
    # For sinks that read the registry (a SIA DC-09 account per sector needs the device's kecamatan).
    store: Store | None = None

    def publish(self, topic: str, body: str, *, retain: bool, timeout_s: float = 5.0) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        (err,) = self.publish_all([(topic, body)], retain=retain, timeout_s=timeout_s)
        if err is not None:
            raise err

    def publish_all(self, items: list[tuple[str, str]], *, retain: bool,
                    timeout_s: float = 5.0) -> list[DeliveryError | None]:
        """Publish every (topic, body) at QoS 1, then wait for the broker's PUBACKs: one
        outcome per item (None: confirmed)."""
        if self.mqtt is None:
            return [DeliveryError("no broker connection") for _ in items]
        many = getattr(self.mqtt, "publish_many", None)
        if many is not None:  # one write for the batch (mqtt.MqttTransport)
            sent = many([(topic, body.encode()) for topic, body in items], retain=retain)
        else:
            sent = [self.mqtt.publish(topic, body, qos=1, retain=retain) for topic, body in items]
        deadline = time.monotonic() + timeout_s
        out: list[DeliveryError | None] = []
        for info in sent:
            info.wait_for_publish(timeout=max(0.0, deadline - time.monotonic()))
            out.append(None if info.is_published() else DeliveryError("broker did not confirm the publish"))
        return out
