"""Protocol devices on real parts (mosquitto and the gateway as processes): the firmware's
own gesture and NMEA modules decide what a press is, `protocol` signs and checks, and the
gateway's signed acks come back."""
from __future__ import annotations

import itertools
import queue
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

import protocol
from gateway import config as gateway_config
from simulator import geo
from simulator.mpcompat import firmware_module
from simulator.protodev import ProtocolDevice
from simulator.stack import Stack
from tests.conftest import KAUMAN, assert_no_secrets_in_logs, wait_until


class Watched:
    """A protocol device and the events it emits."""

    def __init__(self, dev: ProtocolDevice) -> None:
        self.dev = dev
        self.events: queue.Queue[dict] = queue.Queue()
        self.history: list[dict] = []
        dev.on_event = lambda _d, ev: self.events.put(ev)

    def wait_for(self, match, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching event; seen {[e['ev'] for e in self.history]}")
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                continue
            self.history.append(ev)
            if match(ev):
                return ev

    def seen(self, ev: str) -> list[dict]:
        while not self.events.empty():
            self.history.append(self.events.get())
        return [e for e in self.history if e["ev"] == ev]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """One broker and gateway for the module; each test has a button of its own."""
    s = Stack(tmp_path_factory.mktemp("protodev") / "state")
    s.up()
    yield s
    s.down()
    assert_no_secrets_in_logs(s)


_ids = itertools.count(1)


@pytest.fixture
def dev_id() -> str:
    return f"klj-kauman-rw05-rt{next(_ids):02d}"


@pytest.fixture
def protodev(stack, tmp_path, dev_id):
    made: list[ProtocolDevice] = []

    def make(dev: str = dev_id, **config) -> Watched:
        creds = stack.add_device(dev, *KAUMAN, kelurahan="Kauman", rw=5, rt=3)
        d = ProtocolDevice(tmp_path / "flash" / dev, dict(creds["config"], **config))
        w = Watched(d)
        made.append(d)
        d.start()
        w.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up")
        w.wait_for(lambda e: e["ev"] == "subscribed")
        return w

    yield make
    for d in made:
        d.stop()


def _incidents(stack, dev: str, n: int) -> list[dict]:
    def mine():
        got = [i for i in stack.incidents() if i["dev"] == dev]
        return got if len(got) >= n else None
    return wait_until(mine, 10, what=f"{n} incidents of {dev}")


def test_a_long_press_is_acked_and_a_bump_is_no_alert(stack, protodev, dev_id):
    w = protodev(long_press_ms=400, cancel_hold_ms=900)
    w.dev.send("down")
    w.dev.send("up")                      # a bump: released at once
    w.dev.send("down")
    time.sleep(0.6)
    w.dev.send("up")
    ack = w.wait_for(lambda e: e["ev"] == "ack")
    assert ack["stage"] == "received" and ack["id"] == f"{dev_id}:1:1"
    assert [a["kind"] for a in w.seen("alert")] == ["panic"]
    (inc,) = _incidents(stack, dev_id, 1)
    assert (inc["alert_id"], inc["src"], inc["lat6"], inc["lon6"]) == (f"{dev_id}:1:1", "fixed", *KAUMAN)


def test_triple_press_then_a_cancel_hold(stack, protodev, dev_id):
    w = protodev(trigger="triple", cancel_hold_ms=700)
    for _ in range(2):
        w.dev.send("down")
        w.dev.send("up")
    time.sleep(0.3)
    assert not w.seen("alert"), "two presses are not a trigger"
    w.dev.send("down")
    w.dev.send("up")
    w.wait_for(lambda e: e["ev"] == "ack" and e["id"] == f"{dev_id}:1:1" and e["stage"] == "received")
    w.dev.send("down")                    # the hold only arms a cancel of the delivered alert ...
    time.sleep(0.9)
    w.dev.send("up")
    time.sleep(0.3)
    assert not [a for a in w.seen("alert") if a["kind"] == "cancel"], "a hold alone withdraws nothing"
    w.dev.send("down")                    # ... a short press confirms it, as on the firmware
    w.dev.send("up")
    w.wait_for(lambda e: e["ev"] == "ack" and e["id"] == f"{dev_id}:1:2")
    cancel = [a for a in w.seen("alert") if a["kind"] == "cancel"]
    assert len(cancel) >= 1 and cancel[0]["id"] == f"{dev_id}:1:2"
    wait_until(lambda: _incidents(stack, dev_id, 1)[0]["cancel_requested_ms"] is not None, 10,
               what="cancel requested (the desk closes it)")
    assert len(_incidents(stack, dev_id, 1)) == 1


def test_gps_fix_goes_through_the_firmware_nmea_parser(stack, protodev, dev_id):
    w = protodev()
    w.dev.send("gps $GPGGA,garbage*00")
    w.wait_for(lambda e: e["ev"] == "log" and "gps sentence ignored" in e["msg"])
    sentence = geo.gga(-7.9801234, 112.6305678, hdop=1.2)
    w.dev.send("gps " + sentence)
    w.dev.send("trigger")
    w.wait_for(lambda e: e["ev"] == "ack")
    parser = firmware_module("gps").GPS(30)
    assert parser.feed(sentence)
    (inc,) = _incidents(stack, dev_id, 1)
    assert (inc["src"], inc["lat6"], inc["lon6"], inc["acc"]) == ("gps", *parser.fix())


def test_forged_and_malformed_acks_are_refused(stack, protodev, dev_id):
    w = protodev()
    gw = gateway_config.load(stack.config).mqtt
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="forger")
    c.username_pw_set(gw.username, gw.password)
    c.connect("127.0.0.1", stack.broker_port)
    c.loop_start()
    try:
        secret = w.dev.cfg["secret"]
        good = protocol.ack_body(alert_id=f"{dev_id}:1:1", stage="received", inc=None, reason=None, now=1)
        for payload, reason in [
            (protocol.sign(good, "00" * 32), "mac"),
            (protocol.sign(b'{"v": 2, "id": "x", "stage": "received"}', secret), "version"),
            (protocol.sign(b'{"v": 1, "id": "x", "stage": "eaten"}', secret), "stage"),
        ]:
            c.publish(protocol.ack_topic(dev_id), payload, qos=1).wait_for_publish(5)
            assert w.wait_for(lambda e: e["ev"] == "bad_ack")["reason"] == reason
    finally:
        c.loop_stop()
        c.disconnect()
