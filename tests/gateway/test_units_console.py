"""Units in the console, in Debian's Chromium against the real gateway: the responder's phone sends
its Geolocation fix over the session, the incident page recommends the nearest free unit and
dispatches it with one click, the unit board shows status and fix age (stale greyed), and the
panel says so when no free unit can arrive in time. Screenshots go to docs/ with PANIC_SCREENSHOTS=1."""
from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from protocol import v1 as protocol
from simulator.stack import Stack
from tests.conftest import KAUMAN, wait_until
from tests.devices import RawDevice
from tests.gateway.test_console import add_user, http_login, login

ROOT = Path(__file__).resolve().parents[2]
UNITS = (("KLJ-M2", "motorbike", "klojen", "Polsek Klojen", "-7.979", "112.633"),
         ("KLJ-R1", "car", "klojen", "Polsek Klojen", "-7.979", "112.633"),
         ("PRT-R3", "car", "polresta", "Polresta Malang Kota", "-7.970", "112.631"),
         ("BLM-R1", "car", "blimbing", "Polsek Blimbing", "-7.955", "112.645"))


@pytest.fixture(scope="module")
def ustack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("units-console") / "state")
    s.up()
    for call, kind, sector, post, lat, lon in UNITS:
        s.cli("unit", "add", call, "--kind", kind, "--sector", sector, "--post", post, "--lat", lat, "--lon", lon)
    add_user(s, "op", "operator")
    add_user(s, "moto2", "responder", "KLJ-M2")
    add_user(s, "car1", "responder", "KLJ-R1")
    yield s
    s.down()


def press(stack: Stack, dev: str) -> str:
    creds = stack.add_device(dev, *KAUMAN, kelurahan="Kauman", kecamatan="Klojen", rw=5, rt=3,
                             holder="Bapak Sutrisno", phone="0812-3456-7890", address="Jl. Kauman Gg. III No. 12")
    d = RawDevice(creds, stack.broker_port)
    try:
        d.send(seq=1)
        return d.ack()["inc"]
    finally:
        d.close()


def phone(browser, stack: Stack, name: str, lat: float, lon: float):
    ctx = browser.new_context(viewport={"width": 390, "height": 760}, geolocation={"latitude": lat, "longitude": lon,
                                                                                   "accuracy": 9},
                              permissions=["geolocation"])
    page = ctx.new_page()
    page.goto(f"{stack.api}/console/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", "kata-sandi-uji-1")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    if "/responder" not in page.url:
        page.goto(f"{stack.api}/console/responder")
    return ctx, page


def test_phone_position_recommendation_one_click_dispatch_and_board(ustack, browser, tmp_path):
    s = ustack
    out = ROOT / "docs" if os.environ.get("PANIC_SCREENSHOTS") == "1" else tmp_path
    inc = press(s, "klj-kauman-rw05-rt03")

    # The motorbike's phone, round the corner from the press: its fix reaches the registry.
    ctx, ph = phone(browser, s, "moto2", -7.9828, 112.6273)
    try:
        ph.wait_for_selector("#phone-unit")
        wait_until(lambda: s.get("/api/units/KLJ-M2")["lat6"] == -7982800, timeout=15, what="the phone's first fix")
        ph.wait_for_selector("#gps.gps-on")
        ph.screenshot(path=str(out / "console-responder-unit.png"))
    finally:
        ctx.close()

    page = login(browser, s, "op")
    page.goto(f"{s.api}/console/incidents/{inc}")
    panel = page.locator("#recommend")
    assert panel.get_attribute("data-in-time") == "1"
    rows = panel.locator("tr.rec-row")
    # Nearest first by ETA: the motorbike by its fresh fix, then the Polsek's car, then Polresta's.
    assert [rows.nth(i).get_attribute("data-unit") for i in range(rows.count())] == ["KLJ-M2", "KLJ-R1", "PRT-R3"]
    assert "GPS" in rows.nth(0).inner_text() and "km" in rows.nth(0).inner_text()
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / "console-recommend.png"))
    page.click('button.rec-send[data-unit="KLJ-M2"]')
    page.wait_for_load_state()
    assert s.get(f"/api/incidents/{inc}")["unit"] == "KLJ-M2"
    sent = [e for e in s.get(f"/api/incidents/{inc}")["events"] if e["stage"] == "dispatched"]
    assert sent[0]["note"].startswith("recommended (nearest #1): ETA ") and sent[0]["note"].endswith("by fix")
    assert s.get(f"/api/incidents/{inc}")["state"] == "dispatched"
    assert page.locator("#recommend tr.rec-row[data-unit=KLJ-M2]").count() == 0  # no longer free

    page.goto(f"{s.api}/console/units")
    board = page.locator("#unit-board")
    assert board.locator("tr[data-unit=KLJ-M2]").get_attribute("data-status") == "dispatched"
    assert inc in board.locator("tr[data-unit=KLJ-M2]").inner_text()
    # Never reported a fix: greyed as stale, drawn at its post.
    assert "unit-stale" in (board.locator("tr[data-unit=BLM-R1]").get_attribute("class") or "")
    assert "unit-stale" not in (board.locator("tr[data-unit=KLJ-M2]").get_attribute("class") or "")
    page.wait_for_selector(".unit-pin")
    assert page.locator(".unit-pin").count() == len(UNITS)
    assert page.locator(".unit-pin.stale").count() == len(UNITS) - 1
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / "console-units.png"))
    # Sector filter.
    page.goto(f"{s.api}/console/units?sector=blimbing")
    assert page.locator("#unit-board tr.unit-row").count() == 1
    # Both languages.
    page.goto(f"{s.api}/console/lang/en?next=/console/units")
    assert "Unit board" in page.content() and "DISPATCHED" in page.content()
    page.goto(f"{s.api}/console/lang/id?next=/console/units")
    assert "Papan unit" in page.content() and "DIKIRIM" in page.content()
    page.close()


