"""Device events for city operations: `<root>/ops/health/<dev>` (retained: the latest health
of each device) and `<root>/ops/policy/<dev>` (false-alarm policy actions)."""
from __future__ import annotations

from dataclasses import dataclass

from .base import DEVICE_EVENTS, DeliveryError, Forward, SinkContext, SinkEntry

DEFAULT_EVENTS = frozenset(DEVICE_EVENTS)


@dataclass
class OpsSink:
    name: str
    events: frozenset[str] | None
    ctx: SinkContext
    root: str

    def deliver(self, item: Forward) -> None:
        event = item.event()
        kind, device = event.get("event"), event.get("device")
        if kind not in DEVICE_EVENTS or not isinstance(device, dict) or not isinstance(device.get("id"), str):
            raise DeliveryError("not a device event", permanent=True)
        self.ctx.publish(f"{self.root}/ops/{kind}/{device['id']}", item.payload, retain=kind == "health")


def from_config(entry: SinkEntry, ctx: SinkContext) -> OpsSink:
    return OpsSink(entry.name, entry.events, ctx, ctx.cfg.topic_root)
