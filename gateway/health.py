"""Device health: online/offline (birth and will), sleeping, silent, low battery, backlog.

Every device publishes a retained status at connect and every heartbeat; the broker
publishes its will (`offline`) when the link dies. The monitor keeps each device's
health in the store, marks a device silent when 2.5 heartbeats pass without a status,
and turns every change into a device event: queued to the `ops` sink (MQTT
`<root>/ops/health/<dev>`) and to webhooks that ask for `health`, and listed in the API.

Status messages are not signed (the ACL lets only the device write its status topic),
so they are parsed as strictly as alerts but can only ever change health, never an
incident.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from . import metrics
from .config import Config
from .domain.health import CELL_REGS, LINK_ERRORS, RESET_CAUSES
from .ids import valid_device_id
from .models import Device
from .store import Store
from .store.health import DeviceHealth, HealthChange
from .timeutil import now_ms
from .validate import parse_body

log = logging.getLogger("panic.health")

STATES = ("online", "offline", "sleeping")
MAX_STATUS = 1024
# Statuses the worker records in one store transaction: one commit for a heartbeat burst, and
# short enough that alert ingest never waits long for the store's lock behind it.
BATCH_MAX = 64
BATCH_WAIT_S = 0.05
# A fix time further than this from the gateway clock is not believed: the point takes the arrival time.
TRACK_CLOCK_SLACK_MS = 10 * 60 * 1000
# field: (lo, hi); all optional, all integers except fw
_INTS = {"boot": (0, 2**53), "up": (0, 2**53), "batt": (0, 100), "rssi": (-200, 0),
         "outbox": (0, 100_000), "hb": (1, 86_400), "reconnects": (0, 2**53)}


class StatusError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def parse_status(topic: str, payload: bytes, root: str) -> tuple[str, dict]:
    """Return (device id, status fields) or raise StatusError with a reason."""
    if len(payload) > MAX_STATUS:
        raise StatusError("size", f"{len(payload)} bytes")
    prefix = root + "/"
    dev = topic[len(prefix):-len("/status")] if topic.startswith(prefix) and topic.endswith("/status") else ""
    if not valid_device_id(dev):
        raise StatusError("topic", topic[:120])
    if not payload:
        raise StatusError("empty", "retained status cleared")
    try:
        body = parse_body(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise StatusError("json", str(exc)[:200]) from None
    if body.get("dev") != dev:
        raise StatusError("dev_mismatch", f"body dev {str(body.get('dev'))[:70]!r}")
    if body.get("v") != 1 or body.get("state") not in STATES:
        raise StatusError("schema", "v must be 1 and state one of " + ", ".join(STATES))
    out: dict = {"state": body["state"]}
    for key, (lo, hi) in _INTS.items():
        value = body.get(key)
        if value is None:
            continue
        if type(value) is not int or not lo <= value <= hi:
            raise StatusError("schema", f"{key} must be an integer in [{lo}, {hi}]")
        out[key] = value
    fw = body.get("fw")
    if fw is not None:
        if not isinstance(fw, str) or len(fw) > 32:
            raise StatusError("schema", "fw must be a string of at most 32 characters")
        out["fw"] = fw
    reset = body.get("reset")
    if reset is not None:
        if reset not in RESET_CAUSES:
            raise StatusError("schema", "reset must be one of " + ", ".join(RESET_CAUSES))
        out["reset"] = reset
    if "link_err" in body:
        link_err = body["link_err"]
        if link_err is not None and link_err not in LINK_ERRORS:
            raise StatusError("schema", "link_err must be null or one of " + ", ".join(LINK_ERRORS))
        out["link_err"] = link_err
    if body.get("cell") is not None:
        out["cell"] = _cell(body["cell"])
    if body.get("pos") is not None:
        out["pos"] = _pos(body["pos"])
    return dev, out


def _pos(pos: Any) -> dict:
    """The optional `pos` object a GPS button sends while its incident is open: {"lat6", "lon6",
    "acc", "t": unix ms of the fix, or null when the button's clock is not set}."""
    if not isinstance(pos, dict) or set(pos) - {"lat6", "lon6", "acc", "t"}:
        raise StatusError("schema", "pos must be an object of lat6, lon6, acc and t")
    for key, lo, hi in (("lat6", -90_000_000, 90_000_000), ("lon6", -180_000_000, 180_000_000),
                        ("acc", 0, 1_000_000)):
        if type(pos.get(key)) is not int or not lo <= pos[key] <= hi:
            raise StatusError("schema", f"pos.{key} must be an integer in [{lo}, {hi}]")
    t = pos.get("t")
    if t is not None and (type(t) is not int or not 0 <= t <= 2**53):
        raise StatusError("schema", "pos.t must be null or unix ms")
    return {"lat6": pos["lat6"], "lon6": pos["lon6"], "acc": pos["acc"], "t": t}


def _cell(cell: Any) -> dict:
    """The optional `cell` object: {"reg": one of CELL_REGS, "csq": 0..31 or 99, "test": unix
    seconds of the last supervised cellular test, or null}."""
    if not isinstance(cell, dict) or set(cell) - {"reg", "csq", "test"}:
        raise StatusError("schema", "cell must be an object of reg, csq and test")
    if cell.get("reg") not in CELL_REGS:
        raise StatusError("schema", "cell.reg must be one of " + ", ".join(CELL_REGS))
    csq = cell.get("csq")
    if type(csq) is not int or not (0 <= csq <= 31 or csq == 99):
        raise StatusError("schema", "cell.csq must be an integer in [0, 31] or 99")
    test = cell.get("test")
    if test is not None and (type(test) is not int or not 0 <= test <= 2**40):
        raise StatusError("schema", "cell.test must be null or unix seconds")
    return {"reg": cell["reg"], "csq": csq, "test": test}


class HealthMonitor:
    """Consumes status messages and sweeps for silent devices, in one worker thread."""

    def __init__(self, cfg: Config, store: Store, device: Callable[[str], Device | None],
                 done: Callable[[list], Any], on_event: Callable[[], None] = lambda: None) -> None:
        self.cfg = cfg
        self.store = store
        self.device = device
        self.done = done  # told of each batch of statuses once handled
        self.on_event = on_event  # wake the forwarders
        self.queue: queue.Queue[list | None] = queue.Queue()  # blocks of statuses
        self._rejected = metrics.Labelled(metrics.status_rejected)
        # Sweep often enough that "silent" shows within a fraction of a heartbeat.
        self.sweep_s = min(5.0, max(0.2, cfg.heartbeat_s * cfg.silent_factor / 5))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)

    def submit(self, msgs: list) -> None:
        self.queue.put(msgs)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.queue.put(None)
        self._thread.join(timeout=5)
        try:
            self.store.flush_heartbeats()
        except Exception:
            log.exception("held heartbeats not written at stop")

    def _run(self) -> None:
        next_sweep = 0.0
        while not self._stop.is_set():
            timeout = max(0.0, next_sweep - time.monotonic())
            try:
                block = self.queue.get(timeout=timeout)
            except queue.Empty:
                block = None
            if block:
                batch = list(block)
                # Let a batch gather, in one sleep: a get with a timeout wakes this thread for
                # every block that arrives, and at a steady trickle those wake-ups cost more
                # than recording the statuses (docs/benchmarks.md, figure 9).
                if len(batch) < BATCH_MAX - 1 and self.queue.empty():
                    self._stop.wait(BATCH_WAIT_S)
                while len(batch) < BATCH_MAX:
                    try:
                        nxt = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        break
                    batch += nxt
                try:
                    self.handle_batch([(m.topic, m.payload, bool(m.retain)) for m in batch], defer=True)
                except Exception:
                    metrics.store_errors.labels("health").inc()
                    log.exception("%d status(es) not recorded", len(batch))
                # A status is superseded by the next heartbeat: done even when not recorded.
                self.done(batch)
            if time.monotonic() >= next_sweep:
                try:
                    self.sweep()
                except Exception:
                    metrics.store_errors.labels("health").inc()
                    log.exception("health sweep failed")
                next_sweep = time.monotonic() + self.sweep_s

    def handle(self, topic: str, payload: bytes, retained: bool = False) -> HealthChange | None:
        return self.handle_batch([(topic, payload, retained)])[0]

    def handle_batch(self, msgs: list[tuple[str, bytes, bool]], *, defer: bool = False) -> list[HealthChange | None]:
        """Record several statuses (topic, payload, retained) in one store transaction, in
        their order; the health event of each (None: rejected or nothing changed). `defer`:
        heartbeats that change no health wait for the next sweep's write (store.record_statuses)."""
        parsed: list[tuple[int, str, dict, bool]] = []
        for i, (topic, payload, retained) in enumerate(msgs):
            try:
                dev, status = parse_status(topic, payload, self.cfg.topic_root)
            except StatusError as exc:
                self._rejected[exc.reason].inc()
                if exc.reason != "empty":
                    log.warning("status ignored: %s (%s) on %s", exc.reason, exc, topic[:120])
                continue
            if self.device(dev) is None:
                self._rejected["unknown_device"].inc()
                continue
            parsed.append((i, dev, status, retained))
        out: list[HealthChange | None] = [None] * len(msgs)
        if not parsed:
            return out
        now = now_ms()
        changes = self.store.record_statuses(
            [(dev, status, retained) for _, dev, status, retained in parsed], now,
            heartbeat_s=self.cfg.heartbeat_s, silent_factor=self.cfg.silent_factor,
            low_battery_pct=self.cfg.low_battery_pct, backlog_min=self.cfg.backlog_min, defer=defer)
        self._late()
        for (i, dev, status, retained), change in zip(parsed, changes, strict=True):
            pos = status.get("pos")
            # A retained status is the broker's copy of an old one: its point is already on the track.
            if pos is not None and not retained:
                at = pos["t"] if pos["t"] is not None and abs(pos["t"] - now) < TRACK_CLOCK_SLACK_MS else now
                self.store.add_track_point(dev, at_ms=at, lat6=pos["lat6"], lon6=pos["lon6"], acc=pos["acc"])
            if change:
                self._changed(change)
            out[i] = change
        return out

    def _late(self) -> None:
        for change in self.store.late_health_changes():
            self._changed(change)

    def sweep(self) -> list[HealthChange]:
        changes = self.store.sweep_silent(now_ms())  # writes the held heartbeats first
        self._late()
        for change in changes:
            self._changed(change)
        for health, n in self.store.health_counts().items():
            metrics.devices_by_health.labels(health).set(n)
        for s in self.store.forward_stats():
            metrics.forwards_backlog.labels(s.sink, "pending").set(s.pending)
            metrics.forwards_backlog.labels(s.sink, "dead").set(s.dead)
        return changes

    def _changed(self, change: HealthChange) -> None:
        metrics.device_events.labels("health", change.health).inc()
        flags = change.now.conditions()
        log.info("device %s health %s -> %s%s", change.dev, change.was, change.health,
                 f" ({', '.join(flags)})" if flags else "")
        self.on_event()


# A device registered after the health was read has no row yet: what the API and CLI show.
UNHEARD = {"health": "unknown"}


def health_json(h: DeviceHealth | None) -> dict:
    """A device's health as the API and the CLI show it."""
    return h._asdict() if h is not None else dict(UNHEARD)


def describe(h: DeviceHealth | None) -> str:
    """One line for the CLI: health and its flags."""
    if h is None:
        return UNHEARD["health"]
    flags = h.conditions()
    return h.health + (f" [{','.join(flags)}]" if flags else "")
