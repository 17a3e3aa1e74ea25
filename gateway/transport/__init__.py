"""How the gateway talks to its broker: one declared interface (base.Transport), one
implementation per engine (mosquitto over MQTT, a NATS JetStream cluster)."""
from __future__ import annotations

from .base import Inbound, Published, Transport

__all__ = ["Inbound", "Published", "Transport", "build"]


def build(cfg, *, on_alert, on_status) -> Transport:
    """The transport the config names (`[mqtt] engine`, mosquitto unless it says nats): with a
    backup broker, one per broker behind a Fanout."""
    if getattr(cfg.mqtt, "engine", "mosquitto") == "nats":
        from .nats import NatsTransport
        return NatsTransport(cfg, on_alert=on_alert, on_status=on_status)
    from ..config import broker_links
    from .mqtt import MqttTransport
    links = broker_links(cfg)
    if len(links) == 1:
        return MqttTransport(cfg, on_alert=on_alert, on_status=on_status, link=links[0])
    from .fanout import Fanout
    return Fanout([MqttTransport(cfg, on_alert=on_alert, on_status=on_status, link=link) for link in links])
