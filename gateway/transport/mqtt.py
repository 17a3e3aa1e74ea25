"""The mosquitto transport: paho over MQTT v5, one shared subscription for alerts with manual
PUBACK (a PUBACK only once the incident is committed), and a connection of its own for
statuses (a flood of them queues ahead of no alert in the broker's socket to the gateway),
read by the lean StatusReader rather than paho (status_reader.py says why).

One transport per broker (config.broker_links): each message is handed on as a `Received`
naming the transport it came in on, so its PUBACK and its signed ack go back through that
broker, and its path (domain/paths.py) knows a backup broker's alert."""
from __future__ import annotations

import logging
import socket
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .. import metrics
from ..config import BrokerLink, Config, broker_links
from .ack_writer import AckWriter
from .base import AlertHandler, Published, StatusHandler
from .status_reader import StatusReader

log = logging.getLogger("panic.ingest")

RECEIVE_MAXIMUM = 1024  # several full batches in flight keep group commits full


class Received:
    """A message and the broker it came in on."""
    __slots__ = ("backup", "mid", "payload", "qos", "retain", "topic", "transport")

    def __init__(self, msg: mqtt.MQTTMessage, transport: MqttTransport) -> None:
        self.topic, self.payload, self.qos, self.retain, self.mid = msg.topic, msg.payload, msg.qos, msg.retain, msg.mid
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
        self.connected = threading.Event()
        metrics.broker_connected.labels(self.link.name).set(0)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cfg.mqtt.client_id,
                                  protocol=mqtt.MQTTv5, manual_ack=True)
        self.client.username_pw_set(cfg.mqtt.username, cfg.mqtt.password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_socket_open = self._on_socket_open
        self.client.reconnect_delay_set(0.2, 5)  # type: ignore[arg-type]  # paho takes seconds as a float
        # Not shared: every gateway keeps every device's health, and a shared subscription
        # would not replay the retained statuses (and wills) at (re)connect. QoS 0: the
        # connection has no session, so QoS 1 bought nothing a reconnect keeps (the retained
        # statuses replay then), yet cost a PUBACK per heartbeat on both sides.
        self.status_reader = StatusReader(host=self.link.host, port=self.link.port,
                                          client_id=f"{cfg.mqtt.client_id}-status", username=cfg.mqtt.username,
                                          password=cfg.mqtt.password, topic=f"{self.root}/+/status",
                                          on_message=self._on_status_message, keepalive=15,
                                          name=f"status-{self.link.name}",
                                          on_superseded=metrics.status_limited.labels("superseded").inc)
        self.ack_writer = AckWriter(host=self.link.host, port=self.link.port, client_id=f"{cfg.mqtt.client_id}-acks",
                                    username=cfg.mqtt.username, password=cfg.mqtt.password, keepalive=15,
                                    name=f"acks-{self.link.name}")

    def describe(self) -> str:
        return f"mosquitto {self.link.name} {self.link.host}:{self.link.port}"

    def links(self) -> list[dict]:
        """This broker and whether the alert consumer is connected (for /healthz)."""
        return [{"name": self.link.name, "host": self.link.host, "port": self.link.port,
                 "connected": self.connected.is_set()}]

    def _set_connected(self, up: bool) -> None:
        if up:
            self.connected.set()
        else:
            self.connected.clear()
        metrics.broker_connected.labels(self.link.name).set(1 if up else 0)
        if not self.link.backup:
            metrics.mqtt_connected.set(1 if up else 0)

    # --- paho's thread ---------------------------------------------------------------
    def _on_socket_open(self, client, userdata, sock) -> None:
        # paho leaves Nagle on: every ack would wait for the peer's delayed ACK (~40 ms).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            log.error("broker refused the gateway: %s", reason)
            return
        client.subscribe(f"$share/{self.cfg.mqtt.group}/{self.root}/+/alert", qos=1)
        # A persistent session from an older gateway may still carry the status subscription.
        client.unsubscribe(f"{self.root}/+/status")
        self._set_connected(True)
        log.info("connected to %s broker %s:%s", self.link.name, self.link.host, self.link.port)

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        self._set_connected(False)
        log.warning("disconnected from %s broker: %s", self.link.name, reason)

    def _on_status_message(self, topic: str, payload: bytes, retain: bool) -> None:
        if self.on_status is not None and topic.endswith("/status"):
            self.on_status(Status(topic, payload, retain, self))

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        if not msg.topic.endswith("/alert"):
            client.ack(msg.mid, msg.qos)  # e.g. a status under an older session's subscription
            return
        self.on_alert(Received(msg, self))

    # --- the interface ---------------------------------------------------------------
    def ack(self, msg: Received) -> None:
        self.client.ack(msg.mid, msg.qos)

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> Published:
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def publish_acks(self, items: list[tuple[str, bytes]]) -> None:
        """Signed acks (QoS 1) to devices, all in one write (ack_writer.py); through paho, one
        by one, while that connection is down."""
        if not self.ack_writer.publish(items):
            for topic, payload in items:
                self.client.publish(topic, payload, qos=1)

    def start(self) -> None:
        self.ack_writer.start()
        props = Properties(PacketTypes.CONNECT)
        # A persistent session: alerts published while the gateway restarts wait for it.
        props.SessionExpiryInterval = 3600
        # The broker holds the rest of a burst in the session, not the gateway's memory.
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        self.client.connect_async(self.link.host, self.link.port, keepalive=15,
                                  clean_start=False, properties=props)
        self.client.loop_start()
        if self.on_status is not None:
            self.status_reader.start()

    def stop(self) -> None:
        if self.on_status is not None:
            self.status_reader.stop()
        self.client.disconnect()
        self.client.loop_stop()
        self.ack_writer.stop()
