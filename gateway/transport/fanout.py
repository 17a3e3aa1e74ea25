"""Every broker at once: the primary and the backup (docs/gateway.md "Backup broker").

Alerts and statuses come from each broker's own transport, tagged with it; `ack` settles a
message on the broker it came from. `publish` goes to every broker (retained incident state,
ops events, an operator's ack to a button that may be on either): it counts as done once each
connected broker confirmed it and at least one did. A broker that is down misses that
publish; the next state of the incident reaches it once it is back.
"""
from __future__ import annotations

import time
from typing import Any

from .base import Published, Transport


class AnyConnected:
    """Set while any broker is connected: ingest can take alerts."""

    def __init__(self, transports: list[Transport]) -> None:
        self._transports = transports

    def is_set(self) -> bool:
        return any(t.connected.is_set() for t in self._transports)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True


class AllPublished:
    """A publish on every broker: done when each connected broker confirmed, and one did."""

    def __init__(self, sent: list[tuple[Transport, Published | None]]) -> None:
        self._sent = sent

    def wait_for_publish(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for t, info in self._sent:
            if info is None or not t.connected.is_set():
                continue
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                info.wait_for_publish(timeout=left)
            except (RuntimeError, ValueError):
                pass  # not sent on this broker (it went away): is_published tells

    def is_published(self) -> bool:
        done = [info is not None and info.is_published() for _, info in self._sent]
        waiting = [not ok and t.connected.is_set() for (t, _), ok in zip(self._sent, done, strict=True)]
        return any(done) and not any(waiting)


class Fanout:
    def __init__(self, transports: list[Any]) -> None:
        self.transports = transports
        self.connected = AnyConnected(transports)

    def describe(self) -> str:
        return ", ".join(t.describe() for t in self.transports)

    def links(self) -> list[dict]:
        """Each broker and whether its alert consumer is connected (for /healthz)."""
        return [{"name": t.link.name, "host": t.link.host, "port": t.link.port, "connected": t.connected.is_set()}
                for t in self.transports]

    def start(self) -> None:
        for t in self.transports:
            t.start()

    def stop(self) -> None:
        for t in self.transports:
            t.stop()

    def ack(self, msg: Any) -> None:
        msg.transport.ack(msg)

    def ack_many(self, msgs: list[Any]) -> None:
        by_broker: dict[int, list[Any]] = {}
        for m in msgs:
            by_broker.setdefault(id(m.transport), []).append(m)
        for batch in by_broker.values():
            batch[0].transport.ack_many(batch)

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> Published:
        sent: list[tuple[Transport, Published | None]] = []
        for t in self.transports:
            try:
                sent.append((t, t.publish(topic, payload, qos=qos, retain=retain)))
            except (OSError, RuntimeError, ValueError):
                sent.append((t, None))
        return AllPublished(sent)
