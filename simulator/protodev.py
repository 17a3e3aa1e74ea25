"""The light mode for city-scale runs: a button as a Python *protocol device*, many per
process. It is not the firmware. It speaks the identical wire protocol v1 (MQTT 3.1.1,
clean_session=false, client id = username = device id, QoS 1, HMAC-SHA256 signed alerts
keeping their id across retransmissions until a signed ack, retained status with an
offline will) and the same stdin command / JSON event contract as the firmware's sim
board, so the simulator drives both alike. The button gesture and NMEA parsing are the
firmware's own modules (firmware/gesture.py, firmware/gps.py, loaded by mpcompat), and
every body, signature and ack check comes from `protocol`.

Why: one firmware process (the MicroPython VM inside the PyPI package's CPython launcher)
costs about 6 MiB of PSS, so 4,278 of them do not fit a 24 GB laptop next to everything
else; a protocol device costs tens of kB. All of them share one thread and one selector
(paho's external-loop API), so thousands of idle buttons cost almost no CPU.
"""
from __future__ import annotations

import json
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

import protocol

from .mpcompat import firmware_module, ticks_ms

FW = "proto-1.0.0"
gesture = firmware_module("gesture")
alerts = firmware_module("alerts")
monotonic = firmware_module("monotonic")
gps = firmware_module("gps")


def _ms() -> int:
    return time.time_ns() // 1_000_000


class Hub:
    """One thread that runs every protocol device's MQTT client and timers."""

    _instance: Hub | None = None
    _lock = threading.Lock()

    @classmethod
    def get(cls) -> Hub:
        with cls._lock:
            if cls._instance is None or not cls._instance.thread.is_alive():
                cls._instance = Hub()
            return cls._instance

    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, None)
        self.jobs: queue.Queue[Callable[[], None]] = queue.Queue()
        self.devices: set[ProtocolDevice] = set()
        self.thread = threading.Thread(target=self._loop, name="protodev-hub", daemon=True)
        self.thread.start()

    def call(self, fn: Callable[[], None]) -> None:
        """Run fn on the hub thread: paho clients are only ever touched there."""
        self.jobs.put(fn)
        try:
            self.wake_w.send(b"x")
        except OSError:
            pass

    # selector bookkeeping, called by paho's socket callbacks on the hub thread
    def watch(self, sock, client, write: bool) -> None:
        mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if write else 0)
        try:
            self.sel.modify(sock, mask, client)
        except (KeyError, ValueError):
            self.sel.register(sock, mask, client)

    def forget(self, sock) -> None:
        try:
            self.sel.unregister(sock)
        except (KeyError, ValueError):
            pass

    def _loop(self) -> None:
        last_misc = 0.0
        while True:
            for key, mask in self.sel.select(timeout=0.05):
                if key.data is None:
                    try:
                        self.wake_r.recv(4096)
                    except OSError:
                        pass
                    continue
                client = key.data
                if mask & selectors.EVENT_READ:
                    client.loop_read()
                if mask & selectors.EVENT_WRITE:
                    client.loop_write()
            while True:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    break
                try:
                    job()
                except Exception:
                    pass
            now = time.monotonic()
            for d in list(self.devices):
                d._tick(now)
            if now - last_misc >= 1.0:
                last_misc = now
                for d in list(self.devices):
                    if d.client is not None and d.client.socket() is not None:
                        d.client.loop_misc()


