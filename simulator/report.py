"""From a finished run to figures: pressed vs incidents vs lost vs duplicated, the SLA per
kelurahan, the other latencies, faults and what the machine spent. Plain data in, a dict
out (the --json file), and a text rendering of it."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from gateway.domain import sla
from gateway.domain.paths import PATHS
from gateway.domain.sla import Times, percentile

from . import second_path

SLA_MIN = sla.SLA_S / 60
# A finished run has no clock still running: an incident nobody reached is a miss.
RUN_OVER_MS = 2**62

METHOD = ("press->on scene is computed per incident from the gateway's own timestamps, with the "
          "compressed intervals scaled back: simulated = (on_scene_ms - press_ms) + compressed * (speed - 1), "
          "where compressed is the wall time the incident spent in human or driving waits (operator queue "
          "and reaction, dispatch decision, waiting for a free unit, turnout, driving). Network, broker, "
          "gateway, webhook and API time is real time and is not scaled. With --speed 1 this is exactly "
          "the gateway's press_to_on_scene. Which incidents count and the percentile method are the "
          "gateway's (gateway/domain/sla.py).")


def pct(values: list[float], q: float) -> float | None:
    """domain/sla.py's percentile with q in 0..100, as this report's tables state it."""
    return percentile(values, q / 100)


def _r(x, nd=2):
    return None if x is None else round(x, nd)


def sla_block(s: sla.SlaSummary) -> dict:
    scene = s.steps["press_to_on_scene"]
    minutes = [v / 60_000 for v in scene.values]
    return {"n": s.decided, "on_scene": len(minutes), "not_reached": s.decided - len(minutes), "pending": s.pending,
            "p50_min": _r(pct(minutes, 50)), "p90_min": _r(pct(minutes, 90)), "p99_min": _r(pct(minutes, 99)),
            "max_min": _r(max(minutes) if minutes else None),
            "within_10_min": s.within,
            "within_10_min_pct": _r(100 * s.share_within, 1) if s.share_within is not None else None,
            # Unrounded, to compare with the gateway's report.
            "p50_ms": scene.p50, "p90_ms": scene.p90, "p99_ms": scene.p99, "share": s.share_within}


def sla_of(incidents: list[dict], kelurahan_of: Callable[[dict], str], *, now_ms: int,
           sla_s: int = sla.SLA_S) -> dict:
    """The SLA of incidents as the API serves them, per kelurahan and overall: the gateway's
    report states the same numbers for the same incidents."""
    rows = [(Times.from_json(i), kelurahan_of(i)) for i in incidents]
    overall, per = sla.by_kelurahan(rows, sla_s=sla_s, now_ms=now_ms)
    return {"overall": sla_block(overall), "by_kelurahan": {k: sla_block(v) for k, v in per.items()}}


def _path_stats(seconds: list[float]) -> dict:
    return {"n": len(seconds), "p50_s": _r(pct(seconds, 50), 3), "p90_s": _r(pct(seconds, 90), 3),
            "p99_s": _r(pct(seconds, 99), 3), "max_s": _r(max(seconds) if seconds else None, 3)}


def paths_block(presses: list, inc_by_alert: dict[str, dict], deliveries: dict[str, list[dict]],
                cuts: list[dict]) -> dict:
    """Press -> received per delivery path (docs/protocol.md "Paths"), from the gateway's
    delivery rows: `every` counts each path's first copy of each alert, `first` only the copy
    that made the incident (how the press got through). Presses made in a neighbourhood cut are
    reported apart, with how each got through. Real seconds: the network is never scaled."""
    every: dict[str, list[float]] = {p: [] for p in PATHS}
    first: dict[str, list[float]] = {p: [] for p in PATHS}
    dark: dict[int, dict] = {c["cut"]: dict(c, presses=0, first_path={}, not_delivered=0,
                                             first={p: [] for p in PATHS}) for c in cuts}
    for pr in presses:
        inc = inc_by_alert.get(pr.alert_id or "")
        rows = deliveries.get(inc["id"], []) if inc is not None else []
        for row in rows:
            every.setdefault(row["path"], []).append(row["latency_ms"] / 1000)
        if rows:
            head = min(rows, key=lambda r: (r["received_ms"], r["path"]))
            first.setdefault(head["path"], []).append(head["latency_ms"] / 1000)
        if pr.cut is not None and pr.cut in dark:
            d = dark[pr.cut]
            d["presses"] += 1
            if not rows:
                d["not_delivered"] += 1
                continue
            d["first_path"][head["path"]] = d["first_path"].get(head["path"], 0) + 1
            d["first"].setdefault(head["path"], []).append(head["latency_ms"] / 1000)
    return {
        "every": {p: _path_stats(v) for p, v in every.items()},
        "first": {p: _path_stats(v) for p, v in first.items()},
        "cuts": [dict(d, first={p: _path_stats(v) for p, v in d["first"].items() if v}) for d in dark.values()],
        "values_s": {p: sorted(round(x, 3) for x in v) for p, v in every.items() if v},   # for the plot
        "note": ("real seconds from the press (the device's clock, or received - age) to the gateway storing "
                 "the copy; `every`: each path's first copy of each alert, `first`: the copy that made the "
                 "incident. Percentiles: gateway/domain/sla.py"),
    }


def build(run, result: dict) -> dict:
    o = run.o
    speed = o.speed
    ours = {s for s in run.devs}
    incidents = [i for i in result["incidents"] if i["dev"] in ours]
    by_alert = Counter(i["alert_id"] for i in incidents)
    inc_by_alert = {i["alert_id"]: i for i in incidents}
    cases = {c.alert_id: c for c in run.people.cases.values()}

    lost, duplicates, bump_incidents = [], [], []
    for p in run.presses:
        if p.alert_id is None:
            lost.append({"press": p.n, "dev": p.dev, "why": "the button never sent an alert for it"})
        elif p.alert_id not in inc_by_alert:
            lost.append({"press": p.n, "dev": p.dev, "id": p.alert_id, "why": "sent, but no incident at the gateway"})
        for extra in p.ids[1:]:
            duplicates.append({"press": p.n, "dev": p.dev, "id": extra, "why": "a second alert id for one press"})
    explained = {i for p in run.presses for i in p.ids}
    after_bump = {u["id"] for u in run.unexpected if u["after_bump"]}
    for i in incidents:
        if i["alert_id"] in explained:
            continue
        entry = {"incident": i["id"], "dev": i["dev"], "id": i["alert_id"]}
        if i["alert_id"] in after_bump:
            bump_incidents.append(dict(entry, why="a pocket bump triggered"))
        else:
            duplicates.append(dict(entry, why="an incident no press explains"))
    for aid, n in by_alert.items():
        if n > 1:
            duplicates.append({"id": aid, "why": f"{n} incidents for one alert id"})

    # The SLA population is the gateway's rule (domain/sla.py); press->on scene is scaled back to
    # simulated time (METHOD) before the rule measures it.
    scaled: list[dict] = []
    kel_of_alert: dict[str, str] = {}
    points = []
    p2r, r2a, r2d, d2o = [], [], [], []
    outcomes: Counter = Counter()
    for p in run.presses:
        inc = inc_by_alert.get(p.alert_id or "")
        case = cases.get(p.alert_id or "")
        if inc is None:
            continue
        if inc["state"] == "cancelled":
            outcomes["cancelled_by_holder" if p.false == "holder" else
                     "false_alarm_closed_by_operator" if p.false == "operator" else "cancelled_other"] += 1
        elif p.kind == "test":
            outcomes["drill_closed" if inc["state"] == "resolved" else "drill_open"] += 1
        else:
            outcomes[inc["state"]] += 1
        lat = inc["latency_ms"]
        if lat["press_to_received"] is not None:
            p2r.append(lat["press_to_received"])
        if not sla.counts(Times.from_json(inc)):
            continue
        # Compressed wall time up to each action (not the total: that includes the time
        # on scene before the unit resolves).
        comp = case.comp_at if case else {}
        if inc.get("acknowledged_ms") and "acknowledge" in comp:
            r2a.append(_sim_s(inc["acknowledged_ms"] - inc["received_ms"], comp["acknowledge"], speed))
        if inc.get("dispatched_ms") and "dispatch" in comp:
            r2d.append(_sim_s(inc["dispatched_ms"] - inc["received_ms"], comp["dispatch"], speed))
        kel_of_alert[inc["alert_id"]] = p.kelurahan
        if inc.get("on_scene_ms") is None:
            scaled.append(inc)
            points.append({"lat6": inc["lat6"], "lon6": inc["lon6"], "min": None, "kelurahan": p.kelurahan})
            continue
        m = ((inc["on_scene_ms"] - inc["press_ms"]) + comp.get("on_scene", 0.0) * 1000 * (speed - 1)) / 60000
        scaled.append(dict(inc, on_scene_ms=inc["press_ms"] + round(m * 60000)))
        if case and case.drive_sim_s is not None:
            d2o.append(case.drive_sim_s / 60)
        points.append({"lat6": inc["lat6"], "lon6": inc["lon6"], "min": round(m, 2), "kelurahan": p.kelurahan,
                       "unit": inc.get("unit"), "distance_m": round(case.distance_m) if case and case.distance_m else None})

    kel_names = [k["name"] for k in run.scn["kelurahan"]]
    run_sla = sla_of(scaled, lambda i: kel_of_alert[i["alert_id"]], now_ms=RUN_OVER_MS)
    by_kel = {k: run_sla["by_kelurahan"][k] for k in kel_names if k in run_sla["by_kelurahan"]}
    gps_expected = Counter(p.gps or "none" for p in run.presses if p.alert_id in inc_by_alert and p.kind == "panic")
    gps_got = Counter((p.gps or "none", inc_by_alert[p.alert_id]["src"]) for p in run.presses
                      if p.alert_id in inc_by_alert and p.kind == "panic")
    n_fw = sum(1 for s in run.devs.values() if s.firmware)
    n_proto = len(run.devs) - n_fw
    offline = Counter(p.offline for p in run.presses if p.offline)
    res = run.sampler.summary() if run.sampler else {}
    rep = {
        "scenario": run.scn["name"], "title": run.scn.get("title"), "seed": o.seed,
        "devices": {"total": len(run.devs), "firmware": n_fw, "protocol": n_proto,
                    "mode": ("every button runs the real firmware under micropython" if not n_proto else
                             f"{n_fw} buttons run the real firmware under micropython; {n_proto} are Python "
                             "protocol devices (simulator/protodev.py): the same wire protocol v1 (signed alerts, "
                             "QoS 1, retransmit until a signed ack), not the firmware")},
        "speed": speed, "duration_s": o.duration,
        "simulated_minutes": round(run.timings.get("world_s", o.duration) * speed / 60, 1),
        "time_compression": (f"x{speed:g}: operator reactions, dispatch decisions, turnout, driving, time on "
                             "scene and the gaps between presses are simulated time run {speed:g} times faster; "
                             "button holds, WiFi outages, power-off times, broker restarts and the whole "
                             "network/gateway path run in real time. Minutes below are simulated minutes."
                             ).replace("{speed:g}", f"{speed:g}"),
        "sla_method": METHOD,
        "pressed": len(run.presses),
        "pressed_by_kind": dict(Counter(p.kind for p in run.presses)),
        "pressed_by_method": dict(Counter(p.method for p in run.presses)),
        "pressed_offline": dict(offline),
        "pressed_in_bursts": sum(1 for p in run.presses if p.burst),
        "incidents": len(incidents),
        "lost": len(lost),
        "duplicates": len(duplicates),
        "bump_incidents": len(bump_incidents),
        "lost_detail": lost[:50], "duplicates_detail": duplicates[:50], "bump_incidents_detail": bump_incidents[:50],
        "retransmissions": run.counts["retransmissions"],
        "sla": {"minutes": SLA_MIN, "overall": run_sla["overall"], "by_kelurahan": by_kel},
        "paths": paths_block(run.presses, inc_by_alert, result.get("deliveries", {}), run.cuts),
        "pressed_in_cuts": sum(1 for p in run.presses if p.cut is not None),
        "second_path": second_path_block(run),
        "rollout": rollout_block(run, result, inc_by_alert),
        "latency": {
            "press_to_received_ms": {"p50": pct(p2r, 50), "p90": pct(p2r, 90), "p99": pct(p2r, 99),
                                     "max": max(p2r) if p2r else None, "note": "real time, never scaled"},
            "received_to_acknowledged_s": _stats(r2a), "received_to_dispatched_s": _stats(r2d),
            "drive_min": _stats(d2o),
        },
        "outcomes": dict(outcomes),
        "faults": {k: v for k, v in run.counts.items() if k != "retransmissions"},
        "bumps": len(run.bumps),
        "gps": {"presses_by_receiver": dict(gps_expected),
                "src_by_receiver": {f"{a}->{b}": n for (a, b), n in gps_got.items()}},
        "units": {u.name: u.dispatches for u in run.people.units},
        "dispatch": dispatch_block(run),
        "operators": o.people.operators,
        "api_failures": run.people.api.failures[:20],
        "action_errors": run.sched.errors[:20],
        "resources": res,
        "timings_s": {k: (round(v, 1) if isinstance(v, float) else v) for k, v in run.timings.items()},
        "gateway_metrics": result.get("metrics", {}),
        "points": points,
    }
    return rep


def dispatch_block(run) -> dict:
    """How the operators chose units, and what the units' phones reported."""
    cfg = run.o.people
    picks = run.people.picks
    phones = getattr(run, "phones", None)
    return {"mode": cfg.dispatch, "override": cfg.override, "decisions": len(picks),
            "overridden": sum(1 for p in picks if p.overridden),
            "rule": ("free: the free unit nearest in a straight line from where it really is, any sector"
                     if cfg.dispatch == "free" else
                     "recommend: the first unit the gateway's recommendation offers "
                     f"(GET /api/incidents/ID/recommendation), another offered one with probability {cfg.override:g}"),
            "fix_interval_s": cfg.fix_interval_s,
            "positions_sent": phones.sent if phones else 0, "positions_refused": phones.refused if phones else 0}


