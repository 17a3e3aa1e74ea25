"""The fleet worker (docs/protocol.md "Fleet"): devices' signed results, OTA chunks, commands
and the staged rollout, in the gateway process.

Alerts come first. The worker has a broker connection and a thread of its own (FleetLink, a
lean MQTT link like the status reader's), never the alert consumer's or the ack writer's:
a download in progress queues nothing ahead of an alert or its ack in the gateway. Towards
the devices, chunks are rate-limited per device (a button's own connection carries its acks
too) and in total (the broker's one thread serves every button), and they go at QoS 0: a
lost chunk is asked for again by the device, never queued in a session.

Results arrive on a persistent shared subscription (`$share/<group>/<root>/+/result`): one
gateway of the group takes each, a result published while every gateway restarts waits in
the broker, and the PUBACK goes only after the result is recorded. A result whose MAC does
not verify under its device's secret is refused and counted (`panic_fleet_rejected_total`);
nothing of it is recorded.
"""
from __future__ import annotations

import base64
import logging
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from protocol import fleet as wire
from protocol import release as pbr
from protocol.v1 import INT_LIMIT, topic_device

from . import metrics
from .config import Config, broker_file
from .domain import rollout
from .models import Device
from .store import Store
from .timeutil import now_ms
from .transport.lean import (
    PUBLISH,
    SUBACK,
    LeanLink,
    ProtocolError,
    pubacks,
    publish_packet,
    publish_parts,
    suback_refused,
    subscribe_packet,
)

log = logging.getLogger("panic.fleet")

TICK_S = 1.0  # the rollout is looked at this often (and at once after each ota result)
QUEUE_MAX = 10_000  # results waiting for the worker; the link's thread waits past it (the broker keeps the rest)
_results = metrics.Labelled(metrics.fleet_results)
_rejected = metrics.Labelled(metrics.fleet_rejected)
_commands = metrics.Labelled(metrics.fleet_commands)
_chunks = metrics.Labelled(metrics.fleet_chunks)
for _r in ("size", "format", "mac", "json", "version", "dev", "field", "op", "stage", "unknown_device",
           "unknown_release", "offset"):
    _rejected[_r]
for _r in ("sent", "device", "total"):
    _chunks[_r]


class CommandError(ValueError):
    """A command the gateway will not send (unknown device, op or key)."""


def rules(cfg: Config) -> rollout.Rules:
    f = cfg.fleet
    return rollout.Rules(halt_pct=f.halt_pct, halt_min=f.halt_min, trial_s=f.trial_s, retry_s=f.retry_s,
                         parallel=f.parallel)


def check_command(op: str, args: dict) -> None:
    if op not in wire.OPS or op == "ota":  # ota is the rollout's alone: it carries a signed release
        raise CommandError(f"op must be one of locate, selftest, set, reboot, not {op!r}")
    if op == "set":
        if not args:
            raise CommandError("set needs at least one key=value")
        bad = sorted(set(args) - set(wire.SETTABLE))
        if bad:
            raise CommandError(f"not settable by command: {', '.join(bad)} (settable: {', '.join(wire.SETTABLE)})")
    elif args:
        raise CommandError(f"{op} takes no arguments")


def new_command(store: Store, device: Device, op: str, args: dict, by: str, root: str) -> tuple[str, bytes, int]:
    """Log the command (the audit row, its number allocated) and sign it: (topic, payload, n)."""
    if device.status != "active":
        raise CommandError(f"{device.id} is {device.status}: it has no broker login to receive commands")
    at = now_ms()
    # Checked before a number is spent (with the longest number): a command too big for the
    # device is never logged.
    wire.command_body(dev=device.id, n=INT_LIMIT, op=op, args=args, by=by, t=at)
    n = store.add_command(device.id, op, args, by=by, at_ms=at)
    _commands[op].inc()
    return wire.cmd_topic(device.id, root), wire.command(device.secret, dev=device.id, n=n, op=op, args=args, by=by,
                                                         t=at), n


def ota_args(store: Store, seq: int) -> dict:
    rel = store.get_release(seq)
    if rel is None:
        raise CommandError(f"no release {seq}")
    # The manifest as text, byte for byte as signed: the device checks the signature over it
    # before parsing it (protocol/release.py ota_args).
    return {"m": rel.manifest, "sig": base64.b64encode(rel.signature).decode()}


# --- releases and the read model (the CLI, the API and the console share them) -------------
class ReleaseRefused(ValueError):
    """A release file not stored: unreadable, not signed by a trusted key, or tampered."""


