"""The NATS JetStream transport: alerts from a replicated work-queue stream through one
durable pull consumer that every gateway shares.

Devices publish over MQTT to any node; the stream captures `panic.v1.*.alert` (the MQTT
topic `panic/v1/<dev>/alert`) on `replicas` nodes, so an alert survives the loss of a node
until a gateway has committed it. A gateway pulls at most MAX_IN_FLIGHT alerts it has not
settled; it acks each to JetStream only after the incident is committed, and one it took and
never settled (the gateway was killed) goes to another gateway after the consumer's ack
wait. The signed ack is a plain publish on the device's ack subject, which NATS hands to the
device's MQTT subscription; an ack lost to a node failure costs the device one
retransmission, which the store answers as a duplicate with the same `received`.

Statuses and wills arrive on a plain subscription (every gateway sees every device, as on
mosquitto); at start the retained ones (the latest status or will of every device) are read
from the MQTT layer's retained stream, as mosquitto replays them at subscribe. Incident state and ops events go out as plain publishes for live MQTT
subscribers, and the retained ones are also kept, latest per topic, in the KV bucket
STATE_BUCKET (key: the topic after the root, dots for slashes), where a dispatch system that
connects late reads every open incident.

nats-py is asyncio: the connection lives on a loop in a thread of its own, and the ingest
worker's calls cross over with call_soon_threadsafe / run_coroutine_threadsafe.
"""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ConsumerConfig, KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from .. import metrics
from ..config import Config
from .base import AlertHandler, Published, StatusHandler

log = logging.getLogger("panic.ingest")

MAX_IN_FLIGHT = 1024  # as mosquitto's Receive Maximum: several full batches keep group commits full
FETCH_MAX = 256
# Across every gateway: the consumer's window of alerts taken and not yet settled.
MAX_ACK_PENDING = 20_000
STATE_BUCKET = "panic_state"
STREAM_MAX_AGE_S = 7 * 24 * 3600
# Where NATS's MQTT layer keeps retained messages (statuses and wills among them).
RETAINED_STREAM = "$MQTT_rmsgs"
RETAINED_READ_S = 10.0


@dataclass
class NatsInbound:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    handle: Msg | None = None
    deliveries: int = 1  # how often JetStream has handed this alert to a gateway


@dataclass
class _Publish:
    """A publish crossing to the loop; confirmed when the coroutine finished without error."""
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)

    def wait_for_publish(self, timeout: float | None = None) -> None:
        try:
            self.future.result(timeout=timeout)
        except Exception:
            pass

    def is_published(self) -> bool:
        return self.future.done() and not self.future.cancelled() and self.future.exception() is None


def subject(topic: str) -> str:
    return topic.replace("/", ".")


def topic(subj: str) -> str:
    return subj.replace(".", "/")