def rollout_block(run, result: dict, inc_by_alert: dict[str, dict]) -> dict | None:
    """The release rolled out during the run (simulator/rollout.py) and what it did to the
    alerts: press -> received of presses made while it ran against those made before or
    after it, online presses only (an outage's wait is not the rollout's)."""
    r = result.get("rollout")
    win = run.rollout.window_ms() if run.rollout is not None else None
    if r is None or win is None:
        return None
    during: list[float] = []
    outside: list[float] = []
    pressed = lost = 0
    for p in run.presses:
        inside = win[0] <= p.host_ms <= win[1]
        pressed += inside
        inc = inc_by_alert.get(p.alert_id or "")
        if inc is None:
            lost += inside
            continue
        v = inc["latency_ms"]["press_to_received"]
        if v is None or p.offline or p.power_cut or p.cut is not None:
            continue
        (during if inside else outside).append(v)

    def stats(v: list[float]) -> dict:
        return {"n": len(v), "p50": pct(v, 50), "p90": pct(v, 90), "max": max(v) if v else None}
    return dict(r, pressed_during=pressed, lost_during=lost,
                press_to_received_ms={"during": stats(during), "outside": stats(outside)})


def second_path_block(run) -> dict:
    """What the run fitted for the second path: modems (and how many with signal), the
    backup broker, the carrier's settings."""
    fitted = run.fitted.values()
    centre = run.centre
    return {"modems": len(fitted), "modems_with_coverage": sum(1 for f in fitted if f.coverage),
            "modems_with_data": sum(1 for f in fitted if f.data),
            "backup_broker": run.o.backup_broker,
            "carrier": run.o.world.carrier if fitted else None,
            "sms": second_path.sms_stats(centre),
            "buttons_said": dict(sorted(run.second.items()))}


