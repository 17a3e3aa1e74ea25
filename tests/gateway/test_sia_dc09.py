"""The SIA DC-09 sink against a DC-09 receiver the project does not write: pysiaalarm (the
library of Home Assistant's SIA integration) listening on loopback, with and without AES.
A NAK, a wrong key or an ARC that is down leaves the event queued and counted, never dropped."""
from __future__ import annotations

import json
import socket
import threading
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pysiaalarm import SIAAccount, SIAClient, SIAEvent

from gateway import config
from gateway.config import ConfigError, write
from gateway.sia import codec
from gateway.sinks import DeliveryError, Forward, SinkContext, build
from tests.conftest import wait_until
from tests.gateway.test_gateway_support import custom_stack, device

KEY = "A1B2C3D4E5F60718"
OTHER_KEY = "00112233445566778899AABBCCDDEEFF"


class Arc:
    """A pysiaalarm receiver on a free loopback port, keeping every event it accepted."""

    def __init__(self, accounts: list[SIAAccount]) -> None:
        self.events: list[SIAEvent] = []
        self.client = SIAClient("127.0.0.1", 0, accounts, self.events.append)
        self.port = self.client.sia_server.server_address[1]
        self.client.start()

    def wait(self, n: int, timeout: float = 10.0) -> list[SIAEvent]:
        deadline = time.monotonic() + timeout
        while len(self.events) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.events

    def close(self) -> None:
        self.client.stop()


@pytest.fixture
def arcs():
    made: list[Arc] = []

    def make(*accounts: SIAAccount) -> Arc:
        made.append(Arc(list(accounts)))
        return made[-1]
    yield make
    for arc in made:
        arc.close()


def incident(**fields) -> dict:
    return {"id": "inc-000000000001", "dev": "klj-kauman-rw05-rt03", "state": "new", "kind": "panic",
            "received_ms": 1764269000123, "press_ms": 1764269000000, "lat6": -7982600, "lon6": 112627000,
            "acc": 25, "src": "fixed", "device": {"kecamatan": "Klojen", "kelurahan": "Kauman"}} | fields


def forward(event: str = "new", **fields) -> Forward:
    inc = incident(**fields)
    return Forward(f"{inc['id']}:{event}", json.dumps({"event": event, "at_ms": 1764269000123, "actor": "x",
                                                       "incident": inc}))


def sia_sinks(tmp_path: Path, port: int, extra: str = "", name: str = "arc") -> dict:
    path = tmp_path / "gateway.toml"
    path.write_text(f'[[sinks]]\ntype = "sia_dc09"\nname = "{name}"\nhost = "127.0.0.1"\nport = {port}\n'
                    f'account = "1234"\n{extra}' + ("" if "timeout_s" in extra else "timeout_s = 3\n"))
    cfg = config.load(path)
    return {s.name: s for s in build(cfg.sinks, SinkContext(cfg))}


def test_codec_crc_is_the_standards_crc16_arc():
    # CRC-16/ARC check value for "123456789".
    assert codec.crc16(b"123456789") == 0xBB3D


@pytest.mark.parametrize("key", ["", KEY, OTHER_KEY])
def test_a_panic_reaches_the_arc_with_its_code_account_and_location(tmp_path, arcs, key):
    arc = arcs(SIAAccount("1234", key or None))
    sink = sia_sinks(tmp_path, arc.port, f'key = "{key}"\n' if key else "")["arc"]
    sink.deliver(forward("new"))
    (event,) = arc.wait(1)
    assert (event.code, event.account, event.ri, event.encrypted) == ("PA", "1234", "1", bool(key))
    xdata = {x.identifier: x.value for x in event.extended_data or []}
    assert xdata["X"] == "E112.627000" and xdata["Y"] == "S7.982600"
    assert xdata["S"] == "klj-kauman-rw05-rt03" and xdata["I"] == "inc-000000000001"
    assert xdata["H"] == "18:43:20,11-27-2025"  # the press, not the send
    assert event.valid_timestamp and abs(event.timestamp - datetime.now(UTC)).total_seconds() < 5


@pytest.mark.parametrize("event, kind, code", [
    ("new", "test", "RX"), ("cancelled", "panic", "OC"), ("resolved", "panic", "PR")])
def test_test_cancel_and_restore_codes(tmp_path, arcs, event, kind, code):
    arc = arcs(SIAAccount("1234", KEY))
    sink = sia_sinks(tmp_path, arc.port, f'key = "{KEY}"\nreceiver = "1A"\nline = "2"\n')["arc"]
    sink.deliver(forward(event, kind=kind))
    assert [(e.code, e.receiver, e.line) for e in arc.wait(1)] == [(code, "R1A", "L2")]


