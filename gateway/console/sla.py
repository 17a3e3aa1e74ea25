"""The dashboard's SLA figures per kelurahan (domain/sla.py's numbers) and their charts as
inline SVG (no CDN, no JS, prints well)."""
from __future__ import annotations

from dataclasses import dataclass
from html import escape

from ..domain import sla
from ..store import ReportRow

# The templates take percentiles of the step lists (q as a fraction): the one method.
percentile = sla.percentile


@dataclass(frozen=True)
class Figures:
    """One scope of the dashboard (a kelurahan or overall, `*`) over domain/sla.py's summary."""
    name: str
    summary: sla.SlaSummary

    @property
    def onscene(self) -> tuple[int, ...]:  # press -> on scene, ms
        return self.summary.steps["press_to_on_scene"].values

    @property
    def ack(self) -> tuple[int, ...]:  # received -> acknowledged, ms
        return self.summary.steps["received_to_acknowledged"].values

    @property
    def dispatch(self) -> tuple[int, ...]:  # received -> dispatched, ms
        return self.summary.steps["received_to_dispatched"].values

    @property
    def total(self) -> int:
        return self.summary.n

    @property
    def counted(self) -> int:  # reached the scene or ran past the promise
        return self.summary.decided

    @property
    def within(self) -> int:
        return self.summary.within

    @property
    def open(self) -> int:
        return self.summary.open

    @property
    def p50(self) -> int | None:
        return self.summary.p50

    @property
    def p90(self) -> int | None:
        return self.summary.p90

    @property
    def share(self) -> float | None:
        return self.summary.share_within


