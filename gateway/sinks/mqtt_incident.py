"""Each incident's latest state, retained, on `<root>/incidents/<id>`: a dispatch system that
subscribes late still finds every open incident."""
from __future__ import annotations

from dataclasses import dataclass

import orjson

from .base import DeliveryError, Forward, SinkContext, SinkEntry


@dataclass
class MqttIncidentSink:
    name: str
    events: frozenset[str] | None
    ctx: SinkContext
    root: str

    def _message(self, item: Forward) -> tuple[str, str]:
        incident = item.event().get("incident")
        if not isinstance(incident, dict) or not isinstance(incident.get("id"), str):
            raise DeliveryError("not an incident event", permanent=True)
        return f"{self.root}/incidents/{incident['id']}", orjson.dumps(incident).decode()

    def deliver(self, item: Forward) -> None:
        topic, body = self._message(item)
        self.ctx.publish(topic, body, retain=True)

    def deliver_many(self, items: list[Forward]) -> list[Exception | None]:
        """A claimed batch published at once, then every PUBACK awaited: a city-wide burst's
        incidents do not wait on each other's round trip."""
        out: list[Exception | None] = []
        messages: list[tuple[str, str]] = []
        at: list[int] = []
        for item in items:
            try:
                messages.append(self._message(item))
            except DeliveryError as exc:
                out.append(exc)
                continue
            at.append(len(out))
            out.append(None)
        for i, err in zip(at, self.ctx.publish_all(messages, retain=True), strict=True):
            out[i] = err
        return out


def from_config(entry: SinkEntry, ctx: SinkContext) -> MqttIncidentSink:
    return MqttIncidentSink(entry.name, entry.events, ctx, ctx.cfg.topic_root)
