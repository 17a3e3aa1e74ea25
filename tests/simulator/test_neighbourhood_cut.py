"""The second path in the simulator's world: neighbourhood power cuts (every home router of one
kelurahan down for a simulated hour while the buttons run on), the buttons fitted with a modem
and the carrier's coverage, the power-cut scenario variant, and the per-path report."""
from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest

from simulator import cli, report, scenario
from simulator.world import WorldConfig, plan, profiles

QUIET = WorldConfig(rate_per_h=0.0, bursts=[], bumps_per_h=0.0, outages_per_h=0.0, power_cuts_per_h=0.0,
                    broker_restarts=0)
DURATION, SPEED, LEAD = 205.0, 20.0, 5.0
KLOJEN = scenario.load("klojen")
KELURAHAN = sorted({b.kelurahan for b in scenario.buttons(KLOJEN)})


def of(p, what):
    return [h for h in p if h.what == what]


def test_a_cut_darkens_one_kelurahan_for_the_simulated_hour_divided_by_speed():
    cfg = replace(QUIET, neighbourhood_cuts=1, neighbourhood_cut_sim_s=3600.0, cut_press_rate_per_h=30.0)
    p = plan(cfg, DURATION, SPEED, seed=11, kelurahan=KELURAHAN)
    (cut,), (restore,) = of(p, "router_cut"), of(p, "router_restore")
    kel = cut.args["kelurahan"]
    assert kel in KELURAHAN and restore.args["kelurahan"] == kel
    # 3600 simulated seconds at x20: 180 wall seconds, from a tenth of the run on.
    assert restore.at - cut.at == pytest.approx(3600.0 / SPEED)
    assert cut.at == pytest.approx(LEAD + 0.1 * (DURATION - LEAD))
    # The same seed darkens the same kelurahan; the seeds between them darken several.
    again = of(plan(cfg, DURATION, SPEED, seed=11, kelurahan=KELURAHAN), "router_cut")[0]
    assert again.args == cut.args and again.at == cut.at
    picked = {of(plan(cfg, DURATION, SPEED, seed=s, kelurahan=KELURAHAN), "router_cut")[0].args["kelurahan"]
              for s in range(12)}
    assert len(picked) >= 4
    # Presses in the dark: all on that kelurahan, inside the cut, none a device power cut
    # (mains buttons carry a backup cell), about the rate of a simulated hour (Poisson 30).
    dark = [h for h in of(p, "press") if h.args.get("cut") == 1]
    assert 10 <= len(dark) <= 55
    assert all(h.args["kelurahan"] == kel and cut.at < h.at < restore.at and not h.args["power_cut"] for h in dark)


def test_a_cut_longer_than_the_run_ends_with_the_world_and_cuts_add_to_the_plan_only():
    base = replace(QUIET, rate_per_h=60.0, bumps_per_h=30.0, outages_per_h=10.0)
    cfg = replace(base, neighbourhood_cuts=2, neighbourhood_cut_sim_s=7200.0)
    p = plan(cfg, 60.0, 10.0, seed=3, kelurahan=KELURAHAN)
    cuts, restores = of(p, "router_cut"), of(p, "router_restore")
    assert len(cuts) == 2 and len({c.args["kelurahan"] for c in cuts}) == 2
    assert all(r.at <= 60.0 for r in restores), "the drain never waits on a dark kelurahan"
    # Everything else is the plan without cuts, draw for draw.
    plain = plan(base, 60.0, 10.0, seed=3, kelurahan=KELURAHAN)
    rest = [(h.at, h.what, h.args) for h in p if not h.what.startswith("router") and "cut" not in h.args]
    assert rest == [(h.at, h.what, h.args) for h in plain]
    # No kelurahan given (or none asked for): no cut.
    assert not of(plan(cfg, 60.0, 10.0, seed=3), "router_cut")
    assert not of(plan(base, 60.0, 10.0, seed=3, kelurahan=KELURAHAN), "router_cut")