def _sim_s(gateway_ms: int, compressed_s: float, speed: float) -> float:
    """A gateway interval in simulated seconds: its compressed part scaled back."""
    return round(gateway_ms / 1000 + compressed_s * (speed - 1), 1)


def _stats(v: list[float]) -> dict:
    return {"n": len(v), "p50": _r(pct(v, 50), 1), "p90": _r(pct(v, 90), 1), "p99": _r(pct(v, 99), 1)}


def _fmt(x, unit="") -> str:
    return "-" if x is None else f"{x:.1f}{unit}"


def _fs(x) -> str:
    """Seconds: milliseconds show on the WiFi paths, tens of seconds on SMS."""
    return "-" if x is None else f"{x:.3f}" if x < 1 else f"{x:.1f}"


def paths_text(rep: dict) -> list[str]:
    ps, sp = rep["paths"], rep["second_path"]
    L = [f"press -> received per delivery path (real seconds; {sp['modems']} buttons with a modem, "
         f"{sp['modems_with_coverage']} of them with signal, {sp.get('modems_with_data', 0)} with data too; "
         f"backup broker {'on' if sp['backup_broker'] else 'off'})",
         f"{'path':14} {'copies':>6} {'p50':>6} {'p90':>6} {'p99':>6} {'max':>6}   {'first':>5} {'p99':>6}"]
    for path, e in ps["every"].items():
        f = ps["first"][path]
        L.append(f"{path:14} {e['n']:>6} {_fs(e['p50_s']):>6} {_fs(e['p90_s']):>6} {_fs(e['p99_s']):>6} "
                 f"{_fs(e['max_s']):>6}   {f['n']:>5} {_fs(f['p99_s']):>6}")
    for c in ps["cuts"]:
        how = ", ".join(f"{p} {n} (p99 {_fs(c['first'][p]['p99_s'])} s)" for p, n in sorted(c["first_path"].items()))
        L.append(f"neighbourhood cut {c['cut']}: {c['kelurahan']} dark {c['sim_minutes']:g} simulated min "
                 f"({c['buttons']} buttons, wall {c['start_s']}-{c['end_s']} s): {c['presses']} presses in the dark, "
                 f"first through {how or 'nothing'}; not delivered {c['not_delivered']}; "
                 f"{c.get('skipped', 0)} more planned found every button there busy")
    if sp.get("sms"):
        mo, mt = sp["sms"]["mo"], sp["sms"]["mt"]
        L.append(f"carrier: SMS from buttons {mo['sent']} ({mo['delivered']} delivered, {mo['lost']} lost, "
                 f"{mo['no_coverage']} without signal); replies {mt['sent']} ({mt['delivered']} delivered)")
    if sp.get("buttons_said"):
        L.append(f"buttons said: {sp['buttons_said']}")
    return L


