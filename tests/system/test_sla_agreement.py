"""One SLA answer: the CLI report, GET /api/report, the console dashboard and the simulator's
report state the same p50, p90 and share within the promise for the same week of incidents.

The week is seeded into a real store and read back by a real gateway: several kelurahan and
a device without one, cancels from the button, false alarms before and after an officer
arrived, unsynced clocks (press time from `age`), incidents never reached, drills, a press
held through an outage across the start of the period and one received before it. The
promise is set to 9 minutes in `[gateway] sla_s`, so a figure that ignored the one setting
would differ."""
from __future__ import annotations

import html
import json
import random
import re
import time
from datetime import datetime, timedelta

import httpx
import pytest

from gateway import config
from gateway.console import accounts, queries
from gateway.console import settings as console_settings
from gateway.console import sla as console_sla
from gateway.console.render import WIB
from gateway.models import Alert, Device
from gateway.store import open_store
from simulator import report as sim_report
from tests.gateway.test_gateway_support import custom_stack

MIN = 60_000
DAY = 86_400_000
SLA_S = 540
KELURAHAN = ("Kauman", "Samaan", "Kasin", "Oro-oro Dowo", "Bareng")


def _seed(store, now: int, since: int) -> tuple[str, str]:
    rnd = random.Random(11)
    devs = [Device(id=f"klj-{k.lower().replace(' ', '').replace('-', '')}-rw01-rt0{i}", secret="s" * 64,
                   mqtt_password="p", kelurahan=k, created_ms=1) for k in KELURAHAN for i in (1, 2)]
    devs.append(Device(id="klj-nowhere-rw01-rt01", secret="s" * 64, mqtt_password="p", created_ms=1))
    store.add_devices(devs)
    seq = [0]

    def ingest(d: Device, press: int, received: int, *, kind: str = "panic", synced: bool = True) -> str:
        seq[0] += 1
        a = Alert(id=f"{d.id}:1:{seq[0]}", dev=d.id, boot=1, seq=seq[0], kind=kind, t=press if synced else None,
                  age=received - press, lat6=1, lon6=1, acc=10, src="fixed", batt=None, rssi=None, ref=None,
                  received_ms=received, body=json.dumps({"t": press if synced else None}))
        return store.ingest([a])[0].incident.id

    def act(inc: str, action: str, at: int, role: str = "operator", unit: str | None = None,
            note: str | None = None) -> None:
        store.transition(inc, action, f"{role}:x", at, role=role, unit=unit, note=note)

    for _ in range(160):
        d = rnd.choice(devs)
        # Never within the last 30 minutes: every figure's "now" then decides the same verdicts.
        press = rnd.randint(since + 10 * MIN, now - 30 * MIN)
        received = press + rnd.randint(150, 4000)
        synced = rnd.random() < 0.7
        kind = "test" if rnd.random() < 0.08 else "panic"
        inc = ingest(d, press, received, kind=kind, synced=synced)
        fate = rnd.random()
        if fate < 0.06:  # cancelled from the button
            c = Alert(id=f"{d.id}:1:{seq[0] + 1}", dev=d.id, boot=1, seq=seq[0] + 1, kind="cancel", t=None, age=0,
                      lat6=1, lon6=1, acc=10, src="fixed", batt=None, rssi=None, ref=f"{d.id}:1:{seq[0]}",
                      received_ms=received + 20_000, body="{}")
            seq[0] += 1
            store.ingest([c])
            # A request: the desk calls back and closes it.
            act(inc, "verify", received + 40_000, note="safe: pressed by mistake")
            act(inc, "confirm_cancel", received + 45_000)
            continue
        ack = received + rnd.randint(3_000, 90_000)
        act(inc, "acknowledge", ack)
        if fate < 0.12:
            act(inc, "false_alarm", ack + 2 * MIN)  # before anyone arrived: does not count
            continue
        if 0.16 <= fate < 0.24:
            continue  # nobody ever arrived: a miss
        disp = ack + rnd.randint(5_000, 120_000)
        act(inc, "dispatch", disp, unit="sabhara-1")
        scene = max(disp + 30_000, press + int(rnd.lognormvariate(1.9, 0.35) * MIN))
        act(inc, "on_scene", scene, role="responder")
        if fate < 0.16:
            act(inc, "false_alarm", scene + 5 * MIN)  # reached, then found to be a false alarm: counts
        else:
            act(inc, "resolve", scene + 20 * MIN, role="responder")
    # Held through an outage: pressed before the period, received inside it (counts, by received time).
    held = ingest(devs[0], since - 3 * MIN, since + 2 * MIN)
    act(held, "dispatch", since + 3 * MIN, unit="sabhara-2")
    act(held, "on_scene", since + 8 * MIN, role="responder")
    # Received before the period: no figure counts it.
    early = ingest(devs[1], since - 30 * MIN, since - 29 * MIN)
    act(early, "on_scene", since - 25 * MIN, role="operator")
    return held, early


