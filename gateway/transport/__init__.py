"""How the gateway talks to its broker: one declared interface (base.Transport), one
implementation per engine (mosquitto over MQTT, a NATS JetStream cluster)."""
from __future__ import annotations

from .base import Inbound, Published, Transport

__all__ = ["Inbound", "Published", "Transport", "build"]


def build(cfg, *, on_alert, on_status) -> Transport:
    """The transport the config names (`[mqtt] engine`, mosquitto unless it says nats)."""
    if getattr(cfg.mqtt, "engine", "mosquitto") == "nats":
        from .nats import NatsTransport
        return NatsTransport(cfg, on_alert=on_alert, on_status=on_status)
    from .mqtt import MqttTransport
    return MqttTransport(cfg, on_alert=on_alert, on_status=on_status)