def trusted_keys(cfg: Config) -> dict[str, str]:
    """[fleet] release_keys: a *.pub.json file, a folder of them, or several paths with commas;
    relative to the config's folder."""
    if not cfg.fleet.release_keys.strip():
        raise ReleaseRefused("no trusted release keys: set [fleet] release_keys to the release manager's "
                             "*.pub.json (python -m protocol.release keygen)")
    paths = []
    for part in cfg.fleet.release_keys.split(","):
        p = broker_file(cfg, part.strip())
        if p is None:
            continue
        paths += sorted(p.glob("*.pub.json")) if p.is_dir() else [p]
    try:
        keys = pbr.load_keys(paths)
    except (OSError, ValueError) as exc:
        raise ReleaseRefused(f"[fleet] release_keys: {exc}") from None
    if not keys:
        raise ReleaseRefused(f"[fleet] release_keys: no key in {cfg.fleet.release_keys}")
    return keys


def store_release(cfg: Config, store: Store, data: bytes, by: str) -> pbr.Release:
    """Verify a .pbr with the trusted keys, as the device will, and keep it. The same release
    stored again is fine; another release under a seq already used is refused."""
    try:
        rel = pbr.parse(data)
        pbr.verify(rel, trusted_keys(cfg))
    except pbr.ReleaseError as exc:
        raise ReleaseRefused(f"release refused ({exc.reason}): {exc}") from None
    m = rel.manifest
    if not store.add_release(seq=rel.seq, fw=m["fw"], manifest=rel.manifest_bytes, signature=rel.sig,
                             bundle=rel.bundle, sha256=m["sha256"], by=by, at_ms=now_ms()):
        old = store.get_release(rel.seq)
        if old is None or old.manifest.encode() != rel.manifest_bytes:
            raise ReleaseRefused(f"release seq {rel.seq} is already stored with another manifest: "
                                 "a new release needs a new seq")
    return rel


def status(store: Store, cfg: Config, now: int | None = None) -> dict:
    """The fleet as the CLI, the API and the console show it: the current rollout with where
    its wave stands, and every device's version, slot, place in the rollout and last result."""
    now = now or now_ms()
    r = store.current_rollout()
    recs = store.firmware()
    rel = store.get_release(r.seq) if r else None
    in_wave: dict[str, rollout.Outcome] = {}
    out_r = None
    if r is not None:
        active = [d for d, rec in recs.items() if rec["status"] == "active"]
        for d in rollout.wave(active, r.seq, r.pct):
            o = rollout.outcome(recs[d] if recs[d]["known"] else None, r.seq, recs[d]["health"], now, rules(cfg))
            o.dev = d
            in_wave[d] = o
        t = rollout.tally(list(in_wave.values()))
        out_r = {"seq": r.seq, "fw": rel.fw if rel else None, "pct": r.pct, "state": r.state, "why": r.why,
                 "by": r.by, "started_ms": r.started_ms, "updated_ms": r.updated_ms, "wave": t.wave,
                 "devices": len(active), "counts": dict(sorted(t.by_state.items()))}
    devices = []
    for d, rec in recs.items():
        place = in_wave.get(d)
        devices.append({"dev": d, "fw": rec["fw"], "slot": rec["slot"], "seq": rec["seq"], "health": rec["health"],
                        "status": rec["status"], "rollout": place.state if place else None, "rollout_why": place.why if place else "",
                        "stage": rec["stage"], "last_op": rec["last_op"],
                        "last_ok": None if rec["last_ok"] is None else bool(rec["last_ok"]),
                        "last_err": rec["last_err"], "updated_ms": rec["updated_ms"]})
    return {"rollout": out_r, "devices": devices}


