"""What ingest needs from a broker, whichever engine carries the traffic.

A transport hands every alert and status it receives to the callbacks it was built with, as
an `Inbound` (MQTT-style topic, payload bytes, QoS, retain flag); the worker settles each
alert with `ack` only once its incident is committed, so a gateway that dies first leaves
the alert with the broker for another gateway (or itself, after a restart). `publish` sends
a signed ack to a device, or retained incident state and ops events to dispatch systems."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Inbound(Protocol):
    """One received message. The topic is MQTT-style (`panic/v1/<dev>/alert`) on every engine.
    A mosquitto message also names the broker it came in on (mqtt.Received: `transport`,
    `backup`): ingest settles and answers it there and records its path."""
    topic: str
    payload: bytes | bytearray
    qos: int
    retain: bool


class Published(Protocol):
    """A publish in flight: waiting returns once the broker has confirmed it (or the timeout)."""

    def wait_for_publish(self, timeout: float | None = None) -> None: ...

    def is_published(self) -> bool: ...


AlertHandler = Callable[[Any], None]
StatusHandler = Callable[[list[Any]], None]  # a block of statuses


class Flag(Protocol):
    """A threading.Event as readers see it."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class Transport(Protocol):
    @property
    def connected(self) -> Flag:
        """Set while the alert consumer is connected (for /healthz and the gauge)."""
        ...

    def start(self) -> None:
        """Connect and begin delivering alerts and statuses to the callbacks."""
        ...

    def stop(self) -> None: ...

    def ack(self, msg: Any) -> None:
        """The alert's outcome is committed (or dead-lettered): the broker may forget it."""
        ...

    def ack_many(self, msgs: list[Any]) -> None:
        """`ack` for a committed batch, in as few writes as the engine allows."""
        ...

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> Published:
        """Publish on an MQTT-style topic; `retain` keeps the latest per topic for late readers."""
        ...

    def describe(self) -> str:
        """Where it is connected, for logs."""
        ...
