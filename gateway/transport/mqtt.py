"""The mosquitto transport: paho over MQTT v5, one shared subscription for alerts with manual
PUBACK (a PUBACK only once the incident is committed), and a connection of its own for
statuses (a flood of them queues ahead of no alert in the broker's socket to the gateway)."""
from __future__ import annotations

import logging
import socket
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .. import metrics
from ..config import Config
from .base import AlertHandler, Published, StatusHandler

log = logging.getLogger("panic.ingest")

RECEIVE_MAXIMUM = 1024  # several full batches in flight keep group commits full


class MqttTransport:
    def __init__(self, cfg: Config, *, on_alert: AlertHandler, on_status: StatusHandler | None) -> None:
        self.cfg = cfg
        self.root = cfg.topic_root
        self.on_alert = on_alert
        self.on_status = on_status
        self.connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cfg.mqtt.client_id,
                                  protocol=mqtt.MQTTv5, manual_ack=True)
        self.client.username_pw_set(cfg.mqtt.username, cfg.mqtt.password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_socket_open = self._on_socket_open
        self.client.reconnect_delay_set(0.2, 5)  # type: ignore[arg-type]  # paho takes seconds as a float
        self.status_client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{cfg.mqtt.client_id}-status",
                                         protocol=mqtt.MQTTv5)
        self.status_client.username_pw_set(cfg.mqtt.username, cfg.mqtt.password)
        self.status_client.on_connect = self._on_status_connect
        self.status_client.on_message = self._on_status_message
        self.status_client.reconnect_delay_set(0.2, 5)  # type: ignore[arg-type]  # paho takes seconds as a float

    def describe(self) -> str:
        return f"mosquitto {self.cfg.mqtt.host}:{self.cfg.mqtt.port}"

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
        self.connected.set()
        metrics.mqtt_connected.set(1)
        log.info("connected to broker %s:%s", self.cfg.mqtt.host, self.cfg.mqtt.port)

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        self.connected.clear()
        metrics.mqtt_connected.set(0)
        log.warning("disconnected from broker: %s", reason)

    def _on_status_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            log.error("broker refused the gateway's status connection: %s", reason)
            return
        # Not shared: every gateway keeps every device's health, and a shared subscription
        # would not replay the retained statuses (and wills) at (re)connect.
        client.subscribe(f"{self.root}/+/status", qos=1)

    def _on_status_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        if self.on_status is not None and msg.topic.endswith("/status"):
            self.on_status(msg)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        if not msg.topic.endswith("/alert"):
            client.ack(msg.mid, msg.qos)  # e.g. a status under an older session's subscription
            return
        self.on_alert(msg)

    # --- the interface ---------------------------------------------------------------
    def ack(self, msg: mqtt.MQTTMessage) -> None:
        self.client.ack(msg.mid, msg.qos)

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> Published:
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        # A persistent session: alerts published while the gateway restarts wait for it.
        props.SessionExpiryInterval = 3600
        # The broker holds the rest of a burst in the session, not the gateway's memory.
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        self.client.connect_async(self.cfg.mqtt.host, self.cfg.mqtt.port, keepalive=15,
                                  clean_start=False, properties=props)
        self.client.loop_start()
        if self.on_status is not None:
            self.status_client.connect_async(self.cfg.mqtt.host, self.cfg.mqtt.port, keepalive=15)
            self.status_client.loop_start()

    def stop(self) -> None:
        if self.on_status is not None:
            self.status_client.disconnect()
            self.status_client.loop_stop()
        self.client.disconnect()
        self.client.loop_stop()