def text(rep: dict) -> str:
    L = []
    d = rep["devices"]
    L.append(f"{rep['title']}  (seed {rep['seed']})")
    L.append(f"buttons: {d['total']} ({d['mode']})")
    L.append(f"run: {rep['duration_s']:.0f} s wall = {rep['simulated_minutes']} simulated minutes. "
             f"Time compression {rep['time_compression']}")
    L.append("")
    L.append(f"SLA per kelurahan: press -> on scene, simulated minutes (promise: {rep['sla']['minutes']:.0f} min)")
    L.append(f"{'kelurahan':18} {'n':>4} {'p50':>6} {'p90':>6} {'p99':>6} {'<=10min':>8} {'not on scene':>13}")
    rows = [*list(rep["sla"]["by_kelurahan"].items()), ("ALL", rep["sla"]["overall"])]
    for name, b in rows:
        if name == "ALL":
            L.append("-" * 67)
        w = "-" if b["within_10_min_pct"] is None else f"{b['within_10_min_pct']:.0f}%"
        L.append(f"{name:18} {b['n']:>4} {_fmt(b['p50_min']):>6} {_fmt(b['p90_min']):>6} "
                 f"{_fmt(b['p99_min']):>6} {w:>8} {b['not_reached']:>13}")
    L.append("")
    lat = rep["latency"]
    pr = lat["press_to_received_ms"]
    L.append(f"press -> received (real): p50 {pr['p50']} ms, p90 {pr['p90']} ms, p99 {pr['p99']} ms, "
             f"max {pr['max']} ms (includes presses made offline: {rep['pressed_offline'] or 'none'})")
    ra, rd, dr = lat["received_to_acknowledged_s"], lat["received_to_dispatched_s"], lat["drive_min"]
    L.append(f"received -> acknowledged: p50 {ra['p50']} s, p90 {ra['p90']} s; received -> dispatched: "
             f"p50 {rd['p50']} s, p90 {rd['p90']} s; driving: p50 {dr['p50']} min, p90 {dr['p90']} min (simulated)")
    L.append("")
    L.extend(paths_text(rep))
    L.append("")
    L.append(f"pressed {rep['pressed']} {rep['pressed_by_kind']} ({rep['pressed_in_bursts']} in bursts)  "
             f"incidents {rep['incidents']}  lost {rep['lost']}  duplicated {rep['duplicates']}  "
             f"pocket bumps {rep['bumps']} -> incidents {rep['bump_incidents']}  "
             f"retransmissions {rep['retransmissions']}")
    L.append(f"outcomes: {rep['outcomes']}")
    dp = rep["dispatch"]
    L.append(f"dispatch: {dp['rule']}; {dp['decisions']} decisions, {dp['overridden']} overridden; unit phones sent "
             f"{dp['positions_sent']} positions ({dp['positions_refused']} refused)")
    L.append(f"faults: {rep['faults']}")
    L.append(f"gps: {rep['gps']['src_by_receiver']}")
    ro = rep.get("rollout")
    if ro:
        waves = "; ".join(f"{w['pct']:g} % at {w['start_s']} s, through at {_fs(w['through_s'])} s" for w in ro["waves"])
        pr = ro["press_to_received_ms"]
        L.append(f"release {ro['seq']} (firmware {ro['fw']}): {waves}; "
                 f"{'HALTED: ' + ro['halted'] if ro['halted'] else 'rollout ' + _fs(ro['duration_s']) + ' s'}; "
                 f"kept by {ro['kept']} of {ro['devices']} buttons {ro['by_stage']}")
        L.append(f"  presses while it ran: {ro['pressed_during']}, lost {ro['lost_during']}; press -> received p50/p90/max "
                 f"{pr['during']['p50']}/{pr['during']['p90']}/{pr['during']['max']} ms (n {pr['during']['n']}) against "
                 f"{pr['outside']['p50']}/{pr['outside']['p90']}/{pr['outside']['max']} ms outside it (n {pr['outside']['n']})")
    for what in ("lost_detail", "duplicates_detail", "bump_incidents_detail"):
        for x in rep[what][:10]:
            L.append(f"  {what.split('_')[0]}: {x}")
    r = rep["resources"]
    idle = r.get("idle") or {}
    if idle:
        L.append(f"machine: {r.get('cpu_count')} cores, {r.get('mem_total_mib')} MiB. Idle button (firmware process): "
                 f"{idle.get('per_device_cpu_pct')}% of a core, RSS {idle.get('per_device_rss_mib')} MiB, "
                 f"PSS {idle.get('per_device_pss_mib')} MiB ({idle.get('firmware_processes')} processes)")
    if r.get("firmware_cpu_avg_pct") is not None:
        L.append(f"while running: firmware fleet CPU avg {r['firmware_cpu_avg_pct']}% (peak {r['firmware_cpu_peak_pct']}%), "
                 f"gateway {r.get('gateway_cpu_avg_pct')}%, broker {r.get('broker_cpu_avg_pct')}%, simulator "
                 f"{r.get('simulator_cpu_avg_pct')}% (100% = one core); machine {r.get('machine_cpu_avg_pct')}% "
                 f"of {100 * (r.get('cpu_count') or 1)}%; firmware RSS peak {r.get('firmware_rss_peak_mib')} MiB, "
                 f"PSS {r.get('firmware_pss_peak_mib')} MiB; memory available min {r.get('mem_available_min_mib')} MiB")
    L.append(f"timings: {rep['timings_s']}")
    if rep["api_failures"] or rep["action_errors"]:
        L.append(f"errors: {rep['api_failures'][:5]} {rep['action_errors'][:5]}")
    L.append(f"method: {rep['sla_method']}")
    verdict = "OK" if rep["lost"] == 0 and rep["duplicates"] == 0 and rep["bump_incidents"] == 0 else "FAIL"
    L.append(f"{verdict}: lost {rep['lost']}, duplicated {rep['duplicates']}, bump incidents {rep['bump_incidents']}")
    return "\n".join(L)
