"""The fleet worker (gateway/fleet.py) in the real gateway against the project's mosquitto:
buttons are protocol devices written here (paho) that sign their results as the firmware
does (protocol/fleet.py): results recorded, a bad MAC refused and counted, chunks served
and rate-limited, the ACL, a rollout that completes and one halted by its canaries."""
from __future__ import annotations

import hashlib
import json
import socket
import statistics
import threading
import time

import pytest

import protocol
from gateway import config
from gateway.store import open_store
from protocol import fleet as wire
from tests.conftest import wait_until
from tests.devices import RawDevice
from tests.gateway.test_gateway_support import custom_stack

ROOT = "panic/v1"
BUNDLE = b"PBF1" + bytes(range(256)) * 20  # 5,124 bytes: six chunks, the last one short


def manifest(seq: int, bundle: bytes = BUNDLE) -> bytes:
    return json.dumps({"v": 1, "fw": f"1.{seq}.0", "seq": seq, "size": len(bundle),
                       "sha256": hashlib.sha256(bundle).hexdigest(), "key": "k1"}, separators=(",", ":")).encode()


class Button(RawDevice):
    """A button that answers commands as the firmware's command handler and OTA would:
    `mode` "keep" takes a release and keeps it, "rollback" rolls it back after its trial
    boot, "silent" never answers."""

    def __init__(self, creds: dict, port: int, mode: str = "keep") -> None:
        super().__init__(creds, port)
        self.mode = mode
        self.fw, self.slot = "1.2.0", "factory"
        self.commands: list[dict] = []
        self.trial: tuple[int, int] | None = None   # (ota command n, release) on trial
        self.chunks: dict[int, bytes] = {}
        self.want: tuple[int, int, dict] | None = None  # (rel, size, the ota command)
        self.client.on_message = self._on_message
        for leaf in ("cmd", "ota"):
            [code] = self.subscribe(f"{ROOT}/{self.dev}/{leaf}")
            assert not code.is_failure, f"the broker refused {self.dev} its own {leaf}"
        self.status()

    def status(self) -> None:
        self.publish(protocol.status_body(dev=self.dev, state="online", fw=self.fw, boot=1, up=5, batt=90, rssi=-60,
                                          outbox=0), topic=protocol.status_topic(self.dev))

    def result(self, n: int, op: str, ok: bool = True, err: str | None = None, secret: str | None = None,
               **extra) -> None:
        body = wire.result_body(dev=self.dev, n=n, op=op, ok=ok, err=err, fw=self.fw, slot=self.slot, **extra)
        self.client.publish(wire.result_topic(self.dev), protocol.sign(body, secret or self.secret), qos=1)

    def get(self, rel: int, off: int) -> None:
        body = wire.get_body(dev=self.dev, rel=rel, off=off)
        self.client.publish(wire.result_topic(self.dev), protocol.sign(body, self.secret), qos=1)

    def _on_message(self, client, userdata, m) -> None:
        leaf = m.topic.rsplit("/", 1)[1]
        if leaf == "ack":
            self.acks.put(bytes(m.payload))
        elif leaf == "cmd":
            why, cmd = wire.parse_command(bytes(m.payload), self.secret, self.dev)
            assert cmd is not None, why
            self.commands.append(cmd)
            if self.mode == "silent":
                return
            if cmd["op"] == "keep" and self.trial is not None:
                n, rel = self.trial
                self.trial = None
                self.result(n, "ota", stage="kept", rel=rel)
                self.result(cmd["n"], "keep")
                return
            if cmd["op"] != "ota":
                self.result(cmd["n"], cmd["op"])
                return
            mf = json.loads(cmd["args"]["m"])
            self.want = (mf["seq"], mf["size"], cmd)
            self.result(cmd["n"], "ota", stage="accepted", rel=mf["seq"])
            self.get(mf["seq"], 0)
        elif leaf == "ota":
            seq, off, data = wire.parse_chunk(bytes(m.payload))
            self.chunks[off] = data
            if self.want is None or self.want[0] != seq:
                return
            rel, size, cmd = self.want
            got = sum(len(c) for c in self.chunks.values())
            if got < size:
                self.get(rel, got)
                return
            bundle = b"".join(self.chunks[o] for o in sorted(self.chunks))
            mf = json.loads(cmd["args"]["m"])
            assert hashlib.sha256(bundle).hexdigest() == mf["sha256"]
            self.want = None
            self.result(cmd["n"], "ota", stage="downloaded", rel=rel)
            old = self.fw
            self.fw, self.slot = mf["fw"], "a"
            self.result(cmd["n"], "ota", stage="trial", rel=rel)
            if self.mode == "keep":
                self.trial = (cmd["n"], rel)      # kept on the gateway's signed keep
            else:
                self.fw, self.slot = old, "factory"
                self.result(cmd["n"], "ota", ok=False, err="crash", stage="rolled_back", rel=rel)


