"""SLA report for the CLI and `/api/report`: latencies per step (p50/p90/p99, ms) and the
share of incidents with an officer on scene within the promise, per kelurahan and overall,
as a table, CSV, JSON or a CDF plot.

The numbers are domain/sla.py's (which incidents count, which percentile, which period):
this module only lays them out.
"""
from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime

from .domain import sla
from .domain.dispatch import sector_of
from .domain.sla import STEPS
from .models import Incident
from .store import ReportRow, Store

UNITS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}


def parse_since(text: str | None, now_ms: int) -> int:
    """'' / None: everything; '7d', '12h', '30m': that long ago; Unix ms; or an ISO date/time."""
    if not text:
        return 0
    m = re.fullmatch(r"(\d+)([smhdw])", text.strip())
    if m:
        return now_ms - int(m.group(1)) * UNITS_MS[m.group(2)]
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since {text!r}: use 7d, 12h, 30m, Unix ms or an ISO date") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _summary(s: sla.SlaSummary) -> dict:
    return {
        "incidents": s.incidents,
        "counted": s.n,
        "cancelled": s.cancelled,
        "false_alarms": s.false_alarms,
        "escalated": s.escalated,
        "steps": {name: {"n": st.n, "p50_ms": st.p50, "p90_ms": st.p90, "p99_ms": st.p99}
                  for name, st in s.steps.items()},
        "sla": {"within": s.within, "missed": s.missed, "pending": s.pending,
                "share": None if s.share_within is None else round(s.share_within, 4)},
        # The standard timers beside the promise (domain/sla.py TIMERS).
        "timers": {name: {"step": r.timer.step, "limit_s": r.timer.limit_s, "target": r.timer.target,
                          "standard": r.timer.standard, "within": r.within, "missed": r.missed,
                          "pending": r.pending, "share": None if r.share is None else round(r.share, 4),
                          "met": r.met}
                   for name, r in s.timers.items()},
    }


def compute(rows: list[ReportRow], *, since_ms: int, until_ms: int, now_ms: int, sla_s: int,
            kinds: tuple[str, ...]) -> dict:
    overall, per = sla.by_kelurahan(rows, sla_s=sla_s, now_ms=now_ms, kinds=kinds)
    return {
        "since_ms": since_ms, "until_ms": until_ms, "sla_s": sla_s, "kinds": list(kinds),
        "overall": _summary(overall),
        "kelurahan": [{"kelurahan": k, **_summary(v)} for k, v in per.items()],
    }


def by_sector(store: Store, rows: list[ReportRow], *, now_ms: int, sla_s: int, kinds: tuple[str, ...]) -> list[dict]:
    """The same figures per sector (the Polsek of the device's kecamatan, domain/dispatch.py)."""
    devices = store.devices_by_id(list({r.incident.dev for r in rows}))
    labelled = [(r.incident, sector_of(d.kecamatan) if (d := devices.get(r.incident.dev)) else sla.UNREGISTERED)
                for r in rows]
    _, per = sla.by_kelurahan(labelled, sla_s=sla_s, now_ms=now_ms, kinds=kinds)
    return [{"sector": k, **_summary(v)} for k, v in per.items()]


def build(store: Store, *, since_ms: int, until_ms: int, now_ms: int, sla_s: int = sla.SLA_S,
          kinds: tuple[str, ...] = ("panic",)) -> tuple[dict, list[ReportRow]]:
    rows = store.report_incidents(since_ms, until_ms, kinds)
    rep = compute(rows, since_ms=since_ms, until_ms=until_ms, now_ms=now_ms, sla_s=sla_s, kinds=kinds)
    rep["sectors"] = by_sector(store, rows, now_ms=now_ms, sla_s=sla_s, kinds=kinds)
    return rep, rows


# --- output ------------------------------------------------------------------------------
def fmt_ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms // 60_000}m{(ms % 60_000) // 1000:02d}s"


SHORT = {"press_to_received": "press>recv", "received_to_acknowledged": "recv>ack",
         "received_to_dispatched": "recv>disp", "press_to_on_scene": "press>scene"}


def _scopes(report: dict):
    yield "ALL", report["overall"]
    for k in report["kelurahan"]:
        yield k["kelurahan"], k