def test_a_tests_end_owes_the_arc_nothing(tmp_path, arcs):
    arc = arcs(SIAAccount("1234"))
    sia_sinks(tmp_path, arc.port)["arc"].deliver(forward("resolved", kind="test"))
    time.sleep(0.3)
    assert arc.events == []


def test_the_account_per_device_or_per_sector(tmp_path, arcs):
    arc = arcs(SIAAccount("1234"), SIAAccount("5A01"), SIAAccount("BEEF"))
    by_device = sia_sinks(tmp_path, arc.port, 'account_by = "device"\n'
                          'accounts = {"klj-kauman-rw05-rt03" = "5A01"}\n', name="dev")["dev"]
    by_device.deliver(forward("new"))
    by_device.deliver(forward("new", dev="klj-other-rw01-rt01", id="inc-000000000002"))
    by_sector = sia_sinks(tmp_path, arc.port, 'account_by = "sector"\naccounts = {klojen = "BEEF"}\n',
                          name="sec")["sec"]
    by_sector.deliver(forward("new", id="inc-000000000003"))
    by_sector.deliver(forward("new", id="inc-000000000004", device={"kecamatan": "Sukun"}))
    # The receiver calls back after its ACK, on a thread per connection: order by incident.
    got = {next(x.value for x in e.extended_data or [] if x.identifier == "I"): e.account for e in arc.wait(4)}
    assert got == {"inc-000000000001": "5A01", "inc-000000000002": "1234", "inc-000000000003": "BEEF",
                   "inc-000000000004": "1234"}


@pytest.mark.parametrize("arc_key, sink_key", [(KEY, OTHER_KEY), (None, KEY)])
def test_a_wrong_key_is_a_nak_and_a_transient_failure(tmp_path, arcs, arc_key, sink_key):
    arc = arcs(SIAAccount("1234", arc_key))
    sink = sia_sinks(tmp_path, arc.port, f'key = "{sink_key}"\n' if sink_key else "")["arc"]
    with pytest.raises(DeliveryError) as exc:
        sink.deliver(forward("new"))
    assert not exc.value.permanent
    assert arc.events == []


def test_an_unknown_account_is_refused_not_dropped(tmp_path, arcs):
    arc = arcs(SIAAccount("9999"))
    with pytest.raises(DeliveryError, match="NAK") as exc:
        sia_sinks(tmp_path, arc.port)["arc"].deliver(forward("new"))
    assert not exc.value.permanent


def test_a_code_the_arc_cannot_take_is_a_duh_and_permanent(tmp_path, arcs):
    arc = arcs(SIAAccount("1234"))
    sink = sia_sinks(tmp_path, arc.port)["arc"]
    with pytest.raises(DeliveryError, match="DUH") as exc:
        sink.send_checked(codec.Message("SIA-DCS", 7, "1234", codec.event_data("1234", "QQ")))
    assert exc.value.permanent


def test_an_encrypted_duh_is_retried_not_dead_lettered(tmp_path, arcs):
    """With AES on, an ARC holding another key decrypts noise that now and then parses into
    an unknown code: its DUH must not dead-letter a police event (seen in CI)."""
    arc = arcs(SIAAccount("1234", KEY))
    sink = sia_sinks(tmp_path, arc.port, f'key = "{KEY}"\n')["arc"]
    with pytest.raises(DeliveryError, match="DUH") as exc:
        sink.send_checked(codec.Message("SIA-DCS", 7, "1234", codec.event_data("1234", "QQ")))
    assert not exc.value.permanent


def test_an_arc_that_is_down_or_mute_is_a_transient_failure(tmp_path):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    sink = sia_sinks(tmp_path, port)["arc"]
    with pytest.raises(DeliveryError, match="unreachable") as exc:
        sink.deliver(forward("new"))
    assert not exc.value.permanent
    # Accepts connections (the listen backlog) and never answers.
    mute = socket.create_server(("127.0.0.1", 0))
    try:
        sink = sia_sinks(tmp_path, mute.getsockname()[1], "timeout_s = 0.5\n", name="mute")["mute"]
        with pytest.raises(DeliveryError, match="unreachable: TimeoutError") as exc:
            sink.deliver(forward("new"))
        assert not exc.value.permanent
    finally:
        mute.close()