def test_modems_and_coverage_follow_the_shares_and_leave_the_other_traits_alone():
    buttons = scenario.buttons(KLOJEN)
    carrier = scenario.carrier_settings({"coverage": {"*": 0.9, "Kasin": 0.0}, "attach_median_s": 5,
                                         "attach_max_s": 12, "data_share": 0.5})
    without = profiles(buttons, WorldConfig(), seed=1)
    half = profiles(buttons, WorldConfig(modem_share=0.5, carrier=carrier), seed=1)
    assert not any(p.modem for p in without.values())
    fitted = [b for b in buttons if half[b.id].modem]
    assert len(fitted) / len(buttons) == pytest.approx(0.5, abs=0.06)
    assert not any(half[b.id].coverage for b in fitted if b.kelurahan == "Kasin")
    others = [b for b in fitted if b.kelurahan != "Kasin"]
    assert sum(half[b.id].coverage for b in others) / len(others) == pytest.approx(0.9, abs=0.05)
    assert all(0 < half[b.id].attach_ms <= 12_000 for b in fitted)
    covered = [b for b in fitted if half[b.id].coverage]
    assert sum(half[b.id].data for b in covered) / len(covered) == pytest.approx(0.5, abs=0.07)
    assert not any(half[b.id].data for b in fitted if not half[b.id].coverage), "no signal, no data"
    for b in buttons:
        h, w = half[b.id], without[b.id]
        assert (h.trigger, h.gps, h.drains) == (w.trigger, w.gps, w.drains)


def test_the_power_cut_variant_keeps_klojens_buttons_and_sets_its_world():
    name = scenario.variant("klojen", "powercut")
    pc = scenario.load(name)
    assert [b.id for b in scenario.buttons(pc)] == [b.id for b in scenario.buttons(KLOJEN)]
    w = scenario.world_settings(pc)
    assert w["neighbourhood_cuts"] == 1 and w["neighbourhood_cut_sim_s"] == 3600.0 and w["modem_share"] == 1.0
    assert w["carrier"]["coverage"]["Kasin"] < w["carrier"]["coverage"]["*"] <= 1.0
    with pytest.raises(SystemExit, match="no powercut variant"):
        scenario.variant("malang", "powercut")
    with pytest.raises(SystemExit, match="share in"):
        scenario.carrier_settings({"coverage": {"Kasin": 1.5}})


def _options(monkeypatch, *argv: str):
    """The RunOptions `panic-sim run ARGV` would run with."""
    seen = []
    monkeypatch.setattr(cli, "execute", lambda opts, *rest, **kw: seen.append(opts) or 0)
    assert cli.main(["run", *argv]) == 0
    return seen[0]


def test_command_line_power_cut_takes_the_variants_run_and_overrides_win(monkeypatch):
    o = _options(monkeypatch, "klojen", "--power-cut", "--devices", "8")
    assert o.scenario.endswith("klojen-powercut.json") and o.devices == 8
    assert (o.duration, o.speed) == (220.0, 20.0)
    assert o.world.neighbourhood_cuts == 1 and o.world.modem_share == 1.0
    o = _options(monkeypatch, "klojen", "--power-cut", "--speed", "30", "--cut-minutes", "30", "--modem-share", "0.25",
                 "--neighbourhood-cuts", "2", "--backup-broker")
    assert o.speed == 30.0 and o.world.neighbourhood_cut_sim_s == 1800.0 and o.world.modem_share == 0.25
    assert o.world.neighbourhood_cuts == 2 and o.backup_broker
    plain = _options(monkeypatch, "klojen")
    assert (plain.duration, plain.speed, plain.world.neighbourhood_cuts, plain.world.modem_share) == (180.0, 10.0, 0, 0.0)


def _press(n, alert_id, cut=None):
    return SimpleNamespace(n=n, alert_id=alert_id, cut=cut)


