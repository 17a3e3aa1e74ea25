"""The dispatch console in a real browser (Debian's Chromium, driven by Playwright) against
the real gateway, broker and firmware under micropython: a press shows up in the open
queue within 1 s, and every step taken on the page reaches the button as its ack."""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest

import gateway
from gateway import cli as gateway_cli
from gateway.console import geo
from gateway.console.settings import ConsoleSettings
from simulator.firmware import FirmwareDevice
from simulator.stack import BIN, Stack
from tests.conftest import KAUMAN, Webhook

playwright_api = pytest.importorskip("playwright.sync_api")
ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "kata-sandi-uji-1"
USERS = {"op": ("operator", ""), "viewer": ("viewer", ""), "unit2": ("responder", "sabhara-2"),
         "locked": ("operator", "")}


def add_user(stack: Stack, name: str, role: str, unit: str = "") -> None:
    args = ["user", "add", name, "--role", role, "--password-stdin"] + (["--unit", unit] if unit else [])
    env = dict(os.environ, PANIC_CONFIG=str(stack.config))
    subprocess.run([str(BIN / "panic-gateway"), *args], input=PASSWORD + "\n", text=True, check=True,
                   capture_output=True, env=env)


class ConsoleStack(Stack):
    """A stack whose one webhook sink delivers to `webhook`."""

    def __init__(self, state: Path, hook: Webhook) -> None:
        super().__init__(state, webhooks=[hook.url])
        self.webhook = hook


def found(pattern: str, text: str) -> str:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in the page"
    return m.group(1)


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    hook = Webhook()
    stack = ConsoleStack(tmp_path_factory.mktemp("console") / "state", hook)
    stack.up()
    for name, (role, unit) in USERS.items():
        add_user(stack, name, role, unit)
    yield stack
    stack.down()
    hook.server.shutdown()


@pytest.fixture
def device(console, tmp_path):
    started = []

    def make(dev: str, holder: str = "Bapak Sutrisno") -> FirmwareDevice:
        creds = console.add_device(dev, *KAUMAN, kelurahan="Kauman", rw=5, rt=3, holder=holder,
                                   phone="0812-3456-7890", address="Jl. Kauman Gg. III No. 12")
        fw = FirmwareDevice(tmp_path / dev, creds["config"]).start()
        started.append(fw)
        fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 10)
        return fw

    yield make
    for fw in started:
        fw.stop()


def login(browser, stack: Stack, name: str, viewport=None):
    page = browser.new_page(viewport=viewport or {"width": 1500, "height": 900})
    page.goto(f"{stack.api}/console/")
    assert "/console/login" in page.url  # nothing shows before logging in
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert "/login" not in page.url, page.content()[:500]
    return page


def http_login(stack: Stack, name: str, password: str = PASSWORD) -> tuple[httpx.Client, httpx.Response]:
    c = httpx.Client(base_url=stack.api, follow_redirects=False, timeout=10)
    token = found(r'name="csrf" value="([^"]+)"', c.get("/console/login").text)
    r = c.post("/console/login", data={"csrf": token, "username": name, "password": password})
    return c, r


def press(fw: FirmwareDevice) -> tuple[float, str]:
    t_wall = time.time() * 1000
    fw.send("trigger")
    inc = fw.wait_for(lambda e: e["ev"] == "ack" and e["stage"] == "received", 10)["inc"]
    return t_wall, inc


def expect_ack(fw: FirmwareDevice, stage: str) -> dict:
    return fw.wait_for(lambda e: e["ev"] == "ack" and e["stage"] == stage, 5)


# --- without a browser --------------------------------------------------------------------------
def test_nothing_works_without_login(console):
    c = httpx.Client(base_url=console.api, follow_redirects=False, timeout=10)
    for path in ("/console/", "/console/incidents/inc-000000000000", "/console/responder", "/console/devices",
                 "/console/dashboard", "/console/geo.json", "/console/queue.json"):
        r = c.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/console/login"), path
    assert c.get("/console/events").status_code == 401
    assert c.get("/console/queue.json", headers={"Accept": "application/json"}).status_code == 401
    assert c.post("/console/incidents/inc-000000000000/acknowledge").status_code == 401
    assert c.get("/").headers["location"] == "/console/"
    # A forged cookie is no session.
    c.cookies.set("pbh_session", "forged", path="/console")
    assert c.get("/console/").status_code == 303


