"""Alert ingest: broker → validate → store (group commit) → signed ack → forwarders.

The transport's thread (gateway/transport/) only queues messages; one worker drains the
queue in batches, commits each batch in one transaction, and only then acks the device and
the broker (a manual PUBACK on mosquitto, a JetStream ack on NATS), so an ack always means
the incident is on disk.

Bounded on every side, so no single device can starve the others: the broker keeps at most
a bounded window of QoS 1 alerts in flight to the gateway (MQTT v5 Receive Maximum; the rest
wait in the broker's session), QoS 0 alerts past QOS0_QUEUE_MAX queued are shed and
counted, statuses come on a connection of their own (a flood of them queues ahead of no
alert in the broker's socket to the gateway) through a per-device StatusGate, and a message
that keeps failing in
the store is dead-lettered after DEAD_AFTER attempts instead of holding up every alert
behind it.
"""
from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from . import crashpoints, metrics, signing, transport
from .config import Config
from .models import Alert, Device, Incident, Outcome
from .status_gate import StatusGate
from .store import Store
from .timeutil import now_ms
from .validate import REASONS, Rejection, check_alert

log = logging.getLogger("panic.ingest")

BATCH_MAX = 256
for _reason in REASONS:
    metrics.alerts_rejected.labels(_reason)
REGISTRY_TTL_S = 2.0
SWITCH_INTERVAL_S = 0.0005
QOS0_QUEUE_MAX = 1024
# Attempts of one message on its own before it is dead-lettered: enough to ride out a
# deadlock or a brief lock timeout, few enough that a poison message costs seconds.
DEAD_AFTER = 5
# A NATS alert handed out this often and never settled took every gateway that tried it down
# with it (each one died before its ack): it is dead-lettered unprocessed.
POISON_DELIVERIES = 10
# /healthz reports ingest stalled when one batch has been in the worker this long, or
# messages wait while nothing has been committed for this long.
STALL_AFTER_S = 10.0


_acks_sent = metrics.Labelled(metrics.acks_sent)
_deliveries = metrics.Labelled(metrics.deliveries)
_delivery_latency = metrics.Labelled(metrics.delivery_latency)
_incidents_created = metrics.Labelled(metrics.incidents_created)
_rejected = metrics.Labelled(metrics.alerts_rejected)
_press_to_received = metrics.latency.labels("press_to_received")


class Registry:
    """Every device in memory, reloaded whenever the registry version changes.

    The CLI edits the registry from other processes and bumps the version in the same
    transaction; the ingest worker checks it once per batch (a rotated secret or a
    suspension applies to the very next alert), and any other caller (health, API) at
    most every REGISTRY_TTL_S. One query loads the whole registry, so a city-wide burst
    never pays one database round trip per device."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._devices: dict[str, Device] = {}
        self._version: int | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Reload when the registry changed (one tiny query when it did not)."""
        with self._lock:
            version = self.store.registry_version()
            self._checked = time.monotonic()
            if version != self._version:
                self._devices = {d.id: d for d in self.store.list_devices()}
                self._version = version

    def __call__(self, dev: str) -> Device | None:
        if self._version is None or time.monotonic() - self._checked > REGISTRY_TTL_S:
            self.refresh()
        return self._devices.get(dev)


def _via(msg: Any) -> Any:
    """The broker's transport a message came in on (None: the one transport there is)."""
    return getattr(msg, "transport", None)


def _backup(msg: Any) -> bool:
    return bool(getattr(msg, "backup", False))


def _bytes(payload: bytes | bytearray) -> bytes:
    return payload if isinstance(payload, bytes) else bytes(payload)


def ack_body(alert_id: str, stage: str, inc: str | None, reason: str | None, floor: int | None = None) -> bytes:
    body = {"v": 1, "id": alert_id, "stage": stage, "inc": inc, "reason": reason, "now": now_ms()}
    if floor is not None:
        body["floor"] = floor
    return orjson.dumps(body)


