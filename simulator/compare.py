"""`panic-sim compare`: the same world twice, with the same seed, once with operators typing
a unit (free text) and once following the gateway's recommendation, and the difference in the
share on scene within 10 minutes, p90 and the answer and dispatch timers.

Both runs see the same plan of presses, faults and button profiles (all seeded); the people's
delays are drawn in the order events happen, which real time can reorder, so a small run
differs by chance as well as by the rule: the report says how many presses each had. The
staffing model (`panic-sim plan`, model.py) makes the same comparison on thousands of
presses with common random numbers.
"""
from __future__ import annotations

from dataclasses import replace

from .run import RunOptions


def options_for(base: RunOptions, mode: str, *, override: float) -> RunOptions:
    people = replace(base.people, dispatch=mode, override=override if mode == "recommend" else 0.0)
    return replace(base, people=people, state=base.state / mode)


def _row(rep: dict) -> dict:
    o = rep["sla"]["overall"]
    lat = rep["latency"]
    return {"n": o["n"], "on_scene": o["on_scene"], "within_10_min_pct": o["within_10_min_pct"],
            "p50_min": o["p50_min"], "p90_min": o["p90_min"],
            "answer_p90_s": lat["received_to_acknowledged_s"]["p90"],
            "dispatch_p90_s": lat["received_to_dispatched_s"]["p90"],
            "drive_p90_min": lat["drive_min"]["p90"], "pressed": rep["pressed"], "lost": rep["lost"],
            "dispatch": rep["dispatch"]}


def _minus(a, b):
    return None if a is None or b is None else round(a - b, 2)


def summarise(free: dict, recommend: dict) -> dict:
    f, r = _row(free), _row(recommend)
    return {"scenario": free["scenario"], "seed": free["seed"], "speed": free["speed"],
            "duration_s": free["duration_s"], "devices": free["devices"], "free": f, "recommend": r,
            "difference": {"within_10_min_pp": _minus(r["within_10_min_pct"], f["within_10_min_pct"]),
                           "p90_min": _minus(r["p90_min"], f["p90_min"]),
                           "note": "recommend minus free: positive pp and negative minutes favour the recommendation"}}


def text(c: dict) -> str:
    L = [f"compare {c['scenario']} seed {c['seed']}: free text vs the gateway's recommendation "
         f"({c['devices']['total']} buttons, {c['duration_s']:.0f} s wall at x{c['speed']:g})",
         f"{'':10} {'n':>4} {'<=10min':>8} {'p50':>6} {'p90':>6} {'answer p90':>11} {'dispatch p90':>13}"]
    for k in ("free", "recommend"):
        r = c[k]
        L.append(f"{k:10} {r['n']:>4} {_pct(r['within_10_min_pct']):>8} {_num(r['p50_min']):>6} "
                 f"{_num(r['p90_min']):>6} {_num(r['answer_p90_s']):>9} s {_num(r['dispatch_p90_s']):>11} s")
    d = c["difference"]
    L.append(f"difference (recommend - free): {_num(d['within_10_min_pp'])} pp within 10 min, "
             f"{_num(d['p90_min'])} min p90")
    return "\n".join(L)


def _pct(x) -> str:
    return "-" if x is None else f"{x:.0f}%"


def _num(x) -> str:
    return "-" if x is None else f"{x:.1f}"