def test_session_cookie_is_httponly_strict(console):
    _, r = http_login(console, "op")
    assert r.status_code == 303
    cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("pbh_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie


def test_csrf_token_required_for_every_post(console):
    c, r = http_login(console, "op")
    assert r.status_code == 303
    page = c.get("/console/").text
    token = found(r'"csrf": "([^"]+)"', page)
    url = "/console/incidents/inc-000000000000/acknowledge"
    assert c.post(url).status_code == 403
    assert c.post(url, data={"csrf": "wrong"}).status_code == 403
    assert c.post(url, headers={"X-CSRF-Token": token, "Origin": "https://evil.example"}).status_code == 403
    assert c.post(url, headers={"X-CSRF-Token": token}).status_code == 404  # token accepted: no such incident
    assert c.post("/console/logout").status_code == 403
    # Login form too: without the double-submit token nobody can log a browser in from elsewhere.
    fresh = httpx.Client(base_url=console.api, timeout=10)
    r = fresh.post("/console/login", data={"username": "op", "password": PASSWORD})
    assert r.status_code == 403 and "pbh_session" not in r.headers.get("set-cookie", "")


def test_login_rate_limited_per_address_and_user(console):
    for _ in range(5):
        _, r = http_login(console, "locked", "not-the-password")
        assert r.status_code == 401
    _, r = http_login(console, "locked")  # the right password, too late
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert "pbh_session" not in r.headers.get("set-cookie", "")
    _, r = http_login(console, "op")  # another user from the same address is not locked out
    assert r.status_code == 303


def test_maps_read_the_gateways_own_areas_not_the_simulators():
    areas = Path(ConsoleSettings().areas).resolve()
    assert areas.is_relative_to(Path(gateway.__file__).parent) and areas.exists()
    drawn = geo.layers(str(areas), [])
    # The same Klojen the simulator presses buttons in: its kelurahan centres and posts.
    scenario = json.loads((ROOT / "simulator/scenarios/klojen.json").read_text())
    assert [(k["name"], k["lat"], k["lon"]) for k in drawn["kelurahan"]] == \
        sorted((k["name"], k["lat"], k["lon"]) for k in scenario["kelurahan"])
    assert [p["name"] for p in drawn["posts"]] == [p["name"] for p in scenario["posts"]]
    assert drawn["spread_m"] == scenario["spread_m"]


def test_user_list_as_json(tmp_path, capsys):
    cfg = tmp_path / "gateway.toml"
    cfg.write_text('[store]\nkind = "sqlite"\npath = "gateway.db"\n')
    for name, role, unit in (("op", "operator", ""), ("unit2", "responder", "sabhara-2")):
        assert gateway_cli.main(["user", "add", name, "--role", role, "--unit", unit, "--generate",
                                 "--config", str(cfg)]) == 0
    capsys.readouterr()
    assert gateway_cli.main(["user", "list", "--json", "--config", str(cfg)]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"name": "op", "role": "operator", "unit": "", "disabled": 0, "sector": ""},
        {"name": "unit2", "role": "responder", "unit": "sabhara-2", "disabled": 0, "sector": ""}]


