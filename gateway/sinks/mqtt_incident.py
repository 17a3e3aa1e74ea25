"""Each incident's latest state, retained, on `<root>/incidents/<id>`: a dispatch system that
subscribes late still finds every open incident."""
from __future__ import annotations

import json
from dataclasses import dataclass

from .base import DeliveryError, Forward, SinkContext, SinkEntry


@dataclass
class MqttIncidentSink:
    name: str
    events: frozenset[str] | None
    ctx: SinkContext
    root: str

    def deliver(self, item: Forward) -> None:
        incident = item.event().get("incident")
        if not isinstance(incident, dict) or not isinstance(incident.get("id"), str):
            raise DeliveryError("not an incident event", permanent=True)
        self.ctx.publish(f"{self.root}/incidents/{incident['id']}", json.dumps(incident), retain=True)


def from_config(entry: SinkEntry, ctx: SinkContext) -> MqttIncidentSink:
    return MqttIncidentSink(entry.name, entry.events, ctx, ctx.cfg.topic_root)
