"""The gateway's lean status connection: its packet splitting on any read boundary, and
against the project's mosquitto: retained statuses at connect, live ones, a wrong login,
and a broker restart (reconnect, retained replay)."""
from __future__ import annotations

import queue
import time
import tomllib

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.transport.lean import ProtocolError, publish_parts, split
from gateway.transport.status_reader import StatusReader
from tests.conftest import wait_until
from tests.gateway.test_gateway_support import KAUMAN

DEV = "klj-kauman-rw05-rt03"


def publish(topic: str, payload: bytes, qos: int = 0, retain: bool = False, pid: int = 7) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic.encode() + (pid.to_bytes(2, "big") if qos else b"") + payload
    n, length = len(body), bytearray()
    while True:
        b, n = n % 128, n // 128
        length.append(b | (0x80 if n else 0))
        if not n:
            break
    return bytes((0x30 | (qos << 1) | int(retain),)) + bytes(length) + body


def test_split_takes_every_complete_packet_whatever_the_read_boundaries():
    stream = (publish("panic/v1/a/status", b"x" * 300, retain=True) + b"\xd0\x00"  # PINGRESP
              + publish("panic/v1/b/status", b'{"v":1}', qos=1, pid=513) + publish("panic/v1/c/status", b""))
    for chunk in (1, 2, 3, 7, 64, len(stream)):
        buf, got = bytearray(), []
        for i in range(0, len(stream), chunk):
            buf += stream[i:i + chunk]
            packets, used = split(buf)
            del buf[:used]
            got += packets
        assert not buf
        assert [h >> 4 for h, _ in got] == [3, 13, 3, 3]
        pubs = [publish_parts(h, b) for h, b in got if h >> 4 == 3]
        assert pubs == [("panic/v1/a/status", b"x" * 300, True, 0, 0), ("panic/v1/b/status", b'{"v":1}', False, 1, 513),
                        ("panic/v1/c/status", b"", False, 0, 0)]


def test_of_one_read_only_each_devices_newest_status_is_handed_on():
    got, superseded = [], []
    r = StatusReader(host="127.0.0.1", port=1, client_id="x", username="", password="", topic="panic/v1/+/status",
                     on_statuses=lambda items: got.extend((t, p) for t, p, _ in items), on_superseded=superseded.append)
    stream = b"".join(publish(f"panic/v1/{d}/status", b"%d" % i) for i, d in enumerate("abacaa"))
    packets, used = split(stream)
    assert used == len(stream)
    r._packets(None, packets)  # type: ignore[arg-type]  # QoS 0: nothing is written back
    assert got == [("panic/v1/b/status", b"1"), ("panic/v1/c/status", b"3"), ("panic/v1/a/status", b"5")]
    assert superseded == [3]


def test_a_broken_stream_is_an_error_not_a_hang():
    with pytest.raises(ProtocolError):
        split(b"\x30\xff\xff\xff\xff\x01")  # remaining length over 4 bytes
    with pytest.raises(ProtocolError):
        split(b"\x30\xff\xff\xff\x7f")  # 256 MB "status"
    with pytest.raises(ProtocolError):
        publish_parts(0x30, b"\x00\x09abc")  # topic longer than the packet