def figures(rows: list[ReportRow], now_ms: int, sla_ms: int) -> tuple[list[Figures], Figures]:
    """Per kelurahan and overall, by domain/sla.py's one rule."""
    overall, per = sla.by_kelurahan(rows, sla_s=sla_ms // 1000, now_ms=now_ms)
    return [Figures(k, v) for k, v in per.items()], Figures("*", overall)


def minutes(ms) -> str:
    if ms is None:
        return "—"
    s = round(ms / 1000)
    return f"{s // 60}:{s % 60:02d}"


# --- charts ---------------------------------------------------------------------------------
FONT = "font-family='Inter,Segoe UI,Roboto,Helvetica,Arial,sans-serif'"


def onscene_chart(items: list[Figures], sla_min: int, title: str, label_min: str) -> str:
    """Horizontal bars: p50 (solid) and p90 (light) press->on scene per kelurahan, promise line."""
    rows = [f for f in items if f.onscene]
    left, right, row_h, top = 130, 24, 30, 34
    width = 620
    height = top + max(1, len(rows)) * row_h + 30
    top_min = max(sla_min * 1.5, max(((f.p90 or 0) / 60000 for f in rows), default=0) * 1.1)
    scale = (width - left - right) / top_min
    out = [f"<svg class='chart' viewBox='0 0 {width} {height}' role='img' aria-label='{escape(title)}' "
           f"xmlns='http://www.w3.org/2000/svg' {FONT}>",
           f"<text x='0' y='16' font-size='13' font-weight='600' fill='#1c2b3a'>{escape(title)}</text>"]
    step = 2 if top_min <= 20 else 5
    for m in range(0, int(top_min) + 1, step):
        x = left + m * scale
        out.append(f"<line x1='{x:.1f}' y1='{top - 6}' x2='{x:.1f}' y2='{height - 24}' stroke='#e3e8ee'/>"
                   f"<text x='{x:.1f}' y='{height - 8}' font-size='10' fill='#6b7a8c' text-anchor='middle'>{m}</text>")
    for n, f in enumerate(rows):
        y = top + n * row_h
        p50, p90 = (f.p50 or 0) / 60000, (f.p90 or 0) / 60000
        late = p90 > sla_min
        out.append(f"<text x='{left - 8}' y='{y + 15}' font-size='12' fill='#1c2b3a' text-anchor='end'>{escape(f.name)}</text>"
                   f"<rect x='{left}' y='{y + 3}' width='{p90 * scale:.1f}' height='18' rx='2' "
                   f"fill='{'#f4b6b0' if late else '#b9cde6'}'><title>p90 {minutes(f.p90)}</title></rect>"
                   f"<rect x='{left}' y='{y + 7}' width='{p50 * scale:.1f}' height='10' rx='2' "
                   f"fill='{'#c0392b' if p50 > sla_min else '#1f5fa8'}'><title>p50 {minutes(f.p50)}</title></rect>"
                   f"<text x='{left + p90 * scale + 5:.1f}' y='{y + 16}' font-size='10' fill='#44556a'>"
                   f"{minutes(f.p50)} / {minutes(f.p90)}</text>")
    x = left + sla_min * scale
    out.append(f"<line x1='{x:.1f}' y1='{top - 10}' x2='{x:.1f}' y2='{height - 24}' stroke='#c0392b' "
               f"stroke-width='2' stroke-dasharray='5 3'/>"
               f"<text x='{x + 4:.1f}' y='{top - 12}' font-size='10' fill='#c0392b'>{sla_min} {escape(label_min)}</text>")
    if not rows:
        out.append(f"<text x='{left}' y='{top + 15}' font-size='12' fill='#6b7a8c'>—</text>")
    out.append("</svg>")
    return "".join(out)


def share_chart(items: list[Figures], title: str, target: float = 0.9) -> str:
    """Share of panics on scene within the promise, per kelurahan; the 90 % line as target."""
    rows = [f for f in items if f.counted]
    left, right, row_h, top = 130, 96, 30, 34
    width = 620
    height = top + max(1, len(rows)) * row_h + 30
    scale = (width - left - right) / 100
    out = [f"<svg class='chart' viewBox='0 0 {width} {height}' role='img' aria-label='{escape(title)}' "
           f"xmlns='http://www.w3.org/2000/svg' {FONT}>",
           f"<text x='0' y='16' font-size='13' font-weight='600' fill='#1c2b3a'>{escape(title)}</text>"]
    for p in range(0, 101, 20):
        x = left + p * scale
        out.append(f"<line x1='{x:.1f}' y1='{top - 6}' x2='{x:.1f}' y2='{height - 24}' stroke='#e3e8ee'/>"
                   f"<text x='{x:.1f}' y='{height - 8}' font-size='10' fill='#6b7a8c' text-anchor='middle'>{p}%</text>")
    for n, f in enumerate(rows):
        y = top + n * row_h
        share = f.share or 0.0
        pct = 100 * share
        color = "#1e8449" if share >= target else "#d68910" if share >= target - 0.15 else "#c0392b"
        out.append(f"<text x='{left - 8}' y='{y + 15}' font-size='12' fill='#1c2b3a' text-anchor='end'>{escape(f.name)}</text>"
                   f"<rect x='{left}' y='{y + 4}' width='{100 * scale:.1f}' height='16' rx='2' fill='#eef1f5'/>"
                   f"<rect x='{left}' y='{y + 4}' width='{pct * scale:.1f}' height='16' rx='2' fill='{color}'>"
                   f"<title>{f.within}/{f.counted}</title></rect>"
                   f"<text x='{left + pct * scale + 4:.1f}' y='{y + 16}' font-size='10' fill='#44556a'>"
                   f"{pct:.0f}% ({f.within}/{f.counted})</text>")
    x = left + target * 100 * scale
    out.append(f"<line x1='{x:.1f}' y1='{top - 10}' x2='{x:.1f}' y2='{height - 24}' stroke='#1c2b3a' "
               f"stroke-width='1.5' stroke-dasharray='4 3'/>")
    if not rows:
        out.append(f"<text x='{left}' y='{top + 15}' font-size='12' fill='#6b7a8c'>—</text>")
    out.append("</svg>")
    return "".join(out)
