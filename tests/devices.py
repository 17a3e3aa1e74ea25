"""A protocol-level device in Python (paho): lets tests send exactly the bytes they want,
including hostile ones, with a device's real broker credentials."""
from __future__ import annotations

import queue
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

import protocol


class RawDevice:
    def __init__(self, creds: dict, port: int, root: str = protocol.TOPIC_ROOT, *, subscribe_ack: bool = True) -> None:
        self.dev = creds["id"]
        self.secret = creds["secret"]
        self.root = root
        self.acks: queue.Queue[bytes] = queue.Queue()
        self.sent: dict[tuple[int, int], bytes] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.dev)  # the broker binds a device login to its id
        self.client.username_pw_set(creds["mqtt_username"], creds["mqtt_password"])
        self.client.on_message = lambda c, u, m: self.acks.put(bytes(m.payload))
        self.subacks: queue.Queue = queue.Queue()
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subacks.put(codes)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if subscribe_ack:
            self.subscribe(protocol.ack_topic(self.dev, root))

    def subscribe(self, topic: str) -> list:
        self.client.subscribe(topic, qos=1)
        return self.subacks.get(timeout=5)

    def body(self, seq: int = 1, boot: int = 1, **over) -> bytes:
        """A valid alert body; `over` replaces or adds fields, hostile values included."""
        b = protocol.alert_fields(dev=self.dev, boot=boot, seq=seq, kind="panic", t=time.time_ns() // 1_000_000,
                                  age=3, lat6=-7982600, lon6=112627000, acc=25, src="fixed", batt=87, rssi=-61)
        b.update(over)
        return protocol.encode(b)

    def publish(self, payload: bytes, topic: str | None = None) -> None:
        info = self.client.publish(topic or protocol.alert_topic(self.dev, self.root), payload, qos=1)
        info.wait_for_publish(5)

    def send(self, seq: int = 1, **over) -> bytes:
        body = self.body(seq, **over)
        self.sent[(over.get("boot", 1), seq)] = protocol.sign(body, self.secret)
        self.publish(self.sent[(over.get("boot", 1), seq)])
        return body

    def resend(self, seq: int, boot: int = 1) -> None:
        """A retransmission, as a button makes it: the same alert, press time and all."""
        self.publish(self.sent[(boot, seq)])

    def ack(self, timeout: float = 5.0) -> dict:
        payload = self.acks.get(timeout=timeout)
        reason, ack = protocol.parse_ack(payload, self.secret)
        assert ack is not None, f"ack refused as a button would: {reason}"
        return ack

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
