"""Properties of the gateway's parser/validator (hypothesis) and a short fuzz run."""
from __future__ import annotations

import json
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import signing
from gateway.models import Alert
from gateway.validate import Rejection, check_alert
from tools import fuzz_gateway as fz

NOW = int(time.time() * 1000)


def check(payload: bytes, topic: str = fz.TOPIC):
    return check_alert(topic, payload, root="panic/v1", max_payload=1024, device={fz.DEV: fz.DEVICE}.get,
                       now_ms=NOW, stale_past_ms=86400_000, stale_future_ms=300_000)


alerts = st.fixed_dictionaries({
    "boot": st.integers(0, 2**40), "seq": st.integers(0, 2**40),
    "kind": st.sampled_from(["panic", "test"]),
    "t": st.one_of(st.none(), st.integers(NOW - 86000_000, NOW + 200_000)),
    "age": st.integers(0, 80_000_000), "lat6": st.integers(-90_000_000, 90_000_000),
    "lon6": st.integers(-180_000_000, 180_000_000), "acc": st.integers(0, 100_000),
    "src": st.sampled_from(["gps", "fixed"]), "batt": st.one_of(st.none(), st.integers(0, 100)),
    "rssi": st.one_of(st.none(), st.integers(-200, 0)),
})


def body_of(f: dict) -> bytes:
    return json.dumps({"v": 1, "dev": fz.DEV, "id": f"{fz.DEV}:{f['boot']}:{f['seq']}", **f}).encode()


@given(alerts)
def test_every_valid_alert_is_accepted_with_its_fields(f):
    result = check(signing.sign(body_of(f), fz.SECRET))
    assert isinstance(result, Alert), result
    assert (result.lat6, result.lon6, result.boot, result.seq, result.t) == (f["lat6"], f["lon6"], f["boot"],
                                                                             f["seq"], f["t"])
    assert result.press_ms == (f["t"] if f["t"] is not None else NOW - f["age"])


@given(alerts, st.data())
def test_any_changed_byte_is_rejected(f, data):
    signed = signing.sign(body_of(f), fz.SECRET)
    i = data.draw(st.integers(0, len(signed) - 1))
    flip = data.draw(st.integers(1, 255))
    tampered = signed[:i] + bytes([signed[i] ^ flip]) + signed[i + 1:]
    assert isinstance(check(tampered), Rejection)


@given(st.binary(max_size=1200))
def test_arbitrary_bytes_never_raise(payload):
    assert isinstance(check(payload), Rejection)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4)))
@settings(max_examples=300)
def test_any_signed_json_never_raises(value):
    result = check(signing.sign(json.dumps(value).encode(), fz.SECRET))
    assert isinstance(result, (Alert, Rejection))


@given(st.text(max_size=80))
def test_topics_outside_the_alert_space_are_rejected(topic):
    payload = signing.sign(body_of({"boot": 1, "seq": 1, "kind": "panic", "t": None, "age": 0, "lat6": 0,
                                    "lon6": 0, "acc": 1, "src": "fixed", "batt": None, "rssi": None}), fz.SECRET)
    result = check(payload, topic=topic)
    assert isinstance(result, Rejection) or topic == fz.TOPIC


def test_short_fuzz_run_has_no_unhandled_exception():
    outcomes = fz.run(5000, seed=7, progress=False)
    assert outcomes.get("CRASH", 0) == 0
    assert outcomes["accepted"] > 0 and outcomes["json"] > 0 and outcomes["schema"] > 0 and outcomes["mac"] > 0
