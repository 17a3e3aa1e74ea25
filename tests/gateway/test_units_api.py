"""The units API on the real gateway (real mosquitto, SQLite): registry by the CLI, positions and
statuses from a responder token bound to its unit, the recommendation for a real incident, the unit
following its incident, and the track kept for the record."""
from __future__ import annotations

import httpx
import pytest

from simulator.stack import Stack
from tests.conftest import KAUMAN
from tests.devices import RawDevice

POLSEK_KLOJEN = ("-7.979", "112.633")
FAR = ("-7.90", "112.70")  # about 12 km from Kauman: more than 10 minutes by car


@pytest.fixture(scope="module")
def units_stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("units") / "state")
    s.up()
    for call, kind, sector, (lat, lon) in (("KLJ-R1", "car", "klojen", POLSEK_KLOJEN),
                                           ("KLJ-M2", "motorbike", "klojen", POLSEK_KLOJEN),
                                           ("KLJ-FAR", "car", "klojen", FAR),
                                           ("BLM-R1", "car", "blimbing", ("-7.955", "112.645"))):
        s.cli("unit", "add", call, "--kind", kind, "--sector", sector, "--post", "post", "--lat", lat, "--lon", lon)
    yield s
    s.down()


def responder(stack: Stack, unit: str) -> dict[str, str]:
    token = stack.cli("token", "create", "--role", "responder", "--unit", unit, "--name", f"phone-{unit}").stdout.strip()
    return {"Authorization": f"Bearer {token}"}


def rejected(stack: Stack, reason: str) -> float:
    return stack.metrics().get(f'panic_unit_reports_rejected_total{{reason="{reason}"}}', 0.0)


def post(stack: Stack, path: str, headers: dict, **body) -> httpx.Response:
    return httpx.post(stack.api + path, json=body, headers=headers, timeout=10)


def test_cli_registry_and_duplicate(units_stack):
    s = units_stack
    listed = {u["call_sign"]: u for u in s.get("/api/units")["units"]}
    assert set(listed) == {"KLJ-R1", "KLJ-M2", "KLJ-FAR", "BLM-R1"}
    assert listed["KLJ-M2"]["status"] == "available" and listed["KLJ-M2"]["fix_age_s"] is None
    assert [u["call_sign"] for u in s.get("/api/units", sector="blimbing")["units"]] == ["BLM-R1"]
    again = s.cli("unit", "add", "KLJ-R1", "--kind", "car", "--sector", "klojen", "--lat", "-7.9", "--lon", "112.6",
                  check=False)
    assert again.returncode == 2 and "exists" in again.stderr
    # A known post places the unit and names its sector; an unknown one without coordinates is refused.
    s.cli("unit", "add", "SKN-1", "--kind", "car", "--post", "polsek sukun")
    skn = s.get("/api/units/SKN-1")
    assert (skn["sector"], skn["post"], skn["post_lat6"], skn["post_lon6"]) == ("sukun", "Polsek Sukun", -7999000,
                                                                               112617000)
    assert s.cli("unit", "add", "X-1", "--kind", "car", "--post", "Pos Atlantis", check=False).returncode == 2
    s.cli("unit", "remove", "SKN-1")
    assert httpx.get(s.api + "/api/units", params={"sector": "atlantis"},
                     headers={"Authorization": f"Bearer {s.token()}"}, timeout=10).status_code == 400


def test_responder_reports_its_own_position_and_nobody_elses(units_stack):
    s = units_stack
    phone = responder(s, "KLJ-M2")
    r = post(s, "/api/units/KLJ-M2/position", phone, lat=-7.9801, lon=112.6301, acc=8)
    assert r.status_code == 200, r.text
    u = r.json()
    assert (u["lat6"], u["lon6"], u["acc"]) == (-7980100, 112630100, 8) and u["fix_age_s"] == 0
    forbidden = rejected(s, "forbidden")
    assert post(s, "/api/units/KLJ-R1/position", phone, lat=-7.98, lon=112.63).status_code == 403
    assert post(s, "/api/units/KLJ-R1/status", phone, status="off_duty").status_code == 403
    assert rejected(s, "forbidden") == forbidden + 2
    # A viewer reads the board but reports nothing.
    viewer = {"Authorization": f"Bearer {s.token('viewer')}"}
    assert post(s, "/api/units/KLJ-M2/position", viewer, lat=-7.98, lon=112.63).status_code == 403
    assert httpx.post(s.api + "/api/units/KLJ-M2/position", json={"lat": -7.98, "lon": 112.63}, timeout=10
                      ).status_code == 401


def test_bad_reports_get_a_reason_and_a_counter(units_stack):
    s = units_stack
    phone = responder(s, "KLJ-R1")
    before = rejected(s, "bad_position")
    for body in ({"lat": 200, "lon": 112.6}, {"lat": "-7.9", "lon": 112.6}, {"lon": 112.6}, {"lat": 0, "lon": 0}):
        r = post(s, "/api/units/KLJ-R1/position", phone, **body)
        assert r.status_code == 400 and r.json()["error"], body
    assert rejected(s, "bad_position") == before + 4
    r = httpx.post(s.api + "/api/units/KLJ-R1/position", content=b"{not json", headers=phone, timeout=10)
    assert r.status_code == 400 and rejected(s, "malformed") >= 1
    r = post(s, "/api/units/KLJ-R1/status", phone, status="napping")
    assert r.status_code == 400 and "status must be one of" in r.json()["error"]
    op = {"Authorization": f"Bearer {s.token()}"}
    r = post(s, "/api/units/NOPE/position", op, lat=-7.98, lon=112.63)
    assert r.status_code == 400 and "no unit" in r.json()["error"] and rejected(s, "unknown_unit") >= 1


