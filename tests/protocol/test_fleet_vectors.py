"""protocol/vectors.json's fleet messages under CPython: protocol/fleet.py builds each command,
result and chunk request to the byte, refuses each bad one for its stated reason, and packs
and unpacks the OTA chunks. tests/firmware/mp_test_fleet_vectors.py runs the same file
against the firmware under micropython."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol import fleet, v1

V = json.loads((Path(__file__).resolve().parents[2] / "protocol" / "vectors.json").read_text())
SECRET, F = V["secret"], V["fleet"]
DEV = F["dev"]


def _body(case: dict) -> bytes:
    return case["payload"].encode().rpartition(b"\n")[0]


def _fields(case: dict) -> dict:
    return json.loads(_body(case))


def _reject_payload(case: dict) -> bytes:
    return b"x" * case["payload_len"] if "payload_len" in case else case["payload"].encode()


def test_topics_and_constants():
    assert F["topics"] == {"cmd": fleet.cmd_topic(DEV), "result": fleet.result_topic(DEV),
                           "ota": fleet.ota_topic(DEV)}
    assert v1.topic_device(F["topics"]["result"], fleet.RESULT) == DEV
    assert fleet.shared_result_filter("gw") == "$share/gw/panic/v1/+/result"
    assert F["settable"] == list(fleet.SETTABLE)
    assert (F["max_command"], F["chunk_max"]) == (fleet.MAX_COMMAND, fleet.CHUNK_MAX)


@pytest.mark.parametrize("case", F["commands_accept"], ids=lambda c: c["name"])
def test_commands_accepted(case):
    payload = case["payload"].encode()
    assert fleet.parse_command(payload, SECRET, DEV) == (None, _fields(case))
    assert v1.sign(_body(case), SECRET) == payload


def test_command_bodies_are_built_to_the_byte():
    for case in F["commands_accept"][:3]:
        f = _fields(case)
        f.pop("v")
        assert fleet.command(SECRET, **f) == case["payload"].encode()


@pytest.mark.parametrize("case", F["commands_reject"], ids=lambda c: c["name"])
def test_commands_refused_for_their_reason(case):
    assert fleet.parse_command(_reject_payload(case), SECRET, DEV) == (case["reason"], None)


def test_a_command_that_would_not_fit_the_device_is_not_built():
    with pytest.raises(ValueError):
        fleet.command_body(dev=DEV, n=1, op="set", args={"wifi": [{"ssid": "x" * 32, "psk": "y" * 63}] * 12},
                           by="admin", t=0)
    with pytest.raises(ValueError):
        fleet.command_body(dev=DEV, n=1, op="format", by="admin", t=0)


@pytest.mark.parametrize("case", F["results"], ids=lambda c: c["name"])
def test_results(case):
    f = _fields(case)
    f.pop("v")
    assert fleet.result_body(**f) == _body(case)
    assert v1.sign(_body(case), SECRET) == case["payload"].encode()
    assert fleet.parse_result(case["payload"].encode(), SECRET, DEV) == (None, _fields(case))
    assert fleet.parse_result(case["payload"].encode(), SECRET, "klj-other")[0] == "dev"


@pytest.mark.parametrize("case", F["results_reject"], ids=lambda c: c["name"])
def test_results_refused_for_their_reason(case):
    assert fleet.parse_result(case["payload"].encode(), SECRET, DEV) == (case["reason"], None)


@pytest.mark.parametrize("case", F["gets"], ids=lambda c: c["name"])
def test_chunk_requests(case):
    body = fleet.get_body(dev=DEV, rel=case["rel"], off=case["off"])
    assert body == _body(case) and v1.sign(body, SECRET) == case["payload"].encode()
    why, d = fleet.parse_result(case["payload"].encode(), SECRET, DEV)
    assert why is None and d is not None and (d["op"], d["rel"], d["off"]) == ("get", case["rel"], case["off"])


@pytest.mark.parametrize("case", F["chunks"], ids=lambda c: c["name"])
def test_chunks(case):
    data = bytes.fromhex(case["data_hex"])
    assert fleet.chunk(case["seq"], case["off"], data).hex() == case["payload_hex"]
    assert fleet.parse_chunk(bytes.fromhex(case["payload_hex"])) == (case["seq"], case["off"], data)


@pytest.mark.parametrize("case", F["chunks_reject"], ids=lambda c: c["name"])
def test_bad_chunks(case):
    raw = bytes.fromhex(case["payload_hex"]) if "payload_hex" in case else \
        bytes.fromhex(case["head_hex"]) + b"x" * case["data_len"]
    with pytest.raises(ValueError):
        fleet.parse_chunk(raw)