def test_report_counts_each_path_and_how_the_presses_in_the_dark_got_through():
    presses = [_press(1, "a:1:1"), _press(2, "a:1:2", cut=1), _press(3, "a:1:3", cut=1), _press(4, "a:1:4", cut=1)]
    inc = {f"a:1:{i}": {"id": f"i{i}"} for i in (1, 2, 3)}
    deliveries = {
        "i1": [{"path": "wifi", "received_ms": 1000, "latency_ms": 40}],
        # Over cellular first, then over WiFi when the power came back: two copies, one incident.
        "i2": [{"path": "cellular", "received_ms": 5000, "latency_ms": 9000},
               {"path": "wifi", "received_ms": 90_000, "latency_ms": 94_000}],
        "i3": [{"path": "sms", "received_ms": 30_000, "latency_ms": 31_000}],
    }
    cuts = [{"cut": 1, "kelurahan": "Kasin", "buttons": 3, "sim_minutes": 60, "start_s": 10.0, "end_s": 190.0}]
    b = report.paths_block(presses, inc, deliveries, cuts)
    assert b["every"]["wifi"]["n"] == 2 and b["every"]["cellular"]["n"] == 1 and b["every"]["sms"]["n"] == 1
    assert b["first"]["wifi"]["n"] == 1 and b["first"]["cellular"]["p99_s"] == 9.0
    assert b["every"]["backup_broker"]["n"] == 0 and b["every"]["backup_broker"]["p99_s"] is None
    (c,) = b["cuts"]
    assert c["presses"] == 3 and c["not_delivered"] == 1
    assert c["first_path"] == {"cellular": 1, "sms": 1}
    assert c["first"]["sms"]["p50_s"] == 31.0
    assert b["values_s"]["wifi"] == [0.04, 94.0]
    lines = report.paths_text({"paths": b, "second_path": {"modems": 3, "modems_with_coverage": 2,
                                                           "backup_broker": False}})
    assert any(line.split()[:2] == ["cellular", "1"] for line in lines)
    assert any("Kasin" in line and "3 presses in the dark" in line and "not delivered 1" in line for line in lines)
    json.dumps(b)   # the --json file takes it as it is


def tiny(**extra) -> dict:
    """Two Klojen kelurahan with three RT heads each, one post: a neighbourhood cut darkens
    half of a fleet small enough for a test."""
    rows = {k["name"]: k for k in KLOJEN["kelurahan"]}
    return {"name": "tiny-klojen", "title": "Two Klojen kelurahan, six RT heads (test)", "kecamatan": "Klojen",
            "prefix": "klj", "spread_m": 300,
            "kelurahan": [dict(rows[k], rw=1, rt=3) for k in ("Kauman", "Oro-oro Dowo")],
            "posts": [dict(KLOJEN["posts"][0], units=3)], **extra}


def tiny_scenario(tmp_path, **extra) -> str:
    path = tmp_path / "tiny-klojen.json"
    path.write_text(json.dumps(tiny(**extra)))
    return str(path)


# Seed 5 darkens Oro-oro Dowo from 5.8 s to 25.8 s (20 simulated minutes at x60) with three
# presses in the dark (checked below), and presses elsewhere at 6 an hour.
CUT_ARGS = ["--devices", "6", "--duration", "40", "--speed", "60", "--seed", "5", "--rate", "6", "--no-burst",
            "--bumps", "0", "--outages", "0", "--power-cuts", "0", "--broker-restarts", "0",
            "--neighbourhood-cuts", "1", "--cut-minutes", "20", "--cut-press-rate", "9",
            "--idle-probe", "0", "--drain", "60", "--no-progress"]


def test_the_seed_of_the_real_run_puts_presses_in_the_dark():
    cfg = WorldConfig(rate_per_h=6, bursts=[], bumps_per_h=0, outages_per_h=0, power_cuts_per_h=0, broker_restarts=0,
                      neighbourhood_cuts=1, neighbourhood_cut_sim_s=1200, cut_press_rate_per_h=9)
    p = plan(cfg, 40, 60, 5, kelurahan=["Kauman", "Oro-oro Dowo"])
    assert of(p, "router_cut")[0].args["kelurahan"] == "Oro-oro Dowo"
    assert len([h for h in of(p, "press") if h.args.get("cut")]) >= 2


