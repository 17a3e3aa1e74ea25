"""The console with a week of Klojen in it: the SLA figures and charts, and the screenshots.

History is written straight into the gateway's database (a week of presses cannot come
through MQTT: the gateway rejects presses older than a day as stale). The screenshots go
to a temporary folder, or into docs/ with PANIC_SCREENSHOTS=1 (`make screenshots`).
"""
from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest

from gateway import config
from gateway.ids import new_password, new_secret
from gateway.models import Alert, Device
from gateway.store import open_store
from simulator.stack import Stack
from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.gateway.test_console import add_user, login, playwright_api

ROOT = Path(__file__).resolve().parents[2]
MIN = 60_000
# Fictional RT heads and streets for the pictures; kelurahan centres from the scenario file.
NAMES = ["Bapak Sutrisno", "Ibu Wahyuni", "Bapak Hariyanto", "Ibu Sri Rahayu", "Bapak Agus Salim",
         "Ibu Endang Lestari", "Bapak Bambang Purnomo", "Ibu Kartini", "Bapak Joko Susilo",
         "Ibu Siti Aminah", "Bapak Heru Prasetyo", "Ibu Dewi Anggraini", "Bapak Slamet Riyadi",
         "Ibu Nur Hidayati", "Bapak Teguh Santoso", "Ibu Retno Wulandari"]
STREETS = {"Klojen": "Jl. Cokroaminoto", "Rampal Celaket": "Jl. Simpang Panji Suroso",
           "Samaan": "Jl. Kalpataru", "Kiduldalem": "Jl. Zainul Arifin", "Sukoharjo": "Jl. Laks. Martadinata",
           "Kasin": "Jl. Kyai Tamin", "Kauman": "Jl. Kauman", "Oro-oro Dowo": "Jl. Brigjend Slamet Riadi",
           "Bareng": "Jl. Bareng Raya", "Gadingkasri": "Jl. Bondowoso", "Penanggungan": "Jl. Bogor"}
# Median minutes from press to on scene per kelurahan: farther from the posts, slower.
PACE = {"Klojen": 3.8, "Rampal Celaket": 4.6, "Samaan": 5.2, "Kiduldalem": 4.0, "Sukoharjo": 6.4,
        "Kasin": 7.6, "Kauman": 4.2, "Oro-oro Dowo": 5.0, "Bareng": 6.0, "Gadingkasri": 6.8, "Penanggungan": 8.1}