def button(creds: dict, port: int) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=creds["id"])
    c.username_pw_set(creds["mqtt_username"], creds["mqtt_password"])
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def test_retained_then_live_statuses_and_a_broker_restart(broker):
    creds = broker.add_device(DEV, *KAUMAN)
    other = broker.add_device("klj-kauman-rw05-rt04", *KAUMAN)
    mq = tomllib.loads(broker.config.read_text())["mqtt"]
    topic, topic2 = f"panic/v1/{DEV}/status", f"panic/v1/{other['id']}/status"
    b, b2 = button(creds, broker.broker_port), button(other, broker.broker_port)
    b.publish(topic, b'{"n":1}', qos=1, retain=True).wait_for_publish(5)
    got: queue.Queue = queue.Queue()
    superseded: list[int] = []
    r = StatusReader(host="127.0.0.1", port=broker.broker_port, client_id="gw-status-test", username=mq["username"],
                     password=mq["password"], topic="panic/v1/+/status", keepalive=2,
                     on_statuses=lambda items: [got.put(i) for i in items], on_superseded=superseded.append)
    r.start()
    try:
        assert got.get(timeout=10) == (topic, b'{"n":1}', True)  # the retained one, at connect
        for i in range(2, 200):
            b.publish(topic, b'{"n":%d}' % i, qos=1, retain=True)
            b2.publish(topic2, b'{"n":%d}' % i, qos=1)
        # Of several of one device in one read only the newest is handed on: per device the
        # ones handed on are in order, end with the newest, and the rest are counted.
        seen: dict[str, list[int]] = {topic: [], topic2: []}
        while seen[topic][-1:] != [199] or seen[topic2][-1:] != [199]:
            t, p, retain = got.get(timeout=10)
            assert not retain
            seen[t].append(int(p[5:-1]))
        for ns in seen.values():
            assert ns == sorted(set(ns))
        assert len(seen[topic]) + len(seen[topic2]) + sum(superseded) == 2 * 198
        # keepalive 2 s: pings keep it connected through a quiet spell longer than 1.5 x keepalive
        assert got.empty() and not r._stop.wait(3.5) and r.connected.is_set()
        b.publish(topic, b'{"n":200}', qos=1, retain=True).wait_for_publish(5)
        assert got.get(timeout=10) == (topic, b'{"n":200}', False)
        b.loop_stop()
        broker.stop_broker()
        wait_until(lambda: not r.connected.is_set(), what="the reader saw the broker go")
        broker.start_broker()
        wait_until(r.connected.is_set, timeout=15, what="the reader reconnected")
        # persisted retained status replays after the restart (mosquitto saves at shutdown)
        assert got.get(timeout=10) == (topic, b'{"n":200}', True)
    finally:
        r.stop()
        b.disconnect()
        b2.disconnect()
        b2.loop_stop()


def test_a_wrong_login_is_logged_and_retried_not_fatal(broker, caplog):
    r = StatusReader(host="127.0.0.1", port=broker.broker_port, client_id="gw-status-test", username="gateway",
                     password="wrong", topic="panic/v1/+/status", on_statuses=lambda items: None)
    r.start()
    try:
        wait_until(lambda: "refused" in caplog.text, what="the refusal logged")
        assert not r.connected.is_set() and r._thread.is_alive()
    finally:
        r.stop()
    assert not r._thread.is_alive()


def test_a_trickle_of_statuses_is_read_in_blocks_not_a_wake_up_each(broker):
    """A fleet's heartbeats arrive a few at a time: read at once, each would cost the reader a
    wake-up (and the gateway a thread hand-over); paced, one read takes a block of them."""
    devs = [broker.add_device(f"klj-kauman-rw05-rt{n:02d}", *KAUMAN) for n in range(10, 14)]
    mq = tomllib.loads(broker.config.read_text())["mqtt"]
    got: list[tuple[str, bytes]] = []
    superseded: list[int] = []
    reads: list[int] = []
    r = StatusReader(host="127.0.0.1", port=broker.broker_port, client_id="gw-status-test", username=mq["username"],
                     password=mq["password"], topic="panic/v1/+/status",
                     on_statuses=lambda items: got.extend((t, p) for t, p, _ in items), on_superseded=superseded.append)
    handle = r._packets
    r._packets = lambda sock, packets: (reads.append(len(packets)), handle(sock, packets))[-1]  # type: ignore[method-assign]
    buttons = [button(creds, broker.broker_port) for creds in devs]
    r.start()
    try:
        wait_until(r.connected.is_set, what="the reader connected")
        time.sleep(0.2)
        reads.clear()
        t0 = time.monotonic()
        for i in range(1, 101):  # 100 statuses over about a second
            creds, b = devs[i % len(devs)], buttons[i % len(devs)]
            b.publish(f"panic/v1/{creds['id']}/status", b'{"n":%d}' % i, qos=0)
            time.sleep(0.01)
        wait_until(lambda: (f"panic/v1/{devs[0]['id']}/status", b'{"n":100}') in got, what="the last status")
        took = time.monotonic() - t0
        assert len(got) + sum(superseded) == 100  # each one handed on or counted as superseded
        # At most a read per 50 ms pause (and a few more), however slowly the machine sent them.
        assert len(reads) <= took / 0.05 + 5, f"{len(reads)} reads for 100 statuses in {took:.2f} s"
    finally:
        r.stop()
        for b in buttons:
            b.disconnect()
            b.loop_stop()