def test_presses_in_a_neighbourhood_cut_wait_in_flash_and_arrive_over_wifi_when_the_power_returns(tmp_path, capsys):
    """Without a modem the dark kelurahan's buttons have no way out: each press waits in the
    outbox (never lost) and arrives over WiFi once the routers are back, late by the dark."""
    out = tmp_path / "report.json"
    rc = cli.main(["run", tiny_scenario(tmp_path), *CUT_ARGS, "--state", str(tmp_path / "state"),
                   "--json", str(out), "--plots", str(tmp_path / "plots")])
    printed = capsys.readouterr().out
    rep = json.loads(out.read_text())
    assert rc == 0, printed
    assert rep["lost"] == 0 and rep["duplicates"] == 0 and rep["incidents"] == rep["pressed"], printed
    assert rep["faults"]["neighbourhood_cuts"] == 1 and rep["faults"]["routers_cut"] == 3
    (cut,) = rep["paths"]["cuts"]
    assert cut["kelurahan"] == "Oro-oro Dowo" and cut["buttons"] == 3
    assert cut["presses"] >= 1 and cut["presses"] == rep["pressed_in_cuts"], printed
    assert cut["not_delivered"] == 0 and cut["first_path"] == {"wifi": cut["presses"]}, printed
    # Presses stop a second before the routers return: none can have arrived sooner.
    assert cut["first"]["wifi"]["n"] == cut["presses"] and cut["first"]["wifi"]["p50_s"] >= 1.0, printed
    every = rep["paths"]["every"]
    assert every["wifi"]["n"] == rep["incidents"] and every["cellular"]["n"] == every["sms"]["n"] == 0
    assert rep["second_path"]["modems"] == 0
    assert "press -> received per delivery path" in printed and "neighbourhood cut 1: Oro-oro Dowo" in printed
    png = (tmp_path / "plots" / "paths.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


# Seed 13 darkens Oro-oro Dowo from 8.7 s to 48.7 s (20 simulated minutes at x30), with presses
# in the dark at 9 an hour (checked below). Every button has a modem with signal; about half have
# no data (SMS only), among them one in Oro-oro Dowo; attach and SMS delay are a couple of seconds.
MODEM_ARGS = ["--devices", "6", "--duration", "60", "--speed", "30", "--seed", "13", "--rate", "3", "--no-burst",
              "--bumps", "0", "--outages", "0", "--power-cuts", "0", "--broker-restarts", "0",
              "--neighbourhood-cuts", "1", "--cut-minutes", "20", "--cut-press-rate", "9", "--modem-share", "1",
              "--idle-probe", "0", "--drain", "90", "--no-progress"]
CARRIER = {"coverage": {"*": 1.0}, "attach_median_s": 2.0, "attach_sigma": 0.2, "attach_max_s": 4.0,
           "sms_delay_median_s": 2.0, "sms_delay_sigma": 0.2, "sms_loss": 0.0, "data_share": 0.5}
# SMS after 12 s without a data ack: inside the 40 s of dark, and long after the 3 s after which
# the modem's data call is tried.
TIMERS = {"cell_after_ms": 3000, "sms_after_ms": 12000}


def test_the_seed_of_the_modem_run_puts_presses_in_the_dark_on_data_and_sms_only_buttons():
    cfg = WorldConfig(rate_per_h=3, bursts=[], bumps_per_h=0, outages_per_h=0, power_cuts_per_h=0, broker_restarts=0,
                      neighbourhood_cuts=1, neighbourhood_cut_sim_s=1200, cut_press_rate_per_h=9, modem_share=1.0,
                      carrier=scenario.carrier_settings(CARRIER))
    p = plan(cfg, 60, 30, 13, kelurahan=["Kauman", "Oro-oro Dowo"])
    cut = of(p, "router_cut")[0]
    assert cut.args["kelurahan"] == "Oro-oro Dowo"
    assert len([h for h in of(p, "press") if h.args.get("cut") and h.at < 30]) >= 3
    dark = [b for b in scenario.buttons(tiny()) if b.kelurahan == "Oro-oro Dowo"]
    prof = profiles(dark, cfg, 13)
    assert {prof[b.id].data for b in dark} == {True, False}, "both kinds of modem button in the dark"


def test_presses_in_a_neighbourhood_cut_go_over_cellular_or_sms_and_are_reported_per_path(tmp_path, capsys):
    out = tmp_path / "report.json"
    rc = cli.main(["run", tiny_scenario(tmp_path, carrier=CARRIER, button_config=TIMERS), *MODEM_ARGS,
                   "--state", str(tmp_path / "state"), "--json", str(out), "--plots", str(tmp_path / "plots")])
    printed = capsys.readouterr().out
    rep = json.loads(out.read_text())
    assert rc == 0, printed
    assert rep["lost"] == 0 and rep["duplicates"] == 0 and rep["incidents"] == rep["pressed"], printed
    assert rep["second_path"]["modems"] == 6 and rep["second_path"]["modems_with_coverage"] == 6
    (cut,) = rep["paths"]["cuts"]
    assert cut["kelurahan"] == "Oro-oro Dowo" and cut["presses"] >= 2 and cut["not_delivered"] == 0, printed
    # Made in the dark, delivered first over the button's own modem: data on the buttons that
    # have it, the SMS on the one that has not (the seed presses both early in the dark).
    second = {p: n for p, n in cut["first_path"].items() if p in ("cellular", "sms")}
    assert set(second) == {"cellular", "sms"}, printed
    every = rep["paths"]["every"]
    for path, n in second.items():
        assert every[path]["n"] >= n and every[path]["p99_s"] is not None
    # The SMS goes out after sms_after_ms without a data ack, and its ack came back by SMS.
    assert every["sms"]["p50_s"] >= TIMERS["sms_after_ms"] / 1000
    said = rep["second_path"]["buttons_said"]
    assert said["sms_sent"] >= 1 and said["received_ack_via_sms"] >= 1 and said["alert_tx_cellular"] >= 1
    assert rep["second_path"]["sms"]["mo"]["delivered"] >= 1 and rep["second_path"]["sms"]["mt"]["delivered"] >= 1
    # Presses in the lit kelurahan went over WiFi.
    assert every["wifi"]["n"] >= rep["pressed"] - cut["presses"]
    assert "cellular" in printed and "neighbourhood cut 1: Oro-oro Dowo" in printed


class Pins:
    """What the world typed on a button's stdin (the host side of the sim board's pipe)."""

    def __init__(self, dev: str) -> None:
        self.dev, self.lines = dev, []

    def send(self, command: str) -> float:
        self.lines.append(command)
        return 0.0

    def power_cut(self) -> None:
        self.lines.append("<power off>")

    def start(self, wait_ready: float = 0) -> None:
        self.lines.append("<boot>")   # the sim board boots with its WiFi up


def test_the_world_keeps_a_dark_kelurahans_routers_down_whatever_else_ends_meanwhile(tmp_path):
    """A short WiFi outage that ends inside its kelurahan's cut must not switch the router back on,
    and a button restarted in the dark boots without WiFi; the restore brings every router back."""
    import time

    from simulator.run import DevState, Run, RunOptions
    run = Run(RunOptions(scenario=tiny_scenario(tmp_path), devices=6, progress=False))
    for b in run.buttons:
        run.devs[b.id] = DevState(b, run.profiles[b.id], Pins(b.id), firmware=True)   # type: ignore[arg-type]
    dark = [s for s in run.devs.values() if s.button.kelurahan == "Kauman"]
    try:
        for s in run.devs.values():
            if s not in dark:
                s.busy = True        # the outage below picks a Kauman button
        run._w_wifi_outage({"off_s": 0.3, "press": False, "press_args": {}})
        run._w_router_cut({"kelurahan": "Kauman", "cut": 1, "sim_s": 3600.0})
        run._power_cycle(dark[-1], 0.2, "idle")
        deadline = time.monotonic() + 5
        while run.sched.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        for s in dark:
            assert s.device.lines[-1] == "wifi off", s.device.lines
        assert dark[-1].device.lines[-2:] == ["<boot>", "wifi off"]
        assert all(not s.device.lines for s in run.devs.values() if s not in dark)
        run._w_router_restore({"kelurahan": "Kauman", "cut": 1})
        assert all(s.device.lines[-1] == "wifi on" and s.dark is None for s in dark)
        assert run.cuts[0]["buttons"] == 3 and run.counts["routers_cut"] == 3
    finally:
        run.sched.stop()


def test_with_a_backup_broker_presses_during_a_primary_restart_arrive_through_it(tmp_path, capsys):
    """--backup-broker: the stack's second mosquitto, listed second in every button's config; the
    press made while the primary restarts (the plan puts one there) goes through the backup."""
    out = tmp_path / "report.json"
    args = ["--devices", "6", "--duration", "30", "--speed", "60", "--seed", "5", "--rate", "20", "--no-burst",
            "--bumps", "0", "--outages", "0", "--power-cuts", "0", "--broker-restarts", "1", "--idle-probe", "0",
            "--drain", "60", "--no-progress", "--backup-broker"]
    rc = cli.main(["run", tiny_scenario(tmp_path), *args, "--state", str(tmp_path / "state"), "--json", str(out)])
    printed = capsys.readouterr().out
    rep = json.loads(out.read_text())
    assert rc == 0, printed
    assert rep["lost"] == 0 and rep["duplicates"] == 0 and rep["incidents"] == rep["pressed"], printed
    assert rep["second_path"]["backup_broker"] and rep["faults"]["broker_restarts"] == 1
    config = json.loads(next((tmp_path / "state" / "flash").glob("*/config.json")).read_text())
    assert len(config["brokers"]) == 2
    assert rep["paths"]["first"]["backup_broker"]["n"] >= 1, printed
    assert "backup broker on" in printed
