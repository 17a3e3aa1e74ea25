"""The SLA dashboard: on scene within the promise, today and over a chosen period."""
from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ...auth import DESK, VIA_SESSION, needs
from ...domain.dispatch import COMMAND_CENTRE, SECTORS
from ...timeutil import now_ms
from .. import queries, sla
from ..render import WIB, render, sla_ms, tr


def _day(value: str, default: date) -> date:
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        return default


def _day_ms(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=WIB).timestamp() * 1000)


@needs(via=VIA_SESSION, role=DESK)
async def dashboard_page(request: Request) -> Response:
    store, m = request.app.state.store, request.app.state.settings.sla_minutes
    t = tr(request)
    now = now_ms()
    today = datetime.fromtimestamp(now / 1000, WIB).date()
    q = request.query_params
    d_from, d_to = _day(q.get("from", ""), today - timedelta(days=6)), _day(q.get("to", ""), today)
    d_from, d_to = min(d_from, d_to), max(d_from, d_to)
    promise_ms = sla_ms(request)
    # A sector filter narrows the caller's own view (a Polsek's desk cannot widen it).
    sector = q.get("sector", "")
    view = request.user.view
    if sector in SECTORS and sector != COMMAND_CENTRE:
        view = replace(view, sectors=frozenset((sector,)) & view.sectors if view.sectors is not None
                       else frozenset((sector,)))
    else:
        sector = ""

    def compute(a: int, b: int):
        return sla.figures(queries.sla_rows(store, a, b, view=view), now, promise_ms)

    t_items, t_all = await run_in_threadpool(compute, _day_ms(today), _day_ms(today + timedelta(days=1)))
    p_items, p_all = await run_in_threadpool(compute, _day_ms(d_from), _day_ms(d_to + timedelta(days=1)))
    charts = {
        "today_on": Markup(sla.onscene_chart(t_items, m, t("chart_onscene"), t("minutes"))),
        "today_share": Markup(sla.share_chart(t_items, t("chart_share", m=m))),
        "period_on": Markup(sla.onscene_chart(p_items, m, t("chart_onscene"), t("minutes"))),
        "period_share": Markup(sla.share_chart(p_items, t("chart_share", m=m))),
    }
    return render(request, "dashboard.html", today=today.isoformat(), d_from=d_from.isoformat(),
                  d_to=d_to.isoformat(), t_items=t_items, t_all=t_all, p_items=p_items, p_all=p_all,
                  charts=charts, fmt=sla.minutes, sector=sector,
                  sectors=[s for s in SECTORS if s != COMMAND_CENTRE
                           and (request.user.view.sectors is None or s in request.user.view.sectors)],
                  pct=lambda f: "—" if f.share is None else f"{100 * f.share:.0f}%")