def test_no_free_unit_in_time_says_so(ustack, browser):
    s = ustack
    inc = press(s, "klj-kauman-rw05-rt04")
    op = {"Authorization": f"Bearer {s.token()}"}
    for call in ("KLJ-M2", "KLJ-R1", "PRT-R3"):
        assert httpx.post(f"{s.api}/api/units/{call}/status", json={"status": "off_duty"}, headers=op,
                          timeout=10).status_code == 200
    try:
        page = login(browser, s, "op")
        page.goto(f"{s.api}/console/incidents/{inc}")
        panel = page.locator("#recommend")
        assert panel.get_attribute("data-in-time") == "0"
        assert panel.locator(".rec-none").count() == 1
        # The neighbouring sector's free car is offered, with its own one-click dispatch.
        assert panel.locator('button.rec-send[data-unit="BLM-R1"]').count() == 1
        page.goto(f"{s.api}/console/lang/en?next=/console/incidents/{inc}")
        assert "No free unit" in page.locator("#recommend").inner_text()
        page.close()
    finally:
        for call in ("KLJ-M2", "KLJ-R1", "PRT-R3"):
            httpx.post(f"{s.api}/api/units/{call}/status", json={"status": "available"}, headers=op, timeout=10)


def test_phone_reports_need_the_session_csrf_and_own_unit(ustack):
    s = ustack
    c, r = http_login(s, "car1")
    assert r.status_code == 303
    page = c.get("/console/responder").text
    csrf = page.split('data-csrf="', 1)[1].split('"', 1)[0]
    ok = c.post("/console/units/KLJ-R1/position", json={"lat": -7.98, "lon": 112.63},
                headers={"X-CSRF-Token": csrf, "Origin": s.api})
    assert ok.status_code == 200, ok.text
    assert c.post("/console/units/KLJ-R1/position", json={"lat": -7.98, "lon": 112.63},
                  headers={"Origin": s.api}).status_code == 403
    # Another unit's position: refused.
    assert c.post("/console/units/KLJ-M2/position", json={"lat": -7.98, "lon": 112.63},
                  headers={"X-CSRF-Token": csrf, "Origin": s.api}).status_code == 403
    bad = c.post("/console/units/KLJ-R1/position", json={"lat": "north"},
                 headers={"X-CSRF-Token": csrf, "Origin": s.api, "Accept": "application/json"})
    assert bad.status_code == 400
    # Off duty from the phone, and back.
    r = c.post("/console/units/KLJ-R1/status", data={"csrf": csrf, "status": "off_duty"}, headers={"Origin": s.api})
    assert r.status_code == 303 and s.get("/api/units/KLJ-R1")["status"] == "off_duty"
    r = c.post("/console/units/KLJ-R1/status", data={"csrf": csrf, "status": "on_scene"}, headers={"Origin": s.api})
    assert r.status_code == 400
    c.post("/console/units/KLJ-R1/status", data={"csrf": csrf, "status": "available"}, headers={"Origin": s.api})
    assert s.get("/api/units/KLJ-R1")["status"] == "available"


