"""Durable forwarding to dispatch sinks.

Every incident event is queued per sink in the same transaction that stores it, so a
sink that is down loses nothing: one thread per sink delivers the queue in order,
retrying with exponential backoff, and gives an entry up as dead only after a
configured age (dead entries stay visible in the API).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from typing import Callable

import httpx

from . import metrics
from .timeutil import now_ms
from .config import WebhookConfig
from .store import Store

log = logging.getLogger("panic.forward")

BACKOFF_MAX_S = 300


def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Forwarder:
    """Drains one sink's queue; `deliver` raises on failure."""

    def __init__(self, sink: str, store: Store, deliver: Callable[[str, str], None], dead_after_s: int) -> None:
        self.sink = sink
        self.store = store
        self.deliver = deliver
        self.dead_after_ms = dead_after_s * 1000
        self.wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=f"forward-{sink}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self.wake.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop:
            try:
                busy = self._drain()
            except Exception:
                log.exception("forwarder %s failed; retrying", self.sink)
                busy = False
            if not busy:
                self.wake.wait(1.0)
                self.wake.clear()

    def _drain(self) -> bool:
        rows = self.store.due_forwards(self.sink, now_ms())
        for fid, idem_key, payload, created_ms, attempts in rows:
            if self._stop:
                return False
            try:
                self.deliver(idem_key, payload)
            except Exception as exc:
                now = now_ms()
                dead = now - created_ms > self.dead_after_ms
                delay = min(2 ** attempts, BACKOFF_MAX_S) * 1000
                self.store.forward_failed(fid, now + delay, str(exc), dead)
                metrics.forwards.labels(self.sink, "dead" if dead else "retry").inc()
                log.warning("forward %s to %s failed (attempt %d): %s%s", idem_key, self.sink,
                            attempts + 1, exc, "; dead-lettered" if dead else "")
                # Keep order per sink: do not skip ahead of an entry still being retried.
                return False
            self.store.forward_done(fid, now_ms())
            metrics.forwards.labels(self.sink, "ok").inc()
        return len(rows) > 0


def webhook_deliverer(hook: WebhookConfig, timeout_s: float = 5.0) -> Callable[[str, str], None]:
    client = httpx.Client(timeout=timeout_s)

    def deliver(idem_key: str, payload: str) -> None:
        body = payload.encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": idem_key}
        if hook.secret:
            headers["X-Panic-Signature"] = signature(body, hook.secret)
        resp = client.post(hook.url, content=body, headers=headers)
        if resp.status_code >= 300:
            raise RuntimeError(f"HTTP {resp.status_code}")
    return deliver


def mqtt_deliverer(client, root: str) -> Callable[[str, str], None]:
    """Publish each incident's latest state, retained, on <root>/incidents/<id>."""

    def deliver(idem_key: str, payload: str) -> None:
        incident = json.loads(payload)["incident"]
        info = client.publish(f"{root}/incidents/{incident['id']}", json.dumps(incident), qos=1, retain=True)
        info.wait_for_publish(timeout=5)
        if not info.is_published():
            raise RuntimeError("broker did not confirm the publish")
    return deliver


def sink_names(webhooks: list[WebhookConfig]) -> list[str]:
    return ["mqtt"] + [f"webhook:{w.name or i}" for i, w in enumerate(webhooks)]
