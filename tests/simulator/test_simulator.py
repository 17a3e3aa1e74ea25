"""`panic-sim run` on a small scenario, end to end on real parts: 40 buttons on the real
firmware, a burst, a broker restart, power cuts (one right after a press, before its
ack), WiFi outages and pocket bumps; operators and units through the API. No press may
be lost or duplicated, no bump may raise an incident, and the report must be whole."""
from __future__ import annotations

import json
from collections import Counter

from simulator import cli
from simulator.world import WorldConfig, plan

ARGS = ["--devices", "40", "--duration", "25", "--speed", "30", "--seed", "3", "--rate", "60",
        "--burst", "0.5:8:30", "--bumps", "30", "--outages", "10", "--power-cuts", "10",
        "--broker-restarts", "1", "--idle-probe", "1", "--drain", "40", "--no-progress"]


def test_plan_has_the_faults_the_test_relies_on():
    p = plan(WorldConfig(rate_per_h=60, bursts=[(0.5, 8, 30)], bumps_per_h=30, outages_per_h=10,
                         power_cuts_per_h=10), 25, 30, 3)
    what = Counter(h.what for h in p)
    assert what["broker_restart"] == 1 and what["power_cut"] >= 1 and what["bump"] >= 1
    assert sum(1 for h in p if h.what == "press" and h.args["burst"]) == 8
    assert any(h.what == "press" and h.args["power_cut"] for h in p)


def test_small_scenario_loses_and_duplicates_nothing(tmp_path, capsys):
    out = tmp_path / "report.json"
    rc = cli.main(["run", "klojen", *ARGS, "--state", str(tmp_path / "state"),
                   "--json", str(out), "--plots", str(tmp_path / "plots")])
    printed = capsys.readouterr().out
    rep = json.loads(out.read_text())
    assert rc == 0, printed
    assert rep["lost"] == 0 and rep["duplicates"] == 0 and rep["bump_incidents"] == 0, printed
    assert rep["pressed"] >= 15 and rep["pressed_in_bursts"] >= 1
    # Every press became exactly one incident (a holder's cancel makes no incident of its own).
    assert rep["incidents"] == rep["pressed"]
    f = rep["faults"]
    assert f["broker_restarts"] == 1 and f["power_cuts"] >= 1 and f["bumps"] >= 1
    assert rep["devices"] == {"total": 40, "firmware": 40, "protocol": 0, "mode": rep["devices"]["mode"]}
    sla = rep["sla"]["overall"]
    for key in ("n", "p50_min", "p90_min", "p99_min", "within_10_min_pct"):
        assert key in sla
    assert sla["on_scene"] >= 1 and 0 < sla["p50_min"] <= sla["p90_min"] <= sla["p99_min"]
    assert set(rep["sla"]["by_kelurahan"]) <= {k for k in ("Klojen", "Rampal Celaket", "Samaan", "Kiduldalem",
                                                           "Sukoharjo", "Kasin", "Kauman", "Oro-oro Dowo",
                                                           "Bareng", "Gadingkasri", "Penanggungan")}
    assert rep["latency"]["press_to_received_ms"]["p50"] is not None
    for png in ("latency_cdf.png", "incident_map.png"):
        data = (tmp_path / "plots" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert "SLA per kelurahan" in printed and "OK: lost 0, duplicated 0" in printed


def test_protocol_devices_lose_and_duplicate_nothing(tmp_path, capsys):
    """The same world on protocol devices (simulator/protodev.py): the firmware's gesture
    and NMEA logic, the protocol module's bodies and ack checks, over the real stack."""
    out = tmp_path / "report.json"
    args = ["--devices", "30", "--duration", "20", "--speed", "30", "--seed", "3", "--rate", "60",
            "--burst", "0.5:6:30", "--bumps", "60", "--outages", "10", "--power-cuts", "0",
            "--broker-restarts", "1", "--idle-probe", "1", "--drain", "40", "--no-progress", "--firmware-max", "0"]
    rc = cli.main(["run", "klojen", *args, "--state", str(tmp_path / "state"), "--json", str(out)])
    printed = capsys.readouterr().out
    rep = json.loads(out.read_text())
    assert rc == 0, printed
    assert rep["devices"]["protocol"] == 30 and rep["devices"]["firmware"] == 0
    assert rep["lost"] == 0 and rep["duplicates"] == 0 and rep["bump_incidents"] == 0, printed
    assert rep["pressed"] >= 6 and rep["incidents"] == rep["pressed"]
    assert rep["faults"]["bumps"] >= 1 and rep["faults"]["broker_restarts"] == 1


def test_a_release_rolls_across_the_buttons_while_presses_go_on(tmp_path, capsys):
    """`--release`: the run signs a new firmware, releases it to the canaries and then to
    every button while the world presses, cuts power and WiFi; every button keeps it, and
    no press is lost, doubled or turned into an extra incident by the update (the trial is
    kept on the gateway's signed keep, not a drill alert)."""
    out = tmp_path / "report.json"
    args = ["--devices", "12", "--duration", "30", "--speed", "30", "--seed", "5", "--rate", "60",
            "--burst", "0.4:4:20", "--bumps", "0", "--outages", "10", "--power-cuts", "10",
            "--broker-restarts", "0", "--idle-probe", "0", "--drain", "240", "--no-progress",
            "--release", "0.1", "--canary-pct", "20"]
    rc = cli.main(["run", "klojen", *args, "--state", str(tmp_path / "state"), "--json", str(out)])
    printed = capsys.readouterr().out
    rep = json.loads(out.read_text())
    assert rc == 0, printed
    assert rep["lost"] == 0 and rep["duplicates"] == 0 and rep["incidents"] == rep["pressed"], printed
    ro = rep["rollout"]
    assert ro["halted"] is None, printed
    assert [w["pct"] for w in ro["waves"]] == [20.0, 100.0] and all(w["through_s"] for w in ro["waves"])
    assert ro["kept"] == ro["devices"] == 12, ro["by_stage"]
    assert ro["fw"].endswith("+sim") and ro["pressed_during"] >= 1 and ro["lost_during"] == 0
    assert "presses while it ran" in printed