class ScriptedArc:
    """A TCP peer that reads one message per connection and answers it with `reply`."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(self.reply)

    def close(self) -> None:
        self.server.close()


def stamp(offset_s: float) -> str:
    return codec.timestamp(datetime.now(UTC) + timedelta(seconds=offset_s))


@pytest.mark.parametrize("reply, message", [
    (lambda: codec.frame('"NAK"0000R0L0A0[]' + stamp(600)), r"NAK\); the ARC's clock is \+(599|600|601) s from ours"),
    (lambda: codec.frame('"ACK"0001L0#1234[]'), "acknowledged sequence 1, not"),
    (lambda: b"\n0000" + codec.frame('"ACK"0001L0#1234[]')[5:], "CRC or length mismatch"),
    (lambda: b"HELLO, WORLD\r", "no CRC and length"),
])
def test_replies_that_do_not_deliver_are_transient(tmp_path, reply, message):
    arc = ScriptedArc(reply())
    try:
        with pytest.raises(DeliveryError, match=message) as exc:
            sia_sinks(tmp_path, arc.port)["arc"].deliver(forward("new"))
        assert not exc.value.permanent
    finally:
        arc.close()


def test_pysiaalarms_own_nak_is_read_with_its_time():
    from pysiaalarm.event import NAKEvent
    reply = codec.parse_reply(NAKEvent().create_response())
    assert reply.kind == "NAK" and reply.receiver_time is not None
    assert abs((reply.receiver_time - datetime.now(UTC)).total_seconds()) < 5


@pytest.mark.parametrize("key", ["", KEY])
def test_null_supervision_messages_at_the_interval(tmp_path, arcs, key):
    arc = arcs(SIAAccount("1234", key or None))
    sink = sia_sinks(tmp_path, arc.port, "supervision_s = 0.2\n" + (f'key = "{key}"\n' if key else ""))["arc"]
    try:
        events = arc.wait(3)
        assert len(events) >= 3
        assert {(e.message_type.value, e.code, e.account) for e in events} == {("NULL", "RP", "1234")}
    finally:
        sink.close()


@pytest.mark.parametrize("extra, message", [
    ('account = "12G4"\n', "3-16 upper-case hex digits"),
    ('key = "short"\n', "key must be 16, 24 or 32 hex characters"),
    ('account_by = "kelurahan"\n', "account_by must be one of"),
    ('accounts = {a = "xyz"}\n', "3-16 upper-case hex digits"),
    ('events = ["dispatched"]\n', "takes only new, cancelled and resolved"),
])
def test_bad_sia_settings_are_config_errors(tmp_path, extra, message):
    path = tmp_path / "gateway.toml"
    text = (f'[[sinks]]\ntype = "sia_dc09"\nname = "arc"\nhost = "127.0.0.1"\nport = 9\n'
            f'{extra}' + ('' if extra.startswith("account =") else 'account = "1234"\n'))
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        cfg = config.load(path)
        build(cfg.sinks, SinkContext(cfg))


def _add_arc(s, port: int, key: str) -> None:
    data = tomllib.loads(s.config.read_text())
    data["sinks"] = [{"type": "sia_dc09", "name": "arc", "host": "127.0.0.1", "port": port, "account": "1234",
                      "account_by": "sector", "accounts": {"klojen": "BEEF"}, "key": key, "timeout_s": 3}]
    write(data, s.config)


def test_the_gateway_holds_an_event_the_arc_refuses_until_it_takes_it(tmp_path, arcs):
    arc = arcs(SIAAccount("1234", KEY), SIAAccount("BEEF", KEY))
    s = custom_stack(tmp_path / "state", start=False, forward_backoff_ms=100, forward_backoff_max_s=1)
    _add_arc(s, arc.port, OTHER_KEY)
    s.start_broker()
    s.start_gateway()
    raw, _ = device(s)
    try:
        raw.send(seq=1)
        inc = raw.ack()["inc"]
        wait_until(lambda: s.metrics().get('panic_sia_replies_total{reply="nak",sink="arc"}', 0) >= 2)
        m = s.metrics()
        assert m['panic_forwards_total{result="retry",sink="arc"}'] >= 2
        assert m.get('panic_forwards_total{result="dead",sink="arc"}', 0) == 0
        pending = {x["sink"]: x["pending"] for x in s.get("/api/forwards")["sinks"]}
        assert pending["arc"] == 1 and arc.events == []
        # The right key: the same event goes out, once.
        s.kill_gateway()
        _add_arc(s, arc.port, KEY)
        s.start_gateway()
        (event,) = arc.wait(1)
        # The button is registered in Klojen: the Klojen sector's account, read from the registry.
        assert event.code == "PA" and event.account == "BEEF"
        xdata = {x.identifier: x.value for x in event.extended_data or []}
        assert xdata["I"] == inc
        wait_until(lambda: {x["sink"]: x["pending"] for x in s.get("/api/forwards")["sinks"]}["arc"] == 0)
    finally:
        raw.close()
        s.down()
