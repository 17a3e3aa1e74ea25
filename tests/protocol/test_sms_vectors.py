"""protocol/vectors.json's SMS texts under CPython: protocol/sms.py builds each alert and ack
to the byte and refuses each bad one for its stated reason."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol import sms

V = json.loads((Path(__file__).resolve().parents[2] / "protocol" / "vectors.json").read_text())
SECRET, S = V["secret"], V["sms"]


@pytest.mark.parametrize("case", S["alerts"], ids=lambda c: c["name"])
def test_alert_texts_are_built_and_parsed_as_the_vectors_say(case):
    text = sms.alert_text(secret=SECRET, **case["args"])
    assert text == case["text"] and len(text) <= S["segment"]
    assert sms.parse_alert(text, SECRET) == case["fields"]
    assert sms.sms_device(text) == case["args"]["dev"]


@pytest.mark.parametrize("case", S["alerts_reject"], ids=lambda c: c["name"])
def test_bad_alert_texts_are_refused_for_their_reason(case):
    with pytest.raises(sms.SmsError) as e:
        sms.parse_alert(case["text"], SECRET)
    assert e.value.reason == case["reason"]


@pytest.mark.parametrize("case", S["acks_accept"], ids=lambda c: c["name"])
def test_ack_texts(case):
    assert sms.ack_text(secret=SECRET, **case["args"]) == case["text"]
    assert sms.parse_ack(case["text"], SECRET) == (None, case["ack"])


@pytest.mark.parametrize("case", S["acks_reject"], ids=lambda c: c["name"])
def test_bad_ack_texts(case):
    assert sms.parse_ack(case["text"], SECRET) == (case["reason"], None)