def _table_scopes(report: dict):
    yield from _scopes(report)
    for k in report.get("sectors", []):
        yield f"sector {k['sector']}", k


def to_table(report: dict) -> str:
    head = (["scope", "n"] + [f"{SHORT[s]} p50/p90/p99" for s in STEPS] + [f"<= {report['sla_s'] // 60} min"]
            + [f"{t.name} <= {t.limit_s} s ({t.target:.0%})" for t in sla.TIMERS])
    rows = []
    for name, s in _table_scopes(report):
        cells = [name, str(s["incidents"])]
        for step in STEPS:
            st = s["steps"][step]
            cells.append("/".join(fmt_ms(st[f"p{p}_ms"]) for p in (50, 90, 99)) if st["n"] else "-")
        promise = s["sla"]
        share = ("-" if promise["share"] is None
                 else f"{promise['share'] * 100:.1f}% ({promise['within']}/{promise['within'] + promise['missed']})")
        cells.append(share)
        for t in sla.TIMERS:
            tm = s["timers"][t.name]
            cells.append("-" if tm["share"] is None else f"{tm['share'] * 100:.1f}%{'' if tm['met'] else ' (missed)'}")
        rows.append(cells)
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)).rstrip() for r in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def to_csv(report: dict) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    head = ["scope", "incidents", "cancelled", "false_alarms", "escalated"]
    for step in STEPS:
        head += [f"{step}_n", f"{step}_p50_ms", f"{step}_p90_ms", f"{step}_p99_ms"]
    head += ["sla_within", "sla_missed", "sla_pending", "sla_share"]
    for t in sla.TIMERS:
        head += [f"{t.name}_within", f"{t.name}_missed", f"{t.name}_share"]
    w.writerow(head)
    for name, s in _scopes(report):
        row = [name, s["incidents"], s["cancelled"], s["false_alarms"], s["escalated"]]
        for step in STEPS:
            st = s["steps"][step]
            row += [st["n"], st["p50_ms"], st["p90_ms"], st["p99_ms"]]
        row += [s["sla"]["within"], s["sla"]["missed"], s["sla"]["pending"], s["sla"]["share"]]
        for t in sla.TIMERS:
            tm = s["timers"][t.name]
            row += [tm["within"], tm["missed"], tm["share"]]
        w.writerow(["" if v is None else v for v in row])
    return out.getvalue()


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2)


def to_png(report: dict, rows: list[ReportRow], path) -> None:
    """CDF of press -> on scene (minutes), overall and per kelurahan, with the SLA line."""
    import matplotlib
    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    sla_min = report["sla_s"] / 60
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)

    def minutes(incs):
        return [(i.on_scene_ms - i.press_ms) / 60_000 for i in incs if i.on_scene_ms is not None]

    right = max([sla_min, *minutes([i for i, _ in rows])]) * 1.08

    def cdf(values, **kw):
        # From 0 at the press to 1 past the slowest, so even a single incident shows as a step.
        values = sorted(values)
        n = len(values)
        ax.step([0.0, *values, right], [0.0] + [(i + 1) / n for i in range(n)] + [1.0], where="post", **kw)

    by_kel: dict[str, list[Incident]] = {}
    for inc, kel in rows:
        by_kel.setdefault(kel or sla.UNREGISTERED, []).append(inc)
    for kel, incs in sorted(by_kel.items()):
        if minutes(incs):
            cdf(minutes(incs), linewidth=1, alpha=0.7, label=kel)
    overall = minutes([i for i, _ in rows])
    if overall:
        cdf(overall, linewidth=2.5, color="black", label="all")
    else:
        ax.text(0.5, 0.5, "no incident with an officer on scene yet", transform=ax.transAxes, ha="center")
    ax.axvline(sla_min, color="red", linestyle="--", linewidth=1.5, label=f"promise: {sla_min:g} min")
    share = report["overall"]["sla"]["share"]
    title = "Press to officer on scene"
    if share is not None:
        title += f": {share * 100:.1f}% within {sla_min:g} min"
    ax.set_title(title)
    ax.set_xlabel("minutes from the press")
    ax.set_ylabel("share of incidents (CDF)")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, right)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


FORMATS = ("table", "csv", "json", "png")