class ProtocolDevice:
    """Same surface as FirmwareDevice (start/send/stop/power_cut, on_event) for Run."""

    proc = None   # no process of its own: it lives in the hub

    def __init__(self, flash_dir: Path, config: dict,
                 on_event: Callable[[ProtocolDevice, dict], None] | None = None) -> None:
        self.flash = Path(flash_dir)
        self.flash.mkdir(parents=True, exist_ok=True)
        (self.flash / "config.json").write_text(json.dumps(config))
        self.cfg = dict(protocol.DEVICE_DEFAULTS, **config)
        self.dev = config["dev"]
        self.on_event = on_event
        self.hub = Hub.get()
        self.client: mqtt.Client | None = None
        self.running = False
        self.up = False
        self.wifi = True
        self.batt = 100
        self.gps = gps.GPS((self.cfg.get("gps") or {}).get("fix_timeout_s", 30))
        self.gest = gesture.Gesture(self.cfg["trigger"], self.cfg["long_press_ms"], self.cfg["triple_window_ms"],
                                    self.cfg["cancel_hold_ms"], self.cfg["cancel_confirm_ms"])
        # The firmware's cancel rules: only a delivered alert, within its window, armed then confirmed.
        self.al = alerts.Alerts(self.cfg["cancel_window_s"] * 1000, self.cfg["fail_ms"])
        # Gesture and alert rules run on the firmware's 64-bit ms clock, extended from the
        # 30-bit ticks the edges are stamped with (they are wrong across a wrap otherwise).
        self.clk = monotonic.Mono()
        self.outbox: dict[str, dict] = {}
        self.reconnect_at: float | None = None
        self.backoff = self.cfg["reconnect_min_ms"] / 1000
        self.t_hb = 0.0

    # --- the stdin-like contract -------------------------------------------------------
    def start(self, wait_ready: float = 0) -> ProtocolDevice:
        self.hub.call(self._boot)
        return self

    def send(self, command: str) -> float:
        t = time.perf_counter()
        # Stamped now, as an IRQ stamps an edge: the hub thread may run it later when busy.
        at = ticks_ms()
        self.hub.call(lambda: self._command(command.strip(), at))
        return t

    def stop(self, timeout: float = 5.0) -> None:
        done = threading.Event()

        def halt():
            self._halt(clean=True)
            done.set()
        self.hub.call(halt)
        done.wait(timeout)

    def power_cut(self) -> None:
        done = threading.Event()

        def cut():
            self._halt(clean=False)
            done.set()
        self.hub.call(cut)
        done.wait(5)

    # --- hub thread ----------------------------------------------------------------------
    def _emit(self, ev: str, **kw) -> None:
        kw["ev"] = ev
        kw["host_ms"] = _ms()
        kw["host_t"] = time.perf_counter()
        if self.on_event:
            self.on_event(self, kw)

    def _boot(self) -> None:
        bootf = self.flash / "boot.json"
        boot = json.loads(bootf.read_text())["boot"] + 1 if bootf.exists() else 1
        bootf.write_text(json.dumps({"boot": boot}))
        self.boot, self.seq = boot, 0
        obf = self.flash / "outbox.json"
        self.outbox = json.loads(obf.read_text()) if obf.exists() else {}
        now = time.monotonic()
        for r in self.outbox.values():
            r["_n"], r["_due"] = 0, now
        self.running = True
        self.hub.devices.add(self)
        self._emit("boot", dev=self.dev, boot=boot, fw=FW, outbox=len(self.outbox))
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.dev, clean_session=False,
                        protocol=mqtt.MQTTv311)
        c.username_pw_set(self.cfg["mqtt_user"], self.cfg["mqtt_password"])
        root = self.cfg["topic_root"]
        self.t_alert = protocol.alert_topic(self.dev, root)
        self.t_ack = protocol.ack_topic(self.dev, root)
        self.t_status = protocol.status_topic(self.dev, root)
        c.will_set(self.t_status, protocol.will_body(self.dev), qos=1, retain=True)
        c.on_socket_open = self._socket_open
        c.on_socket_close = lambda cl, u, s: self.hub.forget(s)
        c.on_socket_register_write = lambda cl, u, s: self.hub.watch(s, cl, True)
        c.on_socket_unregister_write = lambda cl, u, s: self.hub.watch(s, cl, False)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self.client = c
        self._emit("ready")
        self.reconnect_at = time.monotonic()

    def _socket_open(self, client: mqtt.Client, userdata: object, sock) -> None:
        # paho leaves Nagle on: without TCP_NODELAY every ack would wait ~40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.hub.watch(sock, client, False)

    def _halt(self, clean: bool) -> None:
        self.running = False
        self.hub.devices.discard(self)
        c = self.client
        self.client = None
        if c is not None:
            if clean and self.up:
                c.disconnect()
                c.loop_write()
            sock = c.socket()
            if sock is not None:
                self.hub.forget(sock)
                sock.close()
        self.up = False

    def _connect(self) -> None:
        br = self.cfg["brokers"][0]
        if self.client is None:
            return
        try:
            self.client.connect(br["host"], br["port"], self.cfg["keepalive_s"])
            self.reconnect_at = None
        except OSError as exc:
            self._emit("log", msg=f"connect: {exc}")
            self._backoff()

    def _backoff(self) -> None:
        import random
        self.reconnect_at = time.monotonic() + self.backoff * random.uniform(0.5, 1.0)
        self.backoff = min(self.backoff * 2, self.cfg["reconnect_max_ms"] / 1000)

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            self._emit("log", msg=f"connack {reason}")
            return
        self.up = True
        self.backoff = self.cfg["reconnect_min_ms"] / 1000
        br = self.cfg["brokers"][0]
        self._emit("link", state="up", broker=f"{br['host']}:{br['port']}")
        client.subscribe(self.t_ack, qos=1)
        now = time.monotonic()
        for r in self.outbox.values():
            r["_due"] = now
        self._status()

    def _on_subscribe(self, client, userdata, mid, reasons, properties) -> None:
        # Acks published before the broker has the subscription would find none (a first
        # session): tests wait for this before forging acks.
        self._emit("subscribed", ok=not any(r.is_failure for r in reasons))

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        was = self.up
        self.up = False
        if was:
            br = self.cfg["brokers"][0]
            self._emit("link", state="down", broker=f"{br['host']}:{br['port']}", reason=str(reason))
        if self.running and client is self.client:
            self._backoff()

    def _status(self) -> None:
        self.t_hb = time.monotonic()
        body = protocol.status_body(dev=self.dev, state="online", fw=FW, boot=self.boot, up=0, batt=self.batt,
                                    rssi=-60 if self.wifi else None, outbox=len(self.outbox))
        if self.client is not None:
            self.client.publish(self.t_status, body, qos=1, retain=True)

    def _save(self) -> None:
        data = {k: {f: v for f, v in r.items() if not f.startswith("_")} for k, r in self.outbox.items()}
        tmp = self.flash / "outbox.json.tmp"
        tmp.write_text(json.dumps(data))
        tmp.replace(self.flash / "outbox.json")

    def _trigger(self, kind: str) -> None:
        self.seq += 1
        lat, lon, acc, src = self.cfg["lat6"], self.cfg["lon6"], self.cfg["acc"], "fixed"
        fix = self.gps.fix()
        if fix:
            lat, lon, acc = fix
            src = "gps"
        rec = {"id": protocol.alert_id(self.dev, self.boot, self.seq), "boot": self.boot, "seq": self.seq, "kind": kind,
               "t": _ms(), "lat6": lat, "lon6": lon, "acc": acc, "src": src}
        if kind == "cancel":
            rec["ref"] = self.al.active
        else:
            # A press during an active alert is a new alert: the cancel rules follow the newest.
            self.al.raised(rec["id"], self.clk.ms())
        self.gest.set_cancellable(False)
        self.outbox[rec["id"]] = rec
        self._save()     # in "flash" before it goes on the air, as the firmware does
        rec["_n"], rec["_due"] = 0, time.monotonic()
        if self.up:
            self._send(rec)
        elif self.wifi and self.reconnect_at is not None:
            self.reconnect_at = time.monotonic()

    def _send(self, rec: dict) -> None:
        if self.client is None:
            return
        age = max(0, _ms() - rec["t"])
        body = protocol.alert_body(dev=self.dev, boot=rec["boot"], seq=rec["seq"], kind=rec["kind"], t=rec["t"],
                                   age=age, lat6=rec["lat6"], lon6=rec["lon6"], acc=rec["acc"], src=rec["src"],
                                   batt=self.batt, rssi=-60 if self.wifi else None, ref=rec.get("ref"))
        self.client.publish(self.t_alert, protocol.sign(body, self.cfg["secret"]), qos=1)
        rec["_n"] += 1
        rec["_due"] = time.monotonic() + min(self.cfg["retry_ms"] * 2 ** (rec["_n"] - 1),
                                             self.cfg["retry_max_ms"]) / 1000
        self._emit("alert", id=rec["id"], kind=rec["kind"], **{"try": rec["_n"], "pub_ms": age})

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic != self.t_ack:
            self._emit("log", msg=f"unexpected topic {msg.topic}")
            return
        why, d = protocol.parse_ack(msg.payload, self.cfg["secret"])
        if d is None:
            self._emit("bad_ack", reason=why)
            return
        aid, stage = d["id"], d["stage"]
        self._emit("ack", id=aid, stage=stage, inc=d.get("inc"))
        rec = self.outbox.pop(aid, None)
        if rec is not None:
            self._save()
        self.al.ack(rec, aid, stage)
        self.gest.set_cancellable(self.al.cancellable(self.clk.ms(), list(self.outbox.values())))

    def _tick(self, now: float) -> None:
        if not self.running or self.client is None:
            return
        if self.wifi and not self.up and self.reconnect_at is not None and now >= self.reconnect_at:
            self._connect()
        if self.up:
            for r in list(self.outbox.values()):
                if now >= r["_due"]:
                    self._send(r)
            if now - self.t_hb >= self.cfg["heartbeat_s"]:
                self._status()
        if self.al.expired(self.clk.ms()):
            self.gest.set_cancellable(False)  # the cancel window closes, acked or not
        self._gesture(self.gest.tick(self.clk.ms()))

    def _gesture(self, ev: str | None) -> None:
        if ev == gesture.TRIGGER:
            self._trigger("panic")
        elif ev == gesture.CANCEL:
            self._cancel()

    def _cancel(self) -> None:
        """Withdraw the active alert only if the police have it (the firmware's rule)."""
        if self.al.cancellable(self.clk.ms(), list(self.outbox.values())):
            self._trigger("cancel")
        else:
            self._emit("log", msg="cancel refused: no delivered alert to cancel")

    def _command(self, s: str, at: int) -> None:
        if not self.running and s != "quit":
            return
        cmd, _, arg = s.partition(" ")
        if cmd == "trigger":
            self._trigger(arg or "panic")
        elif cmd == "cancel":
            self._cancel()
        elif cmd in ("down", "up"):
            self._gesture(self.gest.edge(cmd == "down", self.clk.at(at)))
        elif cmd == "wifi":
            self.wifi = arg != "off"
            sock = self.client.socket() if self.client is not None else None
            if not self.wifi and isinstance(sock, socket.socket):
                # The radio drops: no DISCONNECT, the broker finds out by keepalive.
                sock.shutdown(socket.SHUT_RDWR)
            elif self.wifi and not self.up:
                self.reconnect_at = time.monotonic()
        elif cmd == "battery":
            self.batt = max(0, min(100, int(arg)))
        elif cmd == "gps":
            if not self.gps.feed(arg):
                self._emit("log", msg="gps sentence ignored (bad checksum/format or no fix)")
        elif cmd == "quit":
            self._halt(clean=True)