def seed(cfg_path: Path) -> dict:
    rnd = random.Random(5)
    store = open_store(config.load(cfg_path))
    areas = json.loads((ROOT / "simulator/scenarios/klojen.json").read_text())["kelurahan"]
    now = time.time_ns() // 1_000_000
    devices: list[Device] = []
    by_kel: dict[str, list[Device]] = {}
    n = 0
    for k in areas:
        for rw in (1, 3, 5):
            for rt in (2, 4):
                slug = k["name"].lower().replace(" ", "").replace("-", "")
                d = Device(id=f"klj-{slug}-rw{rw:02d}-rt{rt:02d}", secret=new_secret(), mqtt_password=new_password(),
                           kelurahan=k["name"], kecamatan="Klojen", rw=rw, rt=rt,
                           lat6=int((k["lat"] + rnd.uniform(-0.0035, 0.0035)) * 1e6),
                           lon6=int((k["lon"] + rnd.uniform(-0.0035, 0.0035)) * 1e6),
                           holder=NAMES[n % len(NAMES)], phone=f"0812-{rnd.randint(1000, 9999)}-{rnd.randint(1000, 9999)}",
                           address=f"{STREETS[k['name']]} No. {rnd.randint(2, 140)}, RT {rt:02d}/RW {rw:02d}",
                           created_ms=now - 30 * 86400_000)
                n += 1
                devices.append(d)
                by_kel.setdefault(k["name"], []).append(d)
    store.add_devices(devices)
    seed_health(store, devices, now, rnd)
    seq = [0]

    def alert(d: Device, press: int, kind: str = "panic") -> str:
        seq[0] += 1
        a = Alert(id=f"{d.id}:1:{seq[0]}", dev=d.id, boot=1, seq=seq[0], kind=kind, t=press, age=0,
                  lat6=d.lat6, lon6=d.lon6, acc=25, src="fixed", batt=rnd.randint(35, 100),
                  rssi=rnd.randint(-80, -50), ref=None, received_ms=press + rnd.randint(250, 1500), body="{}")
        inc = store.ingest([a])[0].incident
        assert inc is not None
        return inc.id

    def walk(inc: str, press: int, steps: list[tuple], unit: str) -> None:
        for action, at, actor, note in steps:
            store.transition(inc, action, actor, at, role=actor.split(":")[0], note=note,
                             unit=unit if action == "dispatch" else None)

    # A week of closed incidents.
    for day in range(7, -1, -1):
        for _ in range(rnd.randint(9, 14)):
            kel = rnd.choice(list(by_kel))
            d = rnd.choice(by_kel[kel])
            press = now - day * 86400_000 - rnd.randint(20 * MIN, 20 * 60 * MIN if day else 90 * MIN)
            if press > now - 20 * MIN:
                continue
            inc = alert(d, press)
            ack = press + rnd.randint(4_000, 50_000)
            if rnd.random() < 0.07:
                walk(inc, press, [("acknowledge", ack, "operator:bripka.andi", None),
                                  ("false_alarm", ack + 3 * MIN, "operator:bripka.andi", "anak bermain tombol")], "")
                continue
            disp = ack + rnd.randint(10_000, 70_000)
            scene = press + int(PACE[kel] * MIN * rnd.lognormvariate(0, 0.3))
            scene = max(scene, disp + 60_000)
            unit = f"sabhara-{rnd.randint(1, 6)}"
            walk(inc, press, [("acknowledge", ack, "operator:bripka.andi", None),
                              ("dispatch", disp, "operator:bripka.andi", None),
                              ("on_scene", scene, f"responder:{unit}", None),
                              ("resolve", scene + rnd.randint(8, 40) * MIN, f"responder:{unit}", "aman")], unit)
    # A device with a record of false alarms.
    flaky = by_kel["Penanggungan"][0]
    for k in (3, 9):
        inc = alert(flaky, now - k * 86400_000)
        walk(inc, 0, [("false_alarm", now - k * 86400_000 + 2 * MIN, "operator:bripka.andi", "tidak ada kejadian")], "")

    # What is open right now, at every point of the 10 minutes.
    op, s = "operator:bripka.andi", 1000
    open_now = {}
    d = by_kel["Kiduldalem"][1]
    open_now["new"] = alert(d, now - 35 * s)
    d = by_kel["Samaan"][2]
    open_now["escalated"] = inc = alert(d, now - 190 * s)
    store.mark_escalated(inc, now - 100 * s)
    d = by_kel["Oro-oro Dowo"][0]
    open_now["acknowledged"] = inc = alert(d, now - 340 * s)
    walk(inc, 0, [("acknowledge", now - 310 * s, op, "RT melapor pencurian motor")], "")
    d = by_kel["Kasin"][3]
    open_now["dispatched"] = inc = alert(d, now - 505 * s)
    walk(inc, 0, [("acknowledge", now - 490 * s, op, "Pelapor: ada perkelahian di gang"),
                  ("dispatch", now - 455 * s, op, "Unit terdekat dari Polsek Klojen")], "sabhara-1")
    store.transition(inc, "en_route", "responder:sabhara-1", now - 440 * s, role="responder")
    open_now["late"] = inc = alert(flaky, now - 665 * s)
    walk(inc, 0, [("acknowledge", now - 650 * s, op, None),
                  ("dispatch", now - 600 * s, op, None)], "sabhara-3")
    d = by_kel["Kauman"][0]
    open_now["on_scene"] = inc = alert(d, now - 15 * MIN)
    walk(inc, 0, [("acknowledge", now - 14 * MIN - 40 * s, op, None),
                  ("dispatch", now - 14 * MIN, op, None),
                  ("on_scene", now - 8 * MIN - 10 * s, "responder:sabhara-2", "Petugas tiba, situasi terkendali")], "sabhara-2")
    d = by_kel["Bareng"][4]
    open_now["drill"] = alert(d, now - 80 * s, kind="test")
    store.close()
    return open_now