@pytest.fixture
def stack(tmp_path):
    s = custom_stack(tmp_path / "state", start=False)
    s.set_config("fleet", chunk_rate=50, chunk_rate_total=400)
    s.start_broker()
    s.start_gateway()
    yield s
    s.down()


@pytest.fixture
def store(stack):
    st = open_store(config.load(stack.config))
    yield st
    st.close()


def buttons(stack, n: int, mode: str = "keep", prefix: str = "klj-kauman-rw05-rt") -> list[Button]:
    out = []
    for i in range(n):
        creds = stack.add_device(f"{prefix}{i:02d}", -7982600, 112627000, kelurahan="Kauman")
        out.append(Button(creds, stack.broker_port, mode))
    return out


def online(store, fleet: list[Button]) -> None:
    """Every button heard from (the gateway's registry cache learns a new device within 2 s:
    a status before that is not taken, so each says it again until it is)."""
    def heard() -> bool:
        recs = store.firmware()
        late = [b for b in fleet if recs[b.dev]["health"] != "online"]
        for b in late:
            b.status()
        return not late
    wait_until(heard, 15, interval=0.5, what="every button online")


def counter(stack, name: str, **labels) -> float:
    key = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    return stack.metrics().get(key, 0.0)


def test_a_device_reads_only_its_own_cmd_and_ota_and_writes_only_its_own_result(stack, store):
    victim, thief = buttons(stack, 2, mode="silent")
    try:
        for topic in (f"{ROOT}/{victim.dev}/cmd", f"{ROOT}/{victim.dev}/ota", f"{ROOT}/+/cmd", f"{ROOT}/+/result",
                      f"$share/gateways/{ROOT}/+/result"):
            [code] = thief.subscribe(topic)
            assert code.is_failure, f"the broker granted {topic} to a device"
        n = store.add_command(victim.dev, "locate", {}, by="test", at_ms=1)
        # The thief signs a result for the victim with its own secret and the victim's with
        # a guessed one: the broker drops the first (not its topic), the gateway the second.
        body = wire.result_body(dev=victim.dev, n=n, op="locate", ok=True, fw="x", slot="a")
        thief.client.publish(wire.result_topic(victim.dev), protocol.sign(body, thief.secret), qos=1).wait_for_publish(5)
        victim.result(n, "locate", ok=False, err="forged", secret="0" * 64)
        wait_until(lambda: counter(stack, "panic_fleet_rejected_total", reason="mac") >= 1, 10, what="bad MAC counted")
        assert store.command(victim.dev, n)["result"] is None
        victim.result(n, "locate")
        wait_until(lambda: store.command(victim.dev, n)["ok"] is True, 10, what="the victim's own result")
        assert counter(stack, "panic_fleet_results_total", op="locate") == 1  # the thief's never arrived
    finally:
        victim.close()
        thief.close()


def test_chunks_are_served_and_limited_per_device(stack, store):
    [b] = buttons(stack, 1, mode="silent")
    try:
        assert store.add_release(seq=13, fw="1.3.0", manifest=manifest(13), signature=b"s", bundle=BUNDLE,
                                 sha256=hashlib.sha256(BUNDLE).hexdigest(), by="t", at_ms=1)
        for off in range(0, len(BUNDLE), 1024):
            b.get(13, off)
        wait_until(lambda: len(b.chunks) == 6, 10, what="six chunks")
        assert b"".join(b.chunks[o] for o in sorted(b.chunks)) == BUNDLE and len(b.chunks[5120]) == 4
        b.get(99, 0)  # a release the gateway does not have
        b.get(13, len(BUNDLE))
        wait_until(lambda: counter(stack, "panic_fleet_rejected_total", reason="offset") == 1, 10, what="offset")
        assert counter(stack, "panic_fleet_rejected_total", reason="unknown_release") == 1
        # A device asking far faster than chunk_rate (50/s) gets a second's worth at once and
        # 50 a second after that, however slowly this machine hands the worker its requests.
        b.chunks.clear()
        sent0 = counter(stack, "panic_fleet_chunks_total", result="sent")
        t0 = time.monotonic()
        for _ in range(1000):
            b.get(13, 0)

        def outcome() -> tuple[int, int]:
            return (counter(stack, "panic_fleet_chunks_total", result="sent") - sent0,
                    counter(stack, "panic_fleet_chunks_total", result="device"))
        wait_until(lambda: sum(outcome()) >= 1000, 30, what="every request served or dropped")
        elapsed = time.monotonic() - t0
        sent, dropped = outcome()
        assert dropped == 1000 - sent and sent <= 50 * (1 + elapsed) + 2, (sent, dropped, elapsed)
    finally:
        b.close()


