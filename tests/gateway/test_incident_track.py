"""A GPS button's track while its incident is open (docs/protocol.md, status `pos`): checked
strictly, kept per open incident (both databases, bounded), served by the API and drawn on the
incident's map."""
from __future__ import annotations

import json

import pytest

from gateway.health import StatusError, parse_status
from gateway.store import track as track_store
from protocol import v1 as protocol
from tests.conftest import wait_until
from tests.devices import RawDevice
from tests.gateway.test_console import add_user, http_login
from tests.gateway.test_gateway_support import pg_dsn  # noqa: F401 (fixture)
from tests.gateway.test_store import DEV, alert

TOPIC = f"panic/v1/{DEV}/status"
POS = {"lat6": -7982700, "lon6": 112627100, "acc": 8, "t": None}


def status(**extra) -> bytes:
    return json.dumps({"v": 1, "dev": DEV, "state": "online", "boot": 3, "up": 10, **extra}).encode()


@pytest.mark.parametrize("pos", [
    {**POS, "lat6": 90_000_001}, {**POS, "lon6": "112"}, {**POS, "acc": -1}, {**POS, "t": "now"},
    {**POS, "speed": 3}, [POS["lat6"], POS["lon6"]], {"lat6": 1, "lon6": 2}, {**POS, "acc": 1.5},
])
def test_bad_pos_is_a_schema_error(pos):
    with pytest.raises(StatusError) as exc:
        parse_status(TOPIC, status(pos=pos), "panic/v1")
    assert exc.value.reason == "schema"


def test_pos_is_optional_and_normalised():
    assert "pos" not in parse_status(TOPIC, status(), "panic/v1")[1]
    _, got = parse_status(TOPIC, status(pos={"lat6": 1, "lon6": 2, "acc": 3}), "panic/v1")
    assert got["pos"] == {"lat6": 1, "lon6": 2, "acc": 3, "t": None}


def test_points_go_to_open_incidents_only_once_and_within_the_bound(store, monkeypatch):
    assert store.add_track_point(DEV, at_ms=5, lat6=1, lon6=2, acc=3) == 0  # no incident open: nothing kept
    inc = store.ingest([alert(1)])[0].incident.id
    for at in (10, 20, 20, 30):  # the same fix twice is one point
        store.add_track_point(DEV, at_ms=at, lat6=at, lon6=2, acc=3)
    assert [p.at_ms for p in store.track(inc)] == [10, 20, 30]
    monkeypatch.setattr(track_store, "MAX_POINTS", 4)
    assert store.add_track_point(DEV, at_ms=40, lat6=1, lon6=2, acc=3) == 1
    assert store.add_track_point(DEV, at_ms=50, lat6=1, lon6=2, acc=3) == 0  # full: a flood stops here
    for action in ("acknowledge", "resolve"):
        store.transition(inc, action, "op", 100, role="operator")
    monkeypatch.setattr(track_store, "MAX_POINTS", 100)
    assert store.add_track_point(DEV, at_ms=60, lat6=1, lon6=2, acc=3) == 0  # closed: no longer tracked
    assert len(store.track(inc)) == 4


def test_a_gps_buttons_positions_reach_the_api_and_the_map(stack):
    creds = stack.add_device(DEV, -7982600, 112627000, kelurahan="Kauman")
    d = RawDevice(creds, stack.broker_port)
    try:
        d.send(seq=1)
        inc = d.ack()["inc"]
        # One at a time, as a button sends them (every `track_s`): a status superseded while the
        # one before it is still being stored is dropped by the gateway's status gate by design.
        for i in range(3):
            d.publish(status(pos={"lat6": -7982600 - 100 * i, "lon6": 112627000, "acc": 8}),
                      topic=protocol.status_topic(DEV))
            wait_until(lambda n=i + 1: len(stack.get(f"/api/incidents/{inc}")["track"]) == n, 10,
                       what=f"track point {i + 1}")
        d.publish(status(pos={"lat6": 91_000_000, "lon6": 0, "acc": 8}), topic=protocol.status_topic(DEV))
        wait_until(lambda: stack.metrics().get('panic_status_rejected_total{reason="schema"}', 0) >= 1, 10,
                   what="the bad position counted")
    finally:
        d.close()
    track = stack.get(f"/api/incidents/{inc}")["track"]
    assert [p["lat6"] for p in track] == [-7982600, -7982700, -7982800]
    add_user(stack, "op", "operator")
    page = http_login(stack, "op")[0].get(f"/console/incidents/{inc}").text
    assert '"track": [{"at_ms"' in page and "-7982800" in page
