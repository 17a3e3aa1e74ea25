"""The console's Armada page (gateway/console/pages/fleet.py): a halted rollout's reason at
the top, every button's version, slot, place in the rollout and last result; operators and
admins only. The screenshot goes into docs/ with PANIC_SCREENSHOTS=1, as the others do."""
from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest

from gateway import config
from gateway import fleet as fleet_service
from gateway.domain import rollout
from gateway.ids import new_password, new_secret
from gateway.models import Device
from gateway.store import open_store
from simulator.stack import Stack
from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.gateway.test_console import add_user, http_login, login, playwright_api
from tests.gateway.test_console_screens import NAMES, seed_health

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = '{"v":1,"fw":"1.3.0","seq":13,"size":9,"sha256":"ab","key":"k1"}'


def seed(cfg_path: Path) -> str:
    """30 Klojen buttons; release 13 at 10 %, its canaries: two rolled back, one offline on
    trial, one kept; the rule has halted it. Returns the halt reason."""
    rnd = random.Random(16)
    cfg = config.load(cfg_path)
    store = open_store(cfg)
    areas = json.loads((ROOT / "simulator/scenarios/klojen.json").read_text())["kelurahan"]
    now = time.time_ns() // 1_000_000
    devices = []
    for n in range(30):
        k = areas[n % len(areas)]
        slug = k["name"].lower().replace(" ", "").replace("-", "")
        devices.append(Device(id=f"klj-{slug}-rw{1 + n // 11:02d}-rt{1 + n % 7:02d}", secret=new_secret(),
                              mqtt_password=new_password(), kelurahan=k["name"], rw=1 + n // 11, rt=1 + n % 7,
                              lat6=int(k["lat"] * 1e6), lon6=int(k["lon"] * 1e6), holder=NAMES[n % len(NAMES)],
                              created_ms=now - 86400_000))
    store.add_devices(devices)
    seed_health(store, devices, now, rnd)
    for d in devices:  # every button answered a locate once: its version and slot are known
        n = store.add_command(d.id, "locate", {}, by="admin:budi", at_ms=now - 3600_000)
        store.record_result(d.id, {"v": 1, "dev": d.id, "n": n, "op": "locate", "ok": True, "err": None,
                                   "fw": "1.2.0", "slot": "factory"}, now - 3599_000)
    store.add_release(seq=13, fw="1.3.0", manifest=MANIFEST.encode(), signature=b"s", bundle=b"PBF1", sha256="ab",
                      by="rm", at_ms=now - 1800_000)
    store.start_rollout(13, 10, by="admin:siti", at_ms=now - 1700_000)
    wave = rollout.wave([d.id for d in devices], 13, 10)
    outcomes = [("rolled_back", "crash"), ("rolled_back", "no_ack"), ("trial", None), ("kept", None)]
    for dev, (stage, err) in zip(wave, outcomes, strict=False):
        n = store.add_command(dev, "ota", {"m": MANIFEST, "sig": "x"}, by="rollout:admin:siti", at_ms=now - 1600_000)
        for s in ("accepted", "downloaded", "trial", stage):
            ok = s != "rolled_back"
            fw, slot = ("1.3.0", "a") if s in ("trial", "kept") else ("1.2.0", "factory")
            at = now - (1500_000 if s != "trial" or stage != "trial" else 1400_000)
            store.record_result(dev, {"v": 1, "dev": dev, "n": n, "op": "ota", "ok": ok, "err": None if ok else err,
                                      "stage": s, "rel": 13, "fw": fw, "slot": slot}, at)
        if stage == "trial":
            store.record_status(dev, {"v": 1, "dev": dev, "state": "offline"}, now - 1400_000, retained=False,
                                heartbeat_s=60, silent_factor=2.5, low_battery_pct=20, backlog_min=3)
    st = fleet_service.status(store, cfg)
    t = rollout.tally([rollout.Outcome(d["dev"], d["rollout"], d["rollout_why"]) for d in st["devices"]
                       if d["rollout"]])
    why = rollout.halt_reason(t, fleet_service.rules(cfg))
    assert why is not None
    store.set_rollout_state(13, "halted", why, at_ms=now - 1300_000)
    store.close()
    return why


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("fleet") / "state")
    stack.init()
    stack.set_config("fleet", workers=False)  # the page only reads; no worker to move the seeded rollout
    stack.start_broker()
    stack.start_gateway()
    add_user(stack, "bripka.andi", "operator")
    add_user(stack, "sabhara-1", "responder", "sabhara-1")
    add_user(stack, "tamu", "viewer")
    why = seed(stack.config)
    yield stack, why
    stack.down()


def test_the_page_shows_the_halt_first_and_is_for_the_desk(seeded):
    stack, why = seeded
    op = http_login(stack, "bripka.andi")[0]
    page = op.get("/console/fleet").text
    assert page.index("DIHENTIKAN") < page.index("<table")
    assert why.split(" (")[0] in page and "2 rolled back" in why and "1 offline during trial" in why
    assert page.count('class="fleet-row fleet-failed"') == 3 and "1.3.0" in page and "pabrik" in page
    assert ">Armada<" in page
    for name in ("sabhara-1", "tamu"):
        c = http_login(stack, name)[0]
        assert c.get("/console/fleet").status_code == 403
        assert ">Armada<" not in c.get("/console/devices").text


def test_screenshot(seeded, tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    stack, _ = seeded
    out = ROOT / "docs" if os.environ.get("PANIC_SCREENSHOTS") == "1" else tmp_path
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = login(browser, stack, "bripka.andi", viewport={"width": 1500, "height": 900})
        page.goto(f"{stack.api}/console/fleet")
        assert page.locator("tr.fleet-row").count() == 30
        assert page.locator(".fleet-halted").is_visible()
        page.screenshot(path=str(out / "console-fleet.png"))
        browser.close()
    assert (out / "console-fleet.png").stat().st_size > 10_000


def test_every_word_of_the_page_is_in_both_languages():
    import re

    from gateway.console.i18n import WORDS
    from protocol.fleet import SLOTS
    text = (ROOT / "gateway/console/templates/fleet.html").read_text()
    keys = set(re.findall(r"t\('([a-z_]+)'[,)]", text))  # literal keys; the prefixed ones below
    keys |= {f"rollout_{s}" for s in rollout.STATES} | {f"slot_{s}" for s in SLOTS}
    keys |= {f"place_{s}" for s in ("waiting", "sent", "ok", "failed", "later", "skipped", "none")}
    missing = sorted(k for k in keys if k not in WORDS or not all(WORDS[k]))
    assert not missing