class Ingest:
    def __init__(self, cfg: Config, store: Store, *,
                 on_stored: Callable[[], None] = lambda: None,
                 on_status: Callable[[Any], None] | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.on_stored = on_stored
        # Status messages (health) go to their own worker through the gate, so a flood of
        # them never delays an alert; without a handler the transport does not read them.
        self.status_gate: StatusGate | None = None
        if on_status is not None:
            self.status_gate = StatusGate(on_status)
        self._stopping = False
        self.registry = Registry(store)
        self.root = cfg.topic_root
        # Bounded by the broker (Receive Maximum) for QoS 1 and by QOS0_QUEUE_MAX for QoS 0.
        self.queue: queue.Queue[Any] = queue.Queue()
        self._last_commit = time.monotonic()
        self._busy_since: float | None = None
        self.dead_lettered = 0
        self.transport = transport.build(cfg, on_alert=self._on_alert,
                                         on_status=self._on_status if self.status_gate is not None else None)
        self.connected = self.transport.connected
        self._worker = threading.Thread(target=self._work, name="ingest", daemon=True)

    # --- the transport's thread ------------------------------------------------------
    def _on_status(self, msgs: list[Any]) -> None:
        if self.status_gate is not None:
            self.status_gate.offer(msgs)

    def _on_alert(self, msg: Any) -> None:
        if msg.qos == 0 and self.queue.qsize() >= QOS0_QUEUE_MAX:
            metrics.alerts_shed.inc()
            return
        self.queue.put(msg)

    def status_done(self, msgs: list[Any]) -> None:
        """The health worker has handled these statuses: hand on each device's next one."""
        if self.status_gate is not None:
            self.status_gate.done(msgs)

    def progress(self) -> dict:
        """Whether ingest is making progress, for /healthz: a queue that is not drained, or
        one batch that never finishes, shows here while the MQTT link still looks fine."""
        now = time.monotonic()
        busy = self._busy_since
        busy_s = now - busy if busy is not None else 0.0
        since_commit = now - self._last_commit
        depth = self.queue.qsize()
        stalled = busy_s > STALL_AFTER_S or (depth > 0 and busy is None and since_commit > STALL_AFTER_S)
        return {"ok": not stalled, "queue": depth, "busy_s": round(busy_s, 3),
                "since_commit_s": round(since_commit, 3), "dead_letters": self.dead_lettered,
                "status_waiting": self.status_gate.pending() if self.status_gate else 0}

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        # The worker drops the GIL in every SQLite call and the fsync; with the default 5 ms
        # switch interval it then waits up to 5 ms to get it back from the MQTT thread, per
        # statement (a convoy: the gateway sat at 60 % CPU with a full queue). 0.5 ms keeps
        # the worker's waits short; the extra switches cost little.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        if self.status_gate is not None:
            self.status_gate.start()
        self._worker.start()
        self.transport.start()

    def stop(self) -> None:
        self._stopping = True
        self.queue.put(None)
        self._worker.join(timeout=5)
        if self.status_gate is not None:
            self.status_gate.stop()
        self.transport.stop()

    # --- the worker ----------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            msg = self.queue.get()
            if msg is None:
                return
            batch = [msg]
            while len(batch) < BATCH_MAX:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self.queue.put(None)
                    break
                batch.append(nxt)
            self._busy_since = time.monotonic()
            poison = [m for m in batch if getattr(m, "deliveries", 1) >= POISON_DELIVERIES]
            for m in poison:
                self._dead_letter(m, RuntimeError(f"delivered {m.deliveries} times, never settled"), m.deliveries)
            batch = [m for m in batch if m not in poison]
            if not batch:
                self._busy_since = None
                continue
            try:
                self._process_until_done(batch)
            finally:
                self._busy_since = None

    def _process_until_done(self, batch: list[Any]) -> None:
        """Retry a failed batch (e.g. the database is down) rather than drop it: a message
        not acked to the broker is only redelivered when the gateway reconnects (mosquitto) or
        after the consumer's ack wait (NATS). After a second failure
        the batch goes one message at a time, so one bad message cannot hold up the rest."""
        delay = 0.2
        for attempt in range(2):
            try:
                self._process(batch)
                return
            except Exception:
                metrics.store_errors.labels("ingest").inc()
                log.exception("ingest batch of %d failed (attempt %d); retrying", len(batch), attempt + 1)
                time.sleep(delay)
        for msg in batch:
            self._process_alone(msg)

    def _process_alone(self, msg: Any) -> None:
        """One message, retried with backoff; after DEAD_AFTER failures it is dead-lettered,
        unless the dead letter cannot be written either: then the store itself is down, and
        every message waits for it (nothing could be stored anyway)."""
        delay = 0.1
        attempts = 0
        while not self._stopping:
            try:
                self._process([msg])
                return
            except Exception as exc:
                attempts += 1
                metrics.store_errors.labels("ingest").inc()
                if attempts >= DEAD_AFTER and self._dead_letter(msg, exc, attempts):
                    return
                log.exception("ingest of one message on %s failed (attempt %d); retrying", msg.topic[:120], attempts)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _dead_letter(self, msg: Any, exc: Exception, attempts: int) -> bool:
        """Keep the message in the store with its reason, ack it, and tell the device it was
        rejected (else it retransmits the same poison for ever). False if the store refused."""
        result = check_alert(msg.topic, _bytes(msg.payload), root=self.root, max_payload=self.cfg.max_payload,
                             device=self.registry, now_ms=now_ms(), stale_past_ms=self.cfg.stale_past_s * 1000,
                             stale_future_ms=self.cfg.stale_future_s * 1000, backup_broker=_backup(msg))
        dev, alert_id = (result.dev, result.alert_id) if isinstance(result, Rejection) else (result.dev, result.id)
        reason = f"{type(exc).__name__}: {exc}"[:300]
        try:
            self.store.record_dead_letter(topic=msg.topic[:200], dev=dev or "", alert_id=alert_id or "",
                                          reason=reason, attempts=attempts,
                                          payload=msg.payload.decode("utf-8", "replace"), at_ms=now_ms())
        except Exception:
            log.exception("dead letter for %s not recorded; the store is failing, retrying the message",
                          msg.topic[:120])
            return False
        self.transport.ack(msg)
        self.dead_lettered += 1
        self._last_commit = time.monotonic()
        metrics.ingest_dead_letters.inc()
        log.error("dead-lettered alert after %d failed attempts: dev=%s id=%s reason=%s",
                  attempts, dev, alert_id, reason)
        device = self.registry(dev) if dev else None
        if device is not None and alert_id:
            self.send_ack(device, alert_id, "rejected", None, "ingest_failed", via=_via(msg))
        return True

    def _process(self, batch: list[Any]) -> None:
        self.registry.refresh()
        now = now_ms()
        valid: list[Alert] = []
        # Each alert's ack goes back through the broker its message came in on.
        origin: dict[int, Any] = {}
        acks: list[tuple[Any, str, bytes]] = []  # written together once the batch is committed
        metrics.alerts_received.inc(len(batch))
        for msg in batch:
            result = check_alert(msg.topic, _bytes(msg.payload), root=self.root, max_payload=self.cfg.max_payload,
                                 device=self.registry, now_ms=now,
                                 stale_past_ms=self.cfg.stale_past_s * 1000,
                                 stale_future_ms=self.cfg.stale_future_s * 1000, backup_broker=_backup(msg))
            if isinstance(result, Rejection):
                self._rejected(result, via=_via(msg), acks=acks)
            else:
                valid.append(result)
                origin[id(result)] = _via(msg)
        # One order for every gateway's batches, so two PostgreSQL transactions inserting
        # the same ids cannot deadlock (a cancel still follows the alert it cancels).
        valid.sort(key=lambda a: (a.dev, a.boot, a.seq))
        outcomes = self.store.ingest(valid) if valid else []
        crashpoints.reach("ingest_after_commit")
        if outcomes:
            metrics.ingest_batch.observe(len(outcomes))
        created: list[str] = []
        tally = metrics.Tally()
        for out in outcomes:
            self._acked(out, created, tally, via=origin.get(id(out.alert)), acks=acks)
        tally.apply()
        self._send_acks(acks)
        crashpoints.reach("ingest_after_ack")
        if created:
            # One line per batch, not per incident: in a city-wide burst a write per
            # incident cost the ingest thread a fifth of its time (py-spy, docs/benchmarks.md).
            log.info("%d incident(s): %s", len(created), ", ".join(created))
        self.transport.ack_many(batch)
        self._last_commit = time.monotonic()
        if any(o.created or not o.duplicate for o in outcomes):
            self.on_stored()

    def ingest_external(self, alert: Alert, *, path: str) -> Outcome:
        """One alert that came another way than the brokers (the SMS relay, gateway/sms/),
        stored, counted and handed to the sinks like theirs; its ack goes back the way it came
        (docs/protocol.md "Paths"), so none is published here."""
        alert.path = path
        (out,) = self.store.ingest([alert])
        created: list[str] = []
        tally = metrics.Tally()
        self._acked(out, created, tally, publish=False)
        tally.apply()
        if created:
            log.info("%d incident(s) by %s: %s", len(created), path, ", ".join(created))
        if out.created or not out.duplicate:
            self.on_stored()
        return out

    def _acked(self, out: Outcome, created: list[str], count: metrics.Tally, *, publish: bool = True,
               via: Any = None, acks: list | None = None) -> None:
        """Count (into the batch's tally), log and ack one stored alert."""
        a = out.alert
        inc: Incident | None = out.incident
        if out.duplicate:
            count.add(metrics.alerts_duplicate)
        if out.new_path:
            count.add(_deliveries[a.path])
            _delivery_latency[a.path].observe(max(0, a.received_ms - a.press_ms) / 1000)
        if out.created and inc is not None:
            count.add(_incidents_created[a.kind])
            _press_to_received.observe(max(0, inc.received_ms - inc.press_ms) / 1000)
            created.append(f"{inc.id} from {a.dev} ({a.kind}) press->received {inc.received_ms - inc.press_ms} ms")
        if out.reason == "open_cap":
            metrics.alerts_folded.inc()
            log.warning("alert %s of %s attached to its open incident %s: the button has too many open",
                        a.id, a.dev, inc.id if inc else None)
        if out.reason == "id_reuse":
            _rejected["id_reuse"].inc()
            log.warning("rejected alert: id_reuse (a new press under a known id; device told to re-key "
                        "above boot %d) dev=%s id=%s", out.floor, a.dev, a.id)
        device = self.registry(a.dev) if publish else None
        if device is not None:
            self.send_ack(device, a.id, out.stage, inc.id if inc else None, out.reason, out.floor, via=via,
                          batch=acks, tally=count)

    def _rejected(self, r: Rejection, *, via: Any = None, acks: list | None = None) -> None:
        _rejected[r.reason].inc()
        log.warning("rejected alert: %s (%s) dev=%s id=%s", r.reason, r.detail, r.dev, r.alert_id,
                    extra={"event": "alert_rejected", "reason": r.reason, "dev": r.dev, "alert_id": r.alert_id})
        # A device whose MAC verified but whose alert can never be accepted is told so,
        # or it would retransmit forever; unauthenticated senders get nothing back.
        if r.alert_id and r.dev and r.reason in ("schema", "stale"):
            device = self.registry(r.dev)
            if device is not None:
                self.send_ack(device, r.alert_id, "rejected", None, r.reason, via=via, batch=acks)

    def send_ack(self, device: Device, alert_id: str, stage: str, inc: str | None, reason: str | None,
                 floor: int | None = None, *, via: Any = None, batch: list | None = None,
                 tally: metrics.Tally | None = None) -> None:
        """`via`: the transport (broker) the alert came in on; None: every broker (an
        operator's step reaches the button on whichever it is connected to). `batch`: added
        to the batch's acks, which _send_acks writes once the batch is committed."""
        payload = signing.sign(ack_body(alert_id, stage, inc, reason, floor), device.secret)
        topic = f"{self.root}/{device.id}/ack"
        if batch is not None and via is not None:
            batch.append((via, topic, payload))
        else:
            (via or self.transport).publish(topic, payload, qos=1)
        if tally is not None:
            tally.add(_acks_sent[stage])
        else:
            _acks_sent[stage].inc()

    @staticmethod
    def _send_acks(acks: list[tuple[Any, str, bytes]]) -> None:
        """The batch's acks, per broker they go back through: in one write where the transport
        can (mqtt.MqttTransport.publish_many), else one publish each."""
        by_via: dict[int, tuple[Any, list[tuple[str, bytes]]]] = {}
        for via, topic, payload in acks:
            by_via.setdefault(id(via), (via, []))[1].append((topic, payload))
        for via, items in by_via.values():
            many = getattr(via, "publish_many", None)
            if many is not None:
                many(items)
            else:
                for topic, payload in items:
                    via.publish(topic, payload, qos=1)