class Bucket:
    """A token bucket: `rate` per second, a burst of one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate, self.tokens, self.at = rate, rate, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def wait_s(self) -> float:
        return max(0.0, (1 - self.tokens) / self.rate)


class FleetLink(LeanLink):
    """The fleet's own broker connection: a persistent session subscribed to every device's
    results at QoS 1 (shared by the gateways of a group), commands out at QoS 1, chunks at QoS 0."""

    KIND = "fleet"
    CLEAN = False

    def __init__(self, *, topic: str, on_publish: Callable[[str, bytes, int], None], **kw) -> None:
        super().__init__(**kw)
        self.topic = topic
        self.on_publish = on_publish  # (topic, payload, packet id to PUBACK or 0)
        self._pid = 0

    def _opening(self) -> bytes:
        return subscribe_packet(self.topic, qos=1)

    def _control(self, head: int, body: bytes) -> None:
        super()._control(head, body)
        if head >> 4 == SUBACK and suback_refused(body):
            raise ProtocolError(f"broker refused the subscription to {self.topic}")

    def _packets(self, sock: socket.socket, packets: list[tuple[int, bytes]]) -> None:
        for head, body in packets:
            if head >> 4 != PUBLISH:
                self._control(head, body)
                continue
            topic, payload, _retain, qos, pid = publish_parts(head, body)
            self.on_publish(topic, payload, pid if qos else 0)

    def puback(self, pid: int) -> None:
        sock = self._sock
        if sock is not None and pid:
            try:
                self._send(sock, pubacks([pid]))
            except OSError:
                pass  # the session redelivers it after the reconnect

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        sock = self._sock
        if sock is None or not self.connected.is_set():
            return False
        with self._send_lock:
            self._pid = self._pid % 65535 + 1
            try:
                sock.sendall(publish_packet(topic.encode(), payload, self._pid, qos))
            except OSError as exc:
                log.warning("fleet connection: %s", exc)
                return False
            self._last_sent = time.monotonic()
        return True


@dataclass
class _Get:
    dev: str
    rel: int
    off: int


class FleetWorker:
    def __init__(self, cfg: Config, store: Store, registry: Callable[[str], Device | None]) -> None:
        self.cfg, self.store, self.registry = cfg, store, registry
        self.root = cfg.topic_root
        self.rules = rules(cfg)
        self.inbox: queue.Queue[tuple[str, bytes, int]] = queue.Queue(QUEUE_MAX)
        self.link = FleetLink(topic=wire.shared_result_filter(cfg.mqtt.group, self.root),
                              on_publish=lambda t, p, pid: self.inbox.put((t, p, pid)),
                              host=cfg.mqtt.host, port=cfg.mqtt.port, client_id=f"{cfg.mqtt.client_id}-fleet",
                              username=cfg.mqtt.username, password=cfg.mqtt.password, keepalive=15, name="fleet")
        self._bundles: dict[int, bytes] = {}
        self._per_device: dict[str, Bucket] = {}
        self._total = Bucket(cfg.fleet.chunk_rate_total)
        self._waiting: deque[_Get] = deque()
        self._waiting_max = cfg.fleet.chunk_rate_total * 5
        self._stop = threading.Event()
        self._rollout_due = 0.0
        self._logged: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name="fleet", daemon=True)
        self.on_change: Callable[[], None] = lambda: None  # the console's live views

    # --- the interface -------------------------------------------------------------
    def start(self) -> None:
        self.link.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.link.stop()

    def send(self, dev: str, op: str, args: dict, by: str) -> int:
        """Send a command now (the API's way); its number. CommandError when it cannot go."""
        check_command(op, args)
        device = self.registry(dev)
        if device is None:
            raise CommandError(f"no device {dev}")
        if not self.link.connected.is_set():
            raise CommandError("the gateway's fleet connection is down; nothing was sent")
        topic, payload, n = new_command(self.store, device, op, args, by, self.root)
        if not self.link.publish(topic, payload, qos=1):
            raise CommandError(f"command {n} logged but not sent: the fleet connection went down")
        return n

    # --- the worker thread -------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            timeout = TICK_S
            if self._waiting:
                timeout = min(timeout, self._total.wait_s())
            try:
                topic, payload, pid = self.inbox.get(timeout=timeout)
            except queue.Empty:
                pass
            else:
                try:
                    self._message(topic, payload)
                except Exception:
                    log.exception("fleet message on %s not handled", topic[:120])
                self.link.puback(pid)
            self._serve_waiting()
            if time.monotonic() >= self._rollout_due:
                self._rollout_due = time.monotonic() + TICK_S
                try:
                    self.step()
                except Exception:
                    log.exception("rollout step failed")

    def _message(self, topic: str, payload: bytes) -> None:
        dev = topic_device(topic, wire.RESULT, self.root)
        device = self.registry(dev) if dev else None
        if dev is None or device is None:
            _rejected["unknown_device"].inc()
            return
        why, d = wire.parse_result(payload, device.secret, dev)
        if d is None:
            _rejected[why or "format"].inc()
            # The reason only, at most once a minute per device: a forger's bytes and its flood
            # stay out of the log; the counter has every one.
            last = self._logged.get(dev, 0.0)
            if time.monotonic() - last >= 60:
                self._logged[dev] = time.monotonic()
                log.warning("result from %s refused: %s%s", dev, why,
                            " (not signed with the device's secret)" if why == "mac" else "")
            return
        if d["op"] == "get":
            self._get(_Get(dev, d["rel"], d["off"]))
            return
        _results[d["op"]].inc()
        if not self.store.record_result(dev, d, now_ms()):
            log.warning("result %s of %s for a command not in the log", d["n"], dev)
        if d["op"] == "ota":
            self._rollout_due = 0.0  # a stage moved: look at the rollout now
            if d.get("stage") == "trial" and d.get("ok"):
                self._keep(device, d["rel"])
        self.on_change()

    def _keep(self, device: Device, seq: int) -> None:
        """A button runs release `seq` on trial and said so over its new firmware: a signed
        `keep` back proves the whole chain (broker, login, this gateway's copy of its secret),
        so it keeps the release."""
        try:
            topic, payload, _n = new_command(self.store, device, "keep", {"rel": seq}, "fleet", self.root)
        except CommandError as exc:
            log.warning("keep for %s not sent: %s", device.id, exc)
            return
        self.link.publish(topic, payload, qos=1)

    # --- chunks --------------------------------------------------------------------
    def _bundle(self, seq: int) -> bytes | None:
        if seq not in self._bundles:
            data = self.store.release_bundle(seq)
            if data is None:
                return None
            self._bundles = {seq: data}  # one release at a time is rolled out: keep the one asked for
        return self._bundles[seq]

    def _get(self, g: _Get) -> None:
        bucket = self._per_device.get(g.dev)
        if bucket is None:
            bucket = self._per_device[g.dev] = Bucket(self.cfg.fleet.chunk_rate)
        if not bucket.take():
            _chunks["device"].inc()  # the device asks again after ota_chunk_ms
            return
        if self._total.take() and not self._waiting:
            self._chunk(g)
        elif len(self._waiting) < self._waiting_max:
            self._waiting.append(g)
        else:
            _chunks["total"].inc()

    def _serve_waiting(self) -> None:
        while self._waiting and self._total.take():
            self._chunk(self._waiting.popleft())

    def _chunk(self, g: _Get) -> None:
        data = self._bundle(g.rel)
        if data is None:
            _rejected["unknown_release"].inc()
            return
        if g.off >= len(data):
            _rejected["offset"].inc()
            return
        if self.link.publish(wire.ota_topic(g.dev, self.root), wire.chunk(g.rel, g.off, data[g.off:g.off + wire.CHUNK_MAX]),
                             qos=0):
            _chunks["sent"].inc()

    # --- the rollout -----------------------------------------------------------------
    def step(self) -> None:
        """Look at the current rollout once: halt it, finish it, or send its release to the
        next devices of its wave (at most `parallel` downloading at once)."""
        r = self.store.current_rollout()
        if r is None or r.state != "active":
            return
        now = now_ms()
        recs = self.store.firmware()
        active = [d for d, rec in recs.items() if rec["status"] == "active"]
        wave = rollout.wave(active, r.seq, r.pct)
        outcomes = [rollout.outcome(recs[d] if recs[d]["known"] else None, r.seq, recs[d]["health"], now, self.rules)
                    for d in wave]
        for d, o in zip(wave, outcomes, strict=True):
            o.dev = d
        t = rollout.tally(outcomes)
        why = rollout.halt_reason(t, self.rules)
        if why is not None:
            if self.store.set_rollout_state(r.seq, "halted", why, at_ms=now):
                metrics.fleet_halts.inc()
                log.error("rollout of release %s halted: %s", r.seq, why)
                self.on_change()
            return
        if rollout.finished(t, r.pct):
            if self.store.set_rollout_state(r.seq, "done", f"{t.by_state.get('ok', 0)} devices run it", at_ms=now):
                log.info("rollout of release %s done", r.seq)
                self.on_change()
            return
        budget = self.rules.parallel - t.by_state.get("sent", 0)
        if budget <= 0 or not self.link.connected.is_set():
            return
        args: dict | None = None
        for d, o in zip(wave, outcomes, strict=True):
            if budget <= 0:
                break
            rec = recs[d] if recs[d]["known"] else None
            if not rollout.may_send(o, rec, recs[d]["health"], True, now, self.rules):
                continue
            device = self.registry(d)
            if device is None or not self.store.claim_ota(d, r.seq, rec["updated_ms"] if rec else None, now):
                continue  # another gateway took it in the meantime
            args = args or ota_args(self.store, r.seq)
            topic, payload, n = new_command(self.store, device, "ota", args, f"rollout:{r.by}", self.root)
            if self.link.publish(topic, payload, qos=1):
                log.info("release %s sent to %s (command %s)", r.seq, d, n)
            budget -= 1