def _figures(f) -> dict:
    return {"p50": f.p50, "p90": f.p90, "share": None if f.share is None else round(f.share, 4),
            "within": f.within, "decided": f.counted}


def _day_ms(d) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=WIB).timestamp() * 1000)


def _dashboard(s, d_from, d_to) -> tuple[dict[str, dict], dict]:
    """The dashboard page's period table as an operator sees it: per kelurahan, and its total row."""
    c = httpx.Client(base_url=s.api, follow_redirects=False, timeout=10)
    csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/console/login").text).group(1)
    r = c.post("/console/login", data={"csrf": csrf, "username": "desk", "password": "kata-sandi-uji-1"})
    assert r.status_code == 303, r.text[:300]
    page = c.get("/console/dashboard", params={"from": d_from.isoformat(), "to": d_to.isoformat()})
    assert page.status_code == 200
    rows = re.findall(r'<tr( class="total")?><td>([^<]+)</td><td>(\d+)</td><td class="mono">([^<]+)</td>\s*'
                      r'<td class="mono[^"]*">([^<]+)</td>\s*<td class="mono[^"]*">([^<]+)</td>', page.text)
    cells = [(total, html.unescape(name), {"p50": p50, "p90": p90, "share": share})
             for total, name, _, p50, p90, share in rows]
    totals = [c for t, _, c in cells if t]
    assert len(totals) == 1, page.text[:500]
    return {name: c for t, name, c in cells if not t}, totals[0]


def _timers_shown(s, d_from, d_to) -> dict[str, dict[str, str]]:
    """The dashboard's standard-timer table: scope -> timer -> share with four decimals."""
    c = httpx.Client(base_url=s.api, follow_redirects=False, timeout=10)
    csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/console/login").text).group(1)
    c.post("/console/login", data={"csrf": csrf, "username": "desk", "password": "kata-sandi-uji-1"})
    page = c.get("/console/dashboard", params={"from": d_from.isoformat(), "to": d_to.isoformat()}).text
    table = page.split('id="timers"', 1)[1].split("</table>", 1)[0]
    out: dict[str, dict[str, str]] = {}
    for scope, row in re.findall(r'<tr[^>]*data-scope="([^"]+)">(.*?)</tr>', table, re.S):
        out[html.unescape(scope)] = dict(re.findall(r'data-timer="(\w+)"\s+data-share="([^"]*)"', row))
    return out


def _timers(r: dict) -> dict[str, str]:
    return {name: "" if t["share"] is None else f"{t['share']:.4f}" for name, t in r["timers"].items()}


def _shown(p50: int | None, p90: int | None, share: float | None) -> dict:
    return {"p50": console_sla.minutes(p50), "p90": console_sla.minutes(p90),
            "share": "—" if share is None else f"{100 * share:.0f}%"}