def test_recommend_dispatch_follow_and_track(units_stack):
    s = units_stack
    creds = s.add_device("klj-kauman-rw01-rt01", *KAUMAN, kelurahan="Kauman", kecamatan="Klojen", rw=1, rt=1)
    dev = RawDevice(creds, s.broker_port)
    try:
        dev.send(seq=1)
        inc_id = dev.ack()["inc"]
    finally:
        dev.close()
    moto, car = responder(s, "KLJ-M2"), responder(s, "KLJ-R1")
    assert post(s, "/api/units/KLJ-M2/position", moto, lat=-7.9827, lon=112.6275, acc=5).status_code == 200
    assert post(s, "/api/units/KLJ-R1/status", car, status="available").status_code == 200
    rec = s.get(f"/api/incidents/{inc_id}/recommendation")
    assert rec["sector"] == "klojen" and rec["in_time"] and 0 < rec["remaining_s"] <= 600
    calls = [c["call_sign"] for c in rec["candidates"]]
    # The motorbike is round the corner by its fix; the car waits at the Polsek; the far car is last;
    # Blimbing's car is not offered while Klojen has units in time.
    assert calls == ["KLJ-M2", "KLJ-R1", "KLJ-FAR"]
    assert rec["candidates"][0]["placed_by"] == "fix" and rec["candidates"][1]["placed_by"] == "post"
    assert rec["candidates"][0]["eta_s"] < rec["candidates"][1]["eta_s"] < rec["candidates"][2]["eta_s"]

    # One click: dispatch the first candidate; the unit follows its incident.
    r = s.post(f"/api/incidents/{inc_id}/dispatch", unit="KLJ-M2")
    assert r.status_code == 200, r.text
    u = s.get("/api/units/KLJ-M2")
    assert u["status"] == "dispatched" and u["incident_id"] == inc_id
    # Its positions from now on belong to the incident's record.
    for lat in (-7.9826, -7.9825):
        assert post(s, "/api/units/KLJ-M2/position", moto, lat=lat, lon=112.627).status_code == 200
    track = s.get(f"/api/incidents/{inc_id}/track")["positions"]
    assert [p["lat6"] for p in track] == [-7982600, -7982500] and {p["call_sign"] for p in track} == {"KLJ-M2"}
    # The next incident's ranking no longer offers the busy unit.
    rec2 = s.get(f"/api/incidents/{inc_id}/recommendation")
    assert "KLJ-M2" not in [c["call_sign"] for c in rec2["candidates"]]
    assert httpx.post(f"{s.api}/api/incidents/{inc_id}/en_route", headers=moto, timeout=10).status_code == 200
    assert s.get("/api/units/KLJ-M2")["status"] == "en_route"
    assert httpx.post(f"{s.api}/api/incidents/{inc_id}/on_scene", headers=moto, timeout=10).status_code == 200
    assert s.get("/api/units/KLJ-M2")["status"] == "on_scene"
    assert httpx.post(f"{s.api}/api/incidents/{inc_id}/resolve", headers=moto, timeout=10).status_code == 200
    u = s.get("/api/units/KLJ-M2")
    assert u["status"] == "available" and u["incident_id"] is None
    # After the incident, positions are the unit's own, not the incident's.
    assert post(s, "/api/units/KLJ-M2/position", moto, lat=-7.97, lon=112.63).status_code == 200
    assert len(s.get(f"/api/incidents/{inc_id}/track")["positions"]) == 2
    assert len(s.get("/api/units/KLJ-M2/track")["positions"]) >= 4


def test_no_free_unit_in_time_points_at_the_busy_and_the_neighbours(units_stack):
    s = units_stack
    creds = s.add_device("klj-kauman-rw01-rt02", *KAUMAN, kelurahan="Kauman", kecamatan="Klojen", rw=1, rt=2)
    dev = RawDevice(creds, s.broker_port)
    try:
        dev.send(seq=1)
        inc_id = dev.ack()["inc"]
    finally:
        dev.close()
    op = {"Authorization": f"Bearer {s.token()}"}
    for call, status in (("KLJ-M2", "en_route"), ("KLJ-R1", "off_duty")):
        assert post(s, f"/api/units/{call}/status", op, status=status).status_code == 200
    try:
        rec = s.get(f"/api/incidents/{inc_id}/recommendation")
        assert [c["call_sign"] for c in rec["candidates"]] == ["KLJ-FAR"]
        assert not rec["in_time"]
        assert [c["call_sign"] for c in rec["busy"]] == ["KLJ-M2"]
        assert [c["call_sign"] for c in rec["neighbours"]] == ["BLM-R1"]
    finally:
        for call in ("KLJ-M2", "KLJ-R1"):
            post(s, f"/api/units/{call}/status", op, status="available")
