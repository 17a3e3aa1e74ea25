"""PNG plots of a report: the press->on-scene CDF with the 10-minute promise, and a map
of incidents coloured by response time. matplotlib with the Agg backend: no display."""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .report import SLA_MIN


def cdf(rep: dict, path: Path) -> Path:
    mins = sorted(p["min"] for p in rep["points"] if p["min"] is not None)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if mins:
        n = len(mins) + rep["sla"]["overall"]["not_reached"]
        ax.step(mins, [(i + 1) / n for i in range(len(mins))], where="post", color="#1f5fa8", lw=2,
                label=f"press -> on scene (n={n})")
    ax.axvline(SLA_MIN, color="#c0392b", ls="--", lw=1.5, label="10-minute promise")
    o = rep["sla"]["overall"]
    if o["within_10_min_pct"] is not None:
        ax.text(SLA_MIN, 0.05, f"  {o['within_10_min_pct']:.0f}% within 10 min", color="#c0392b")
    ax.set_xlim(0, max([SLA_MIN * 1.5] + [m * 1.05 for m in mins]))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"minutes (simulated; time compression x{rep['speed']:g})")
    ax.set_ylabel("share of incidents on scene")
    ax.set_title(f"{rep['title']}\npress -> on scene", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def incident_map(rep: dict, scn: dict, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 7), dpi=110)
    pts = [p for p in rep["points"] if p["min"] is not None]
    miss = [p for p in rep["points"] if p["min"] is None]
    if pts:
        sc = ax.scatter([p["lon6"] / 1e6 for p in pts], [p["lat6"] / 1e6 for p in pts],
                        c=[p["min"] for p in pts], cmap="RdYlGn_r", vmin=0, vmax=SLA_MIN * 1.5, s=36,
                        edgecolors="black", linewidths=0.3, zorder=3)
        fig.colorbar(sc, ax=ax, shrink=0.7, label="press -> on scene, simulated minutes")
    if miss:
        ax.scatter([p["lon6"] / 1e6 for p in miss], [p["lat6"] / 1e6 for p in miss], marker="x", c="grey",
                   s=40, zorder=3, label="not on scene at the end")
    for k in scn["kelurahan"]:
        ax.annotate(k["name"], (k["lon"], k["lat"]), fontsize=7, ha="center", color="#333", alpha=0.8, zorder=2)
    posts = scn.get("posts", [])
    ax.scatter([p["lon"] for p in posts], [p["lat"] for p in posts], marker="^", c="#1f3a93", s=80, zorder=4,
               label="police posts")
    for p in posts:
        ax.annotate(p["name"], (p["lon"], p["lat"]), fontsize=6, xytext=(4, -9), textcoords="offset points",
                    color="#1f3a93")
    ax.set_aspect(1.0 / 0.99)   # ~cos(8 degrees): metres north and east look alike
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(f"{rep['title']}\nincidents by press -> on scene (positions approximate)", fontsize=9)
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.legend(loc="lower left", fontsize=7)
    ax.grid(alpha=0.2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


PATH_COLOURS = {"wifi": "#1f5fa8", "backup_broker": "#7f8c8d", "cellular": "#e67e22", "sms": "#8e44ad"}
# Issue #14's targets (p99), drawn beside the curves they bound.
PATH_TARGETS_S = {"cellular": 30.0, "sms": 90.0}


def paths(rep: dict, path: Path) -> Path:
    """Press -> received per delivery path: one CDF per path, real seconds, log scale (WiFi
    is milliseconds, SMS tens of seconds), with the cellular and SMS targets."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    values = rep["paths"].get("values_s", {})
    longest = 1.0
    for name, v in values.items():
        v = [max(x, 0.001) for x in v]
        st = rep["paths"]["every"][name]
        ax.step(v, [(i + 1) / len(v) for i in range(len(v))], where="post", lw=2,
                color=PATH_COLOURS.get(name, "black"), label=f"{name}: n={st['n']}, p99 {st['p99_s']} s")
        longest = max(longest, v[-1])
    for name, target in PATH_TARGETS_S.items():
        if name in values:
            ax.axvline(target, color=PATH_COLOURS[name], ls="--", lw=1, label=f"{name} target p99 <= {target:g} s")
    ax.set_xscale("log")
    shortest = min((max(v[0], 0.001) for v in values.values()), default=0.005)
    ax.set_xlim(min(0.005, shortest * 0.8), max(120.0, longest * 1.2))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("press -> received, real seconds (log scale)")
    ax.set_ylabel("share of copies over the path")
    cuts = ", ".join(f"{c['kelurahan']} {c['sim_minutes']:g} min" for c in rep["paths"]["cuts"])
    ax.set_title(textwrap.shorten(rep["title"] or "", 95) + "\npress -> received per delivery path"
                 + (f" (neighbourhood cut: {cuts})" if cuts else ""), fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write(rep: dict, scn: dict, folder: Path) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [cdf(rep, folder / "latency_cdf.png"), incident_map(rep, scn, folder / "incident_map.png"),
            paths(rep, folder / "paths.png")]


def plan(result: dict, scn: dict, path: Path) -> Path:
    """`panic-sim plan`'s answer: where the units stand, and the search's units -> share curve."""
    from .scenario import buttons
    fig, (ax, cx) = plt.subplots(1, 2, figsize=(12, 5.6), dpi=110, gridspec_kw={"width_ratios": [1.15, 1]})
    bs = buttons(scn)
    ax.scatter([b.lon6 / 1e6 for b in bs], [b.lat6 / 1e6 for b in bs], s=2, c="#bbb", zorder=1, label="RT buttons")
    for k in scn["kelurahan"]:
        ax.annotate(k["name"], (k["lon"], k["lat"]), fontsize=6, ha="center", color="#555", zorder=2)
    st = result["stations"]
    ax.scatter([s["lon"] for s in st], [s["lat"] for s in st], s=[60 + 40 * s["units"] for s in st], marker="^",
               c="#1f3a93", edgecolors="white", zorder=4, label="units (size: how many)")
    for s in st:
        ax.annotate(f"{s['post']} x{s['units']}", (s["lon"], s["lat"]), fontsize=7, xytext=(5, 4),
                    textcoords="offset points", color="#1f3a93", zorder=5)
    ax.set_aspect(1.0 / 0.99)
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.legend(loc="lower left", fontsize=7)
    ax.grid(alpha=0.2)
    ax.tick_params(axis="x", labelrotation=30)
    chk = result["checked_on_fresh_seeds"]["overall"]
    ax.set_title(f"{scn.get('title', result['scenario'])}\n{result['units']} units: {100 * chk['share']:.1f}% within "
                 f"10 min (95% CI {100 * chk['ci95'][0]:.1f}-{100 * chk['ci95'][1]:.1f}), p90 {chk['p90_min']} min",
                 fontsize=8)
    curve = result["curve"]
    cx.plot([c["units"] for c in curve], [100 * c["share"] for c in curve], "o-", color="#1f5fa8", label="all presses")
    cx.plot([c["units"] for c in curve], [100 * c["worst_sector_share"] for c in curve], "s--", color="#e67e22",
            label="worst sector")
    cx.axhline(100 * result["target"], color="#c0392b", ls="--", lw=1.2, label=f"target {result['target']:.0%}")
    cx.set_xlabel("units on duty (the search adds one at a time)")
    cx.set_ylabel("% on scene within 10 min (search seeds)")
    cx.set_ylim(0, 102)
    cx.grid(alpha=0.3)
    cx.legend(loc="lower right", fontsize=8)
    cx.set_title(f"press rate {result['rate_per_day']} a day; operators: {result['dispatch']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def compare(free: dict, recommend: dict, path: Path) -> Path:
    """Both runs' press -> on scene CDFs, with the 10-minute promise."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for rep, label, colour in ((free, "free text", "#7f8c8d"), (recommend, "recommendation", "#1f5fa8")):
        mins = sorted(p["min"] for p in rep["points"] if p["min"] is not None)
        o = rep["sla"]["overall"]
        n = len(mins) + o["not_reached"]
        if mins:
            ax.step(mins, [(i + 1) / n for i in range(len(mins))], where="post", color=colour, lw=2,
                    label=f"{label}: {o['within_10_min_pct']}% within 10 min, p90 {o['p90_min']} min (n={n})")
    ax.axvline(SLA_MIN, color="#c0392b", ls="--", lw=1.5, label="10-minute promise")
    longest = [p["min"] for rep in (free, recommend) for p in rep["points"] if p["min"] is not None]
    ax.set_xlim(0, max([SLA_MIN * 1.5] + [m * 1.05 for m in longest]))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"minutes (simulated; time compression x{free['speed']:g})")
    ax.set_ylabel("share of incidents on scene")
    ax.set_title(f"{free['title']} (seed {free['seed']})\nfree-text dispatch vs the gateway's recommendation",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
