"""Sectors on the real gateway: a Polsek's desk account reads and acts on its own kecamatan's
incidents only (queue, incident page, actions, dashboard, unit board); the command centre
(Polresta, or no sector) reads every sector."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from simulator.stack import BIN, Stack
from tests.devices import RawDevice
from tests.gateway.test_console import PASSWORD, found, http_login

BLIMBING = (-7955000, 112645000)
KLOJEN = (-7982600, 112627000)


@pytest.fixture(scope="module")
def sectors(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("sectors") / "state")
    s.up()
    incs = {}
    for dev, (lat6, lon6), kel, kec in (("klj-kauman-rw01-rt01", KLOJEN, "Kauman", "Klojen"),
                                        ("blm-polehan-rw01-rt01", BLIMBING, "Polehan", "Blimbing")):
        creds = s.add_device(dev, lat6, lon6, kelurahan=kel, kecamatan=kec, rw=1, rt=1)
        d = RawDevice(creds, s.broker_port)
        try:
            d.send(seq=1)
            incs[kec] = d.ack()["inc"]
        finally:
            d.close()
    for call, sector in (("KLJ-R1", "klojen"), ("BLM-R1", "blimbing"), ("PRT-R1", "polresta")):
        s.cli("unit", "add", call, "--kind", "car", "--sector", sector, "--lat", "-7.97", "--lon", "112.63")
    for name, sector in (("op-klojen", "klojen"), ("op-polresta", "polresta"), ("op-city", "")):
        subprocess.run([str(BIN / "panic-gateway"), "user", "add", name, "--role", "operator", "--password-stdin",
                        *(["--sector", sector] if sector else [])], input=PASSWORD + "\n", text=True, check=True,
                       capture_output=True, env=dict(os.environ, PANIC_CONFIG=str(s.config)))
    yield s, incs
    s.down()


def test_user_list_shows_the_sector(sectors):
    s, _ = sectors
    users = {u["name"]: u for u in json.loads(s.cli("user", "list", "--json").stdout)}
    assert users["op-klojen"]["sector"] == "klojen" and users["op-city"]["sector"] == ""
    bad = s.cli("user", "add", "x-op", "--role", "operator", "--sector", "atlantis", "--generate", check=False)
    assert bad.returncode != 0


def test_a_polsek_desk_reads_and_acts_on_its_own_sector_only(sectors):
    s, incs = sectors
    klj = http_login(s, "op-klojen")[0]
    queue = {i["id"] for i in klj.get("/console/queue.json").json()["incidents"]}
    assert queue == {incs["Klojen"]}
    assert klj.get(f"/console/incidents/{incs['Klojen']}").status_code == 200
    assert klj.get(f"/console/incidents/{incs['Blimbing']}").status_code == 404
    page = klj.get(f"/console/incidents/{incs['Klojen']}").text
    csrf = found(r'name="csrf" value="([^"]+)"', page)
    r = klj.post(f"/console/incidents/{incs['Blimbing']}/acknowledge", data={"csrf": csrf},
                 headers={"Origin": s.api, "Accept": "application/json"})
    assert r.status_code == 404
    assert s.get(f"/api/incidents/{incs['Blimbing']}")["state"] == "new"
    board = klj.get("/console/units.json", headers={"Accept": "application/json"}).json()
    assert {u["call_sign"] for u in board["units"]} == {"KLJ-R1", "PRT-R1"}
    other = klj.get("/console/units.json?sector=blimbing", headers={"Accept": "application/json"}).json()
    assert other["units"] == []
    dash = klj.get("/console/dashboard").text
    assert "Kauman" in dash and "Polehan" not in dash
    # The dashboard's sector filter narrows a view, never widens it.
    assert "Kauman" not in klj.get("/console/dashboard?sector=blimbing").text
    city = http_login(s, "op-city")[0]
    narrowed = city.get("/console/dashboard?sector=blimbing").text
    assert "Polehan" in narrowed and "Kauman" not in narrowed
    for name in ("op-polresta", "op-city"):
        c = http_login(s, name)[0]
        assert {i["id"] for i in c.get("/console/queue.json").json()["incidents"]} == set(incs.values())
        assert c.get(f"/console/incidents/{incs['Blimbing']}").status_code == 200
        assert len(c.get("/console/units.json", headers={"Accept": "application/json"}).json()["units"]) == 3
        assert "Polehan" in c.get("/console/dashboard").text


def test_a_polsek_desk_lists_and_maps_only_its_own_sectors_buttons(sectors):
    s, _ = sectors
    klj = http_login(s, "op-klojen")[0]
    page = klj.get("/console/devices").text
    assert "klj-kauman-rw01-rt01" in page and "blm-polehan-rw01-rt01" not in page
    assert [d[0] for d in klj.get("/console/geo.json").json()["devices"]] == ["klj-kauman-rw01-rt01"]
    city = http_login(s, "op-city")[0]
    assert "blm-polehan-rw01-rt01" in city.get("/console/devices").text
    assert len(city.get("/console/geo.json").json()["devices"]) == 2
