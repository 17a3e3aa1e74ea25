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
from collections.abc import Callable

import httpx

from . import metrics
from .config import WebhookConfig
from .sinks import sink_names  # noqa: F401  (re-exported: the walking skeleton's name)
from .store import Store
from .timeutil import now_ms

log = logging.getLogger("panic.forward")

POLL_S = 0.5  # also picks up work another gateway queued, and retries that fall due


def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Forwarder:
    """Drains one sink's queue; `deliver` raises on failure.

    Entries are claimed with a lease (see Store.claim_forwards), so any number of
    gateways may run a forwarder for the same sink on one PostgreSQL queue and each
    entry still goes out once; a forwarder that dies mid-delivery leaves its lease to
    run out, after which another (or its own restart, same owner) takes the entry."""

    def __init__(self, sink: str, store: Store, deliver: Callable[[str, str], None], dead_after_s: int,
                 owner: str = "gateway-1", backoff_ms: int = 1000, backoff_max_s: int = 300,
                 lease_s: int = 60) -> None:
        self.sink = sink
        self.store = store
        self.deliver = deliver
        self.dead_after_ms = dead_after_s * 1000
        self.owner = owner
        self.backoff_ms = backoff_ms
        self.backoff_max_ms = backoff_max_s * 1000
        self.lease_ms = lease_s * 1000
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
            self.wake.clear()
            try:
                wait = self._drain()
            except Exception:
                log.exception("forwarder %s failed; retrying", self.sink)
                wait = POLL_S
            if wait > 0:
                self.wake.wait(wait)

    def _drain(self) -> float:
        """Deliver what is due; return how long to wait before looking again (0: at once)."""
        if not self.store.has_due(self.sink, now_ms()):
            return POLL_S
        rows = self.store.claim_forwards(self.sink, self.owner, now_ms(), self.lease_ms)
        done: list[int] = []
        try:
            for n, (fid, idem_key, payload, created_ms, attempts) in enumerate(rows):
                if self._stop:
                    self.store.release_forwards([r[0] for r in rows[n:]])
                    return POLL_S
                try:
                    self.deliver(idem_key, payload)
                except Exception as exc:
                    now = now_ms()
                    dead = now - created_ms > self.dead_after_ms
                    delay = min(self.backoff_ms * 2 ** min(attempts, 30), self.backoff_max_ms)
                    self.store.forward_failed(fid, now + delay, str(exc), dead)
                    # The sink is most likely down: hand the rest back rather than fail each in turn.
                    self.store.release_forwards([r[0] for r in rows[n + 1:]])
                    metrics.forwards.labels(self.sink, "dead" if dead else "retry").inc()
                    log.warning("forward %s to %s failed (attempt %d): %s%s", idem_key, self.sink,
                                attempts + 1, exc, "; dead-lettered" if dead else "")
                    return min(delay / 1000, POLL_S)
                done.append(fid)
                metrics.forwards.labels(self.sink, "ok").inc()
        finally:
            # One transaction for the batch: a mark lost to a crash only means a redelivery,
            # which the Idempotency-Key lets the sink drop.
            self.store.forwards_done(done, now_ms())
        return 0 if rows else POLL_S


def webhook_deliverer(hook: WebhookConfig, timeout_s: float = 5.0,
                      cap: Callable[[dict], str] | None = None) -> Callable[[str, str], None]:
    """POST the event; `cap` turns an incident event into CAP XML for format = "cap"."""
    client = httpx.Client(timeout=timeout_s)

    def deliver(idem_key: str, payload: str) -> None:
        content_type = "application/json"
        if hook.format == "cap" and cap is not None and "incident" in (event := json.loads(payload)):
            body = cap(event).encode()
            content_type = "application/cap+xml"
        else:
            body = payload.encode()
        headers = {"Content-Type": content_type, "Idempotency-Key": idem_key}
        if hook.secret:
            headers["X-Panic-Signature"] = signature(body, hook.secret)
        resp = client.post(hook.url, content=body, headers=headers)
        if resp.status_code >= 300:
            raise RuntimeError(f"HTTP {resp.status_code}")
    return deliver


def _publish(client, topic: str, body: str, retain: bool) -> None:
    info = client.publish(topic, body, qos=1, retain=retain)
    info.wait_for_publish(timeout=5)
    if not info.is_published():
        raise RuntimeError("broker did not confirm the publish")


def mqtt_deliverer(client, root: str) -> Callable[[str, str], None]:
    """Publish each incident's latest state, retained, on <root>/incidents/<id>."""

    def deliver(idem_key: str, payload: str) -> None:
        incident = json.loads(payload)["incident"]
        _publish(client, f"{root}/incidents/{incident['id']}", json.dumps(incident), retain=True)
    return deliver


def ops_deliverer(client, root: str) -> Callable[[str, str], None]:
    """Device events for city operations: <root>/ops/health/<dev> (retained: the latest
    health of each device) and <root>/ops/policy/<dev>."""

    def deliver(idem_key: str, payload: str) -> None:
        event = json.loads(payload)
        kind, dev = event["event"], event["device"]["id"]
        _publish(client, f"{root}/ops/{kind}/{dev}", payload, retain=kind == "health")
    return deliver