def test_report_api_dashboard_and_simulator_agree(tmp_path):
    s = custom_stack(tmp_path / "state", start=False, sla_s=SLA_S)
    now = time.time_ns() // 1_000_000
    today = datetime.fromtimestamp(now / 1000, WIB).date()
    d_from = today - timedelta(days=7)
    # The dashboard's period is whole days (WIB): the others are asked for the same one.
    since, until = _day_ms(d_from), _day_ms(today + timedelta(days=1))
    cfg = config.load(s.config)
    store = open_store(cfg)
    held, early = _seed(store, now, since)
    accounts.set_user(store, "desk", "viewer", "kata-sandi-uji-1", "", now)
    s.start_broker()
    s.start_gateway()
    try:
        # 1. The CLI report.
        cli = json.loads(s.cli("report", "--format", "json", "--since", str(since), "--until", str(until)).stdout)
        # 2. The API's report, from the running gateway.
        api = s.get("/api/report", role="viewer", since=str(since), until=str(until))
        # 3. The console dashboard's figures, with the console's settings read from the same config.
        cs = console_settings.load(cfg)
        assert cs.sla_minutes == SLA_S / 60
        per, overall = console_sla.figures(queries.sla_rows(store, since, until), now_ms(), int(cs.sla_minutes * MIN))
        # 4. The simulator's report over the incidents as the API serves them.
        incidents = s.incidents(since=str(since))
        kel = {d.id: d.kelurahan for d in store.list_devices()}
        sim = sim_report.sla_of(incidents, lambda i: kel.get(i["dev"], ""), now_ms=now_ms(), sla_s=cfg.sla_s)

        def from_report(r: dict) -> dict:
            scene = r["steps"]["press_to_on_scene"]
            return {"p50": scene["p50_ms"], "p90": scene["p90_ms"], "share": r["sla"]["share"],
                    "within": r["sla"]["within"], "decided": r["sla"]["within"] + r["sla"]["missed"]}

        def from_sim(b: dict) -> dict:
            return {"p50": b["p50_ms"], "p90": b["p90_ms"], "share": None if b["share"] is None else round(b["share"], 4),
                    "within": b["within_10_min"], "decided": b["n"]}

        overall_cli = from_report(cli["overall"])
        assert overall_cli["decided"] > 100 and 0 < overall_cli["share"] < 1  # a real week, not a trivial one
        assert cli["sla_s"] == api["sla_s"] == SLA_S
        assert from_report(api["overall"]) == overall_cli
        assert _figures(overall) == overall_cli
        assert from_sim(sim["overall"]) == overall_cli
        by_kel_cli = {k["kelurahan"]: from_report(k) for k in cli["kelurahan"]}
        assert len(by_kel_cli) == len(KELURAHAN) + 1  # and the device without a kelurahan
        assert {k["kelurahan"]: from_report(k) for k in api["kelurahan"]} == by_kel_cli
        assert {f.name: _figures(f) for f in per} == by_kel_cli
        assert {k: from_sim(b) for k, b in sim["by_kelurahan"].items()} == by_kel_cli
        # 5. The dashboard page itself shows those figures (rounded to seconds and percent).
        shown, total = _dashboard(s, d_from, today)
        assert total == _shown(overall_cli["p50"], overall_cli["p90"], overall_cli["share"])
        assert shown == {k: _shown(v["p50"], v["p90"], v["share"]) for k, v in by_kel_cli.items()}
        # 6. The standard timers (answer <= 15 s, dispatch <= 60 s) agree too, per kelurahan and overall.
        assert api["overall"]["timers"] == cli["overall"]["timers"]
        assert {k["kelurahan"]: k["timers"] for k in api["kelurahan"]} == \
            {k["kelurahan"]: k["timers"] for k in cli["kelurahan"]}
        answer = cli["overall"]["timers"]["answer"]
        assert answer["limit_s"] == 15 and answer["within"] + answer["missed"] > 100 and 0 < answer["share"] < 1
        assert {f.name: {n: r.share for n, r in f.summary.timers.items()} for f in per} == \
            {k["kelurahan"]: {n: t["share"] if t["share"] is None else pytest.approx(t["share"], abs=1e-4)
                              for n, t in k["timers"].items()} for k in cli["kelurahan"]}
        timers_page = _timers_shown(s, d_from, today)
        assert timers_page["*"] == _timers(cli["overall"])
        assert {k: v for k, v in timers_page.items() if k != "*"} == \
            {k["kelurahan"]: _timers(k) for k in cli["kelurahan"]}
        # The period is by received time: the press held through the outage counts, the early one not.
        ids = {i["id"] for i in incidents}
        assert held in ids and early not in ids
        assert cli["overall"]["incidents"] == len([i for i in incidents if i["kind"] == "panic"])
    finally:
        store.close()
        s.down()


def now_ms() -> int:
    return time.time_ns() // 1_000_000