class NatsTransport:
    def __init__(self, cfg: Config, *, on_alert: AlertHandler, on_status: StatusHandler | None) -> None:
        if not cfg.nats.servers:
            raise ValueError("[nats] servers is empty: `panic-gateway init --engine nats` writes it")
        self.cfg = cfg
        self.on_alert = on_alert
        self.on_status = on_status
        self.root = cfg.topic_root
        self.base = subject(cfg.topic_root)
        self.connected = threading.Event()
        self.in_flight = 0  # touched on the loop only
        self._stopping = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats", daemon=True)
        self._nc: Any = None
        self._js: Any = None
        self._kv: Any = None
        self._main: concurrent.futures.Future | None = None
        self._unsettled: dict[int, Msg] = {}
        self._live_status: set[str] = set()  # status subjects heard live: newer than any retained

    def describe(self) -> str:
        return f"NATS {', '.join(self.cfg.nats.servers)}"

    # --- the interface (any thread) ---------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        self._main = asyncio.run_coroutine_threadsafe(self._run(), self._loop)

    def stop(self) -> None:
        self._stopping = True
        try:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        except Exception:
            log.exception("NATS connection not closed cleanly")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def ack(self, msg: NatsInbound) -> None:
        self._loop.call_soon_threadsafe(self._settle, msg)

    def ack_many(self, msgs: list[NatsInbound]) -> None:
        for msg in msgs:
            self.ack(msg)

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> Published:
        data = payload.encode() if isinstance(payload, str) else payload
        p = _Publish()
        p.future = asyncio.run_coroutine_threadsafe(self._publish(topic, data, retain=retain), self._loop)
        return p

    # --- the loop ----------------------------------------------------------------------
    def _settle(self, msg: NatsInbound) -> None:
        if msg.handle is None:
            return
        self._unsettled.pop(id(msg.handle), None)
        self.in_flight -= 1
        self._loop.create_task(self._ack(msg.handle))

    async def _ack(self, m: Msg) -> None:
        try:
            await m.ack()
        except Exception as exc:
            # Redelivered after the ack wait; the store answers it as a duplicate.
            log.warning("JetStream ack not sent (%s): the alert comes back as a duplicate", exc)

    async def _publish(self, topic: str, data: bytes, *, retain: bool) -> None:
        if self._nc is None:
            raise ConnectionError("not connected to NATS")
        await self._nc.publish(subject(topic), data)
        if retain:
            if self._kv is None:
                raise ConnectionError("the state bucket is not ready")
            key = subject(topic[len(self.root) + 1:] if topic.startswith(self.root + "/") else topic)
            await self._kv.put(key, data)

    async def _close(self) -> None:
        nc = self._nc
        if nc is None:
            return
        # What this gateway took and did not settle goes to another one now, not after the ack wait.
        for m in list(self._unsettled.values()):
            try:
                await m.nak()
            except Exception:
                pass
        self._unsettled.clear()
        try:
            await nc.drain()
        except Exception:
            await nc.close()

    async def _on_disconnect(self) -> None:
        self.connected.clear()
        metrics.mqtt_connected.set(0)
        log.warning("disconnected from NATS")

    async def _on_reconnect(self) -> None:
        log.info("reconnected to NATS at %s", self._nc.connected_url.netloc if self._nc else "?")
        self.connected.set()
        metrics.mqtt_connected.set(1)

    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS: %s", exc)

    async def _run(self) -> None:
        nats_cfg = self.cfg.nats
        while not self._stopping:
            try:
                self._nc = await nats.connect(
                    servers=nats_cfg.servers, user=self.cfg.mqtt.username, password=self.cfg.mqtt.password,
                    name=self.cfg.mqtt.client_id, connect_timeout=2, reconnect_time_wait=0.5,
                    max_reconnect_attempts=-1, disconnected_cb=self._on_disconnect,
                    reconnected_cb=self._on_reconnect, error_cb=self._on_error)
                break
            except Exception as exc:
                log.error("NATS not reachable (%s); retrying", exc)
                await asyncio.sleep(1)
        if self._stopping:
            return
        self._js = self._nc.jetstream()
        psub = await self._retry("the alert stream and consumer", self._prepare)
        if self.on_status is not None:
            await self._nc.subscribe(f"{self.base}.*.status", cb=self._on_status_msg)
            await self._replay_retained()
        self.connected.set()
        metrics.mqtt_connected.set(1)
        log.info("consuming alerts from JetStream %s/%s on %s", nats_cfg.stream, nats_cfg.consumer,
                 self._nc.connected_url.netloc)
        await self._pull(psub)

    async def _retry(self, what: str, step):
        delay = 0.2
        while True:
            try:
                return await step()
            except Exception as exc:
                # No JetStream leader yet (a cluster still electing, a node down): wait.
                log.warning("%s not ready (%s: %s); retrying", what, type(exc).__name__, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _prepare(self):
        c = self.cfg.nats
        stream = StreamConfig(name=c.stream, subjects=[f"{self.base}.*.alert"], retention=RetentionPolicy.WORK_QUEUE,
                              storage=StorageType.FILE, num_replicas=c.replicas, max_age=STREAM_MAX_AGE_S,
                              max_msg_size=self.cfg.max_payload * 4)
        try:
            await self._js.stream_info(c.stream)
        except NotFoundError:
            try:
                await self._js.add_stream(stream)
            except BadRequestError as exc:
                if "already in use" not in str(exc):
                    raise
        self._kv = await self._bucket()
        # max_deliver unlimited: JetStream would drop an alert silently past it; ingest
        # dead-letters one that comes back too often instead (NatsInbound.deliveries).
        consumer = ConsumerConfig(durable_name=c.consumer, ack_wait=float(c.ack_wait_s), max_deliver=-1,
                                  max_ack_pending=MAX_ACK_PENDING, max_waiting=512)
        return await self._js.pull_subscribe(f"{self.base}.*.alert", durable=c.consumer, stream=c.stream,
                                             config=consumer)

    async def _bucket(self):
        try:
            return await self._js.key_value(STATE_BUCKET)
        except Exception:
            return await self._js.create_key_value(KeyValueConfig(bucket=STATE_BUCKET, history=1,
                                                                  replicas=self.cfg.nats.replicas))

    async def _on_status_msg(self, m: Msg) -> None:
        if self.on_status is not None:
            self._live_status.add(m.subject)
            self.on_status([NatsInbound(topic(m.subject), m.data, qos=1)])

    async def _replay_retained(self) -> None:
        """Hand on every device's retained status once, unless a live one came first (it is newer).
        A record is JSON with the NATS subject and the payload in base64 (nats-server 2.9)."""
        try:
            info = await self._js.stream_info(RETAINED_STREAM)
        except NotFoundError:
            return  # no MQTT client has retained anything yet
        except Exception as exc:
            log.warning("retained statuses not read (%s); live ones still arrive", exc)
            return
        last, latest = info.state.last_seq, {}
        if not info.state.messages:
            return
        sub = await self._js.subscribe(info.config.subjects[0], stream=RETAINED_STREAM, ordered_consumer=True)
        deadline = time.monotonic() + RETAINED_READ_S
        try:
            while time.monotonic() < deadline:
                try:
                    m = await sub.next_msg(timeout=1.0)
                except NatsTimeout:
                    break
                try:
                    rec = json.loads(m.data)
                    subj, data = rec["subject"], base64.b64decode(rec.get("msg") or "")
                except (ValueError, KeyError, TypeError):
                    continue
                if subj.startswith(self.base + ".") and subj.endswith(".status"):
                    latest[subj] = data
                if m.metadata.sequence.stream >= last:
                    break
        finally:
            await sub.unsubscribe()
        retained = [NatsInbound(topic(subj), data, qos=1, retain=True) for subj, data in latest.items()
                    if subj not in self._live_status and data]
        if retained and self.on_status is not None:
            self.on_status(retained)
        log.info("%d retained status(es) read from NATS", len(latest))

    async def _pull(self, psub) -> None:
        while not self._stopping:
            room = MAX_IN_FLIGHT - self.in_flight
            if room <= 0 or not self._nc.is_connected:
                await asyncio.sleep(0.005)
                continue
            try:
                msgs = await psub.fetch(batch=min(FETCH_MAX, room), timeout=1.0)
            except NatsTimeout:
                continue
            except Exception as exc:
                if not self._stopping:
                    log.warning("fetch from JetStream failed (%s: %s); retrying", type(exc).__name__, exc)
                    await asyncio.sleep(0.2)
                continue
            for m in msgs:
                self.in_flight += 1
                self._unsettled[id(m)] = m
                try:
                    deliveries = m.metadata.num_delivered or 1
                except Exception:
                    deliveries = 1
                self.on_alert(NatsInbound(topic(m.subject), m.data, qos=1, handle=m, deliveries=deliveries))