def test_cancel_request_call_back_and_confirm_in_the_browser(ustack, browser, tmp_path):
    s = ustack
    out = ROOT / "docs" if os.environ.get("PANIC_SCREENSHOTS") == "1" else tmp_path
    creds = s.add_device("klj-kauman-rw05-rt05", *KAUMAN, kelurahan="Kauman", kecamatan="Klojen", rw=5, rt=5,
                         holder="Ibu Wahyuni", phone="0812-7777-1234", address="Jl. Kauman No. 7")
    d = RawDevice(creds, s.broker_port)
    try:
        d.send(seq=1)
        inc = d.ack()["inc"]
        d.send(seq=2, kind="cancel", ref=f"{d.dev}:1:1")
        assert d.ack()["stage"] == "received"  # the button's cancel is answered; the incident stays open
    finally:
        d.close()
    page = login(browser, s, "op")
    # The queue marks it, so the desk knows to call back.
    page.wait_for_selector(f'#open-rows tr[data-inc="{inc}"] .chip-cancel-req')
    page.goto(f"{s.api}/console/lang/en?next=/console/incidents/{inc}")
    assert page.locator("#cancel-request").count() == 1
    assert page.locator("#confirm-cancel").count() == 1
    assert page.locator("button.act[data-action=verify]").count() == 0  # its own panel, not a bare button
    page.select_option("#verify-outcome", "no_answer")
    page.click("#verify-send")
    page.wait_for_load_state()
    assert "No answer" in page.locator("#verified").inner_text()
    page.click("#confirm-cancel")  # refused: the call-back did not find the holder safe
    page.wait_for_load_state()
    assert "call the holder back" in page.content()
    assert s.get(f"/api/incidents/{inc}")["state"] == "new"
    page.select_option("#verify-outcome", "safe")
    page.fill("#verify-note", "her grandson pressed it")
    page.click("#verify-send")
    page.wait_for_load_state()
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / "console-verify.png"))
    page.click("#confirm-cancel")
    page.wait_for_load_state()
    got = s.get(f"/api/incidents/{inc}")
    assert got["state"] == "cancelled" and got["verify_outcome"] == "safe"
    assert [e["stage"] for e in got["events"]][-4:] == ["cancel_requested", "verify", "verify", "cancelled"]
    assert got["events"][-2]["note"] == "safe: her grandson pressed it"
    page.close()


def test_incident_map_shows_the_units_and_the_sent_units_track(ustack, browser):
    s = ustack
    inc = press(s, "klj-kauman-rw05-rt06")
    op = {"Authorization": f"Bearer {s.token()}"}
    assert httpx.post(f"{s.api}/api/incidents/{inc}/dispatch", json={"unit": "KLJ-R1"}, headers=op,
                      timeout=10).status_code == 200
    for lat in (-7.9795, -7.9805, -7.9815):
        assert httpx.post(f"{s.api}/api/units/KLJ-R1/position", json={"lat": lat, "lon": 112.630}, headers=op,
                          timeout=10).status_code == 200
    try:
        page = login(browser, s, "op")
        page.goto(f"{s.api}/console/incidents/{inc}")
        page.wait_for_selector(".unit-pin")
        assert page.locator("path.leaflet-interactive[stroke-dasharray]").count() >= 1  # the track
        assert any("KLJ-R1" in t for t in page.locator(".leaflet-tooltip").all_inner_texts())
        track = page.evaluate(f"fetch('/console/incidents/{inc}/track.json', {{headers: {{Accept: 'application/json'}}}})"
                              ".then(r => r.json())")
        assert [p["lat6"] for p in track["positions"]] == [-7979500, -7980500, -7981500]
        page.close()
        # Another unit's responder does not see this incident's map data.
        c, _ = http_login(s, "moto2")
        assert c.get(f"/console/incidents/{inc}/track.json", headers={"Accept": "application/json"}).status_code == 404
    finally:
        httpx.post(f"{s.api}/api/incidents/{inc}/resolve", headers=op, timeout=10)


def test_incident_map_draws_the_buttons_own_track(ustack, browser, tmp_path):
    s = ustack
    out = ROOT / "docs" if os.environ.get("PANIC_SCREENSHOTS") == "1" else tmp_path
    dev = "klj-kauman-rw05-rt07"
    creds = s.add_device(dev, *KAUMAN, kelurahan="Kauman", kecamatan="Klojen", rw=5, rt=7)
    d = RawDevice(creds, s.broker_port)
    try:
        d.send(seq=1)
        inc = d.ack()["inc"]
        for i, lat6 in enumerate((-7982900, -7983300)):  # the holder is moving south
            d.publish(json.dumps({"v": 1, "dev": dev, "state": "online", "boot": 1, "up": 5,
                                  "pos": {"lat6": lat6, "lon6": 112627300, "acc": 6, "t": None}}).encode(),
                      topic=protocol.status_topic(dev))
            wait_until(lambda n=i + 1: len(s.get(f"/api/incidents/{inc}")["track"]) == n, 10, what="a track point")
    finally:
        d.close()
    page = login(browser, s, "op")
    try:
        page.goto(f"{s.api}/console/incidents/{inc}")
        page.wait_for_selector("path.leaflet-interactive[stroke='#c0392b'][stroke-dasharray]")
        assert any("Button's last position" in t or "Posisi terakhir tombol" in t
                   for t in page.locator(".leaflet-tooltip").all_inner_texts())
        page.screenshot(path=str(out / "console-button-track.png"))
    finally:
        page.close()