def test_alerts_are_not_delayed_by_downloads_at_full_rate(stack, store):
    """Measured: press-to-ack latency of a button's alerts while 8 others pull chunks as fast
    as the limits allow (50/s each, 400/s in all here), beside the same without downloads."""
    *loaders, presser = buttons(stack, 9, mode="silent")
    # As a button's own client does (firmware/mqtt.py): without it Nagle's ~40 ms hides the rest.
    presser.client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    big = BUNDLE * 40  # 200 KB
    assert store.add_release(seq=14, fw="1.4.0", manifest=manifest(14, big), signature=b"s", bundle=big, sha256="x",
                             by="t", at_ms=1)

    def latencies(seq0: int) -> list[float]:
        out = []
        for i in range(40):
            t0 = time.perf_counter()
            presser.send(seq=seq0 + i)
            presser.ack(timeout=10)
            out.append((time.perf_counter() - t0) * 1000)
        return out

    try:
        quiet = latencies(1)
        stop = threading.Event()

        def pull(b: Button) -> None:
            off = 0
            while not stop.is_set():
                b.get(14, off)
                off = (off + 1024) % len(big)
                time.sleep(0.01)  # ~100 asks a second: twice what one device is answered

        threads = [threading.Thread(target=pull, args=(b,), daemon=True) for b in loaders]
        for t in threads:
            t.start()
        time.sleep(1.0)
        before, t0 = counter(stack, "panic_fleet_chunks_total", result="sent"), time.monotonic()
        busy = latencies(100)
        rate = (counter(stack, "panic_fleet_chunks_total", result="sent") - before) / (time.monotonic() - t0)
        stop.set()
        for t in threads:
            t.join()
        received = sum(len(b.chunks) for b in loaders)
        print(f"\nalert press-to-ack ms: quiet p50 {statistics.median(quiet):.1f} max {max(quiet):.1f}; "
              f"during 8 downloads p50 {statistics.median(busy):.1f} max {max(busy):.1f}; "
              f"chunks served {rate:.0f}/s (1 KB each); distinct chunks received {received}")
        assert rate > 100
        assert statistics.median(busy) < statistics.median(quiet) * 2 + 20
    finally:
        for b in (*loaders, presser):
            b.close()


def test_a_rollout_completes(stack, store):
    fleet = buttons(stack, 4)
    try:
        assert store.add_release(seq=13, fw="1.13.0", manifest=manifest(13), signature=b"sig", bundle=BUNDLE,
                                 sha256=hashlib.sha256(BUNDLE).hexdigest(), by="rm", at_ms=1)
        online(store, fleet)
        store.start_rollout(13, 100, by="admin", at_ms=int(time.time() * 1000))
        wait_until(lambda: store.current_rollout().state == "done", 30, what="rollout done")
        recs = store.firmware()
        assert {(r["stage"], r["seq"], r["fw"], r["slot"]) for r in recs.values()} == {("kept", 13, "1.13.0", "a")}
        for b in fleet:
            cmd, keep = b.commands
            assert cmd["op"] == "ota" and cmd["by"] == "rollout:admin" and json.loads(cmd["args"]["m"])["seq"] == 13
            assert (keep["op"], keep["args"], keep["by"], keep["n"]) == ("keep", {"rel": 13}, "fleet", cmd["n"] + 1)
            # The keep's own answer follows the ota command's "kept", which is what ends the rollout.
            wait_until(lambda dev=b.dev: {c["op"]: c for c in store.commands(dev)}["keep"]["ok"], 10,
                       what="the keep answered")
            log = {c["op"]: c for c in store.commands(b.dev)}
            assert log["ota"]["result"]["stage"] == "kept"
    finally:
        for b in fleet:
            b.close()


def test_a_rollout_halts_when_its_canaries_roll_back(stack, store):
    fleet = buttons(stack, 10, mode="rollback")
    try:
        assert store.add_release(seq=13, fw="1.13.0", manifest=manifest(13), signature=b"sig", bundle=BUNDLE,
                                 sha256=hashlib.sha256(BUNDLE).hexdigest(), by="rm", at_ms=1)
        online(store, fleet)
        store.start_rollout(13, 30, by="admin", at_ms=int(time.time() * 1000))
        wait_until(lambda: store.current_rollout().state == "halted", 30, what="rollout halted")
        why = store.current_rollout().why
        assert why.startswith("3 of 3 devices with an outcome failed the trial") and "rolled back" in why, why
        assert "crash" in why
        assert sum(1 for b in fleet if b.commands) == 3  # the wave only
        assert counter(stack, "panic_fleet_halts_total") == 1
        assert all(r["fw"] == "1.2.0" for r in store.firmware().values())
    finally:
        for b in fleet:
            b.close()