# --- in the browser -----------------------------------------------------------------------------
def test_press_appears_within_1s_and_the_page_drives_the_lifecycle(console, browser, device):
    fw = device("klj-kauman-rw05-rt03")
    page = login(browser, console, "op")
    page.wait_for_selector("#live[data-state=open]", timeout=5000)
    # Stamp the moment each row is put on screen, in the page's own clock (same host).
    page.evaluate("""() => { window.__seen = {};
        new MutationObserver(ms => ms.forEach(m => m.addedNodes.forEach(n => {
            if (n.dataset && n.dataset.inc && !(n.dataset.inc in window.__seen)) window.__seen[n.dataset.inc] = Date.now();
        }))).observe(document.getElementById('open-rows'), {childList: true}); }""")
    t_press, inc = press(fw)
    row = page.wait_for_selector(f'#open-rows tr[data-inc="{inc}"]', timeout=1000)
    on_screen = page.evaluate(f"window.__seen['{inc}']")
    took = on_screen - t_press
    print(f"\npress -> row on screen: {took:.0f} ms (press -> received ack at the button: "
          f"{fw.seen('ack', stage='received')[-1]['host_ms'] - t_press:.0f} ms)")
    assert 0 < took < 1000
    text = row.inner_text()
    assert "Bapak Sutrisno" in text and "0812-3456-7890" in text and "Kauman" in text and "RT 03 / RW 05" in text
    assert page.locator("#banner").is_visible()

    row.click()
    page.wait_for_url(f"**/console/incidents/{inc}")
    assert page.locator("#map .leaflet-marker-icon").count() >= 1  # the bundled Leaflet drew the map
    steps = [("acknowledge", "acknowledged", None), ("dispatch", "dispatched", "sabhara-2"),
             ("on_scene", "on_scene", None), ("resolve", "resolved", None)]
    for action, stage, unit in steps:
        if unit:
            page.fill("#unit", unit)
        page.fill("#note", f"uji {action}")
        page.click(f"button[data-action={action}]")
        page.wait_for_url(f"**/console/incidents/{inc}?ok={action}")
        assert expect_ack(fw, stage)["inc"] == inc
        assert f"chip-{stage}" in page.locator(".inc-head .chip").first.get_attribute("class")
    timeline = page.locator(".timeline li").all_inner_texts()
    assert len(timeline) == 6 and "op" in timeline[2] and "uji acknowledge" in timeline[2]
    got = console.get(f"/api/incidents/{inc}")
    assert got["unit"] == "sabhara-2" and got["events"][1]["actor"] == "operator:op"
    # The webhooks fired exactly as for the REST API.
    keys = [p["headers"]["Idempotency-Key"] for p in console.webhook.wait(5) if p["json"]["incident"]["id"] == inc]
    assert keys == [f"{inc}:{s}" for s in ("new", "acknowledged", "dispatched", "on_scene", "resolved")]
    page.close()


def test_viewer_sees_but_cannot_act_and_responder_closes_from_a_phone(console, browser, device):
    fw = device("klj-kauman-rw05-rt04", holder="Ibu Wahyuni")
    _, inc = press(fw)
    viewer = login(browser, console, "viewer")
    viewer.wait_for_selector(f'#open-rows tr[data-inc="{inc}"]')
    assert viewer.locator("button[data-ack]").count() == 0
    viewer.goto(f"{console.api}/console/incidents/{inc}")
    assert viewer.locator("button.act").count() == 0 and viewer.locator(".view-only").is_visible()
    csrf = found(r'"csrf": "([^"]+)"', viewer.goto(f"{console.api}/console/").text())
    status = viewer.evaluate("""([inc, csrf]) => fetch('/console/incidents/' + inc + '/acknowledge',
        {method: 'POST', headers: {'X-CSRF-Token': csrf, 'Accept': 'application/json'}}).then(r => r.status)""",
                             [inc, csrf])
    assert status == 403
    viewer.close()

    phone = login(browser, console, "unit2", viewport={"width": 390, "height": 800})
    assert phone.url.endswith("/console/responder")
    assert console.post(f"/api/incidents/{inc}/dispatch", unit="sabhara-2").status_code == 200
    expect_ack(fw, "dispatched")
    card = phone.wait_for_selector(f'article[data-inc="{inc}"]', timeout=5000)  # live: no reload by hand
    assert "Ibu Wahyuni" in card.inner_text()
    assert phone.locator(f'article[data-inc="{inc}"] a[href^="geo:"]').count() == 1
    phone.click(f'article[data-inc="{inc}"] button[data-action=en_route]')
    phone.wait_for_url("**/console/responder?ok=en_route")
    phone.click(f'article[data-inc="{inc}"] button[data-action=on_scene]')
    phone.wait_for_url("**/console/responder?ok=on_scene")
    assert expect_ack(fw, "on_scene")["inc"] == inc
    assert [e["stage"] for e in console.get(f"/api/incidents/{inc}")["events"]][-2:] == ["en_route", "on_scene"]
    phone.close()