def seed_health(store, devices: list[Device], now: int, rnd: random.Random) -> None:
    """Status reports as the buttons would send them, through the gateway's health tracking
    when this gateway has it; without it the devices view shows the last alerts."""
    if not hasattr(store, "record_status"):
        return
    kw = dict(retained=False, heartbeat_s=60, silent_factor=2.5, low_battery_pct=20, backlog_min=3)
    try:
        for n, d in enumerate(devices):
            state = "offline" if n % 13 == 5 else "sleeping" if n % 11 == 7 else "online"
            at = now - (15 * MIN if n % 17 == 3 else rnd.randint(1, 50) * 1000)
            batt = 12 if n % 19 == 4 else rnd.randint(45, 100)
            store.record_status(d.id, {"v": 1, "dev": d.id, "state": state, "fw": "1.0.0", "boot": 3,
                                       "up": 86400, "batt": batt, "rssi": rnd.randint(-82, -48), "outbox": 0},
                                at, **kw)
        store.sweep_silent(now)
    except TypeError:  # that interface changed: the picture simply shows fewer states
        pass


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("screens") / "state")
    stack.up()
    add_user(stack, "bripka.andi", "operator")
    add_user(stack, "sabhara-1", "responder", "sabhara-1")
    open_now = seed(stack.config)
    yield stack, open_now
    stack.down()


def test_dashboard_and_screenshots(seeded, tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    stack, open_now = seeded
    out = ROOT / "docs" if os.environ.get("PANIC_SCREENSHOTS") == "1" else tmp_path
    shots = {}
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = login(browser, stack, "bripka.andi", viewport={"width": 1600, "height": 860})
        page.wait_for_selector(f'#open-rows tr[data-inc="{open_now["late"]}"]')
        assert page.locator("#open-rows tr").count() == 7
        assert page.locator(f'#open-rows tr[data-inc="{open_now["late"]}"] .age-over').count() == 1
        assert page.locator(f'#open-rows tr[data-inc="{open_now["dispatched"]}"] .age-red').count() == 1
        assert page.locator(f'#open-rows tr[data-inc="{open_now["acknowledged"]}"] .age-amber').count() == 1
        assert page.locator(f'#open-rows tr[data-inc="{open_now["escalated"]}"] .chip-esc').count() == 1
        assert page.locator(f'#open-rows tr[data-inc="{open_now["late"]}"] .chip-false').count() == 1
        page.wait_for_selector("#live[data-state=open]")
        page.screenshot(path=str(out / "console-queue.png"))
        shots["queue"] = out / "console-queue.png"

        page.goto(f"{stack.api}/console/incidents/{open_now['dispatched']}")
        page.wait_for_selector(".kel-label")
        page.wait_for_timeout(300)  # let Leaflet settle its labels
        assert page.locator(".timeline li").count() == 5
        page.screenshot(path=str(out / "console-incident.png"))
        shots["incident"] = out / "console-incident.png"

        page.goto(f"{stack.api}/console/dashboard")
        assert page.locator("svg.chart").count() >= 2
        assert "Penanggungan" in page.locator("table.sla").inner_text()
        page.screenshot(path=str(out / "console-dashboard.png"), full_page=True)
        shots["dashboard"] = out / "console-dashboard.png"

        page.goto(f"{stack.api}/console/devices?kelurahan=Kasin")
        assert page.locator("tr.dev-row").count() == 6
        page.goto(f"{stack.api}/console/devices")
        page.screenshot(path=str(out / "console-devices.png"))
        shots["devices"] = out / "console-devices.png"

        page.goto(f"{stack.api}/console/lang/en?next=/console/dashboard")
        assert "Today" in page.content()
        page.close()

        phone = login(browser, stack, "sabhara-1", viewport={"width": 390, "height": 760})
        phone.wait_for_selector(f'article[data-inc="{open_now["dispatched"]}"]')
        phone.screenshot(path=str(out / "console-responder.png"))
        shots["responder"] = out / "console-responder.png"
        browser.close()
    for name, path in shots.items():
        assert path.stat().st_size > 10_000, name
