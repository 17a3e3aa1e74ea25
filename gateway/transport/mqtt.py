"""The mosquitto transport: three lean connections per broker (lean.py), each for one job.

- alerts (alert_reader.py): MQTT 5, persistent session, one shared subscription, a PUBACK
  only once the incident is committed, a batch's PUBACKs in one write;
- statuses (status_reader.py): a connection of their own, so a flood of them queues ahead of
  no alert in the broker's socket to the gateway;
- publishes (publisher.py): signed acks, retained incident state, ops events.

One transport per broker (config.broker_links): each message is handed on as a `Received`
naming the transport it came in on, so its PUBACK and its signed ack go back through that
broker, and its path (domain/paths.py) knows a backup broker's alert."""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from .. import metrics
from ..config import BrokerLink, Config, broker_links
from .alert_reader import AlertReader
from .base import AlertHandler, StatusHandler
from .publisher import Pending, Publisher
from .status_reader import StatusReader

log = logging.getLogger("panic.ingest")

RECEIVE_MAXIMUM = 1024  # several full batches in flight keep group commits full


class Received:
    """An alert and the broker connection it came in on."""
    __slots__ = ("backup", "generation", "mid", "payload", "qos", "retain", "topic", "transport")

    def __init__(self, topic: str, payload: bytes, qos: int, retain: bool, mid: int, generation: int,
                 transport: MqttTransport) -> None:
        self.topic, self.payload, self.qos, self.retain, self.mid = topic, payload, qos, retain, mid
        self.generation = generation
        self.transport = transport
        self.backup = transport.link.backup


class Status:
    """A status message as the status connection hands it on (QoS 0: nothing to ack)."""
    __slots__ = ("backup", "mid", "payload", "qos", "retain", "topic", "transport")

    def __init__(self, topic: str, payload: bytes, retain: bool, transport: MqttTransport) -> None:
        self.topic, self.payload, self.retain, self.qos, self.mid = topic, payload, retain, 0, 0
        self.transport = transport
        self.backup = transport.link.backup


class MqttTransport:
    def __init__(self, cfg: Config, *, on_alert: AlertHandler, on_status: StatusHandler | None,
                 link: BrokerLink | None = None) -> None:
        self.cfg = cfg
        self.link = link or broker_links(cfg)[0]
        self.root = cfg.topic_root
        self.on_alert = on_alert
        self.on_status = on_status
        metrics.broker_connected.labels(self.link.name).set(0)
        login: dict[str, Any] = {"host": self.link.host, "port": self.link.port, "username": cfg.mqtt.username,
                                 "password": cfg.mqtt.password, "keepalive": 15}
        self.alerts = AlertReader(client_id=cfg.mqtt.client_id, name=f"alerts-{self.link.name}",
                                  topic=f"$share/{cfg.mqtt.group}/{self.root}/+/alert",
                                  unsubscribe=f"{self.root}/+/status", receive_maximum=RECEIVE_MAXIMUM,
                                  on_alert=self._on_alert, on_connection=self._set_connected, **login)
        self.connected = self.alerts.connected
        # Not shared: every gateway keeps every device's health, and a shared subscription
        # would not replay the retained statuses (and wills) at (re)connect. QoS 0: the
        # connection has no session, so QoS 1 bought nothing a reconnect keeps (the retained
        # statuses replay then), yet cost a PUBACK per heartbeat on both sides.
        self.status_reader = StatusReader(client_id=f"{cfg.mqtt.client_id}-status", topic=f"{self.root}/+/status",
                                          on_statuses=self._on_statuses, name=f"status-{self.link.name}",
                                          on_superseded=metrics.status_limited.labels("superseded").inc, **login)
        self.publisher = Publisher(client_id=f"{cfg.mqtt.client_id}-pub", name=f"publish-{self.link.name}", **login)

    def describe(self) -> str:
        return f"mosquitto {self.link.name} {self.link.host}:{self.link.port}"

    def links(self) -> list[dict]:
        """This broker and whether the alert consumer is connected (for /healthz)."""
        return [{"name": self.link.name, "host": self.link.host, "port": self.link.port,
                 "connected": self.connected.is_set()}]

    def _set_connected(self, up: bool) -> None:
        metrics.broker_connected.labels(self.link.name).set(1 if up else 0)
        if not self.link.backup:
            metrics.mqtt_connected.set(1 if up else 0)
        if up:
            log.info("connected to %s broker %s:%s", self.link.name, self.link.host, self.link.port)
        else:
            log.warning("disconnected from %s broker", self.link.name)

    # --- the readers' threads --------------------------------------------------------
    def _on_alert(self, topic: str, payload: bytes, qos: int, retain: bool, pid: int, generation: int) -> None:
        self.on_alert(Received(topic, payload, qos, retain, pid, generation, self))

    def _on_statuses(self, items: list[tuple[str, bytes, bool]]) -> None:
        if self.on_status is not None:
            self.on_status([Status(topic, payload, retain, self) for topic, payload, retain in items
                            if topic.endswith("/status")])

    # --- the interface ---------------------------------------------------------------
    def ack(self, msg: Received) -> None:
        self.ack_many([msg])

    def ack_many(self, msgs: Iterable[Received]) -> None:
        """PUBACK alerts whose outcome is committed, one write per connection they came on."""
        by_gen: dict[int, list[int]] = {}
        for m in msgs:
            if m.qos:
                by_gen.setdefault(m.generation, []).append(m.mid)
        for gen, pids in by_gen.items():
            self.alerts.ack(pids, gen)

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> Pending:
        return self.publisher.publish(topic, payload, qos=qos, retain=retain)

    def publish_many(self, items: list[tuple[str, bytes]], *, retain: bool = False) -> list[Pending]:
        """QoS 1 publishes (a batch's signed acks, a claimed batch's incident states), all in
        one write."""
        return self.publisher.publish_many(items, retain=retain)

    def start(self) -> None:
        self.publisher.start()
        self.alerts.start()
        if self.on_status is not None:
            self.status_reader.start()

    def stop(self) -> None:
        if self.on_status is not None:
            self.status_reader.stop()
        self.alerts.stop()
        self.publisher.stop()
