"""Turning a page's data into HTML: the templates, their formatters and the words of the request's language."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from ..auth import VIA_SESSION
from ..domain.lifecycle import can_act
from . import i18n, sla
from .security import BASE
from .settings import ConsoleSettings

HERE = Path(__file__).parent
WIB = timezone(timedelta(hours=7))  # Malang keeps Western Indonesia Time all year: no DST


def fmt_clock(ms: int | None) -> str:
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, WIB).strftime("%H:%M:%S")


def fmt_datetime(ms: int | None) -> str:
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, WIB).strftime("%d-%m-%Y %H:%M:%S")


def fmt_span(ms: int | None) -> str:
    if ms is None:
        return "—"
    s = max(0, int(ms)) / 1000
    if s < 60:
        return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    s = round(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _tojson_safe(value: Any) -> Markup:
    # Inside <script type="application/json">: no character may close the element.
    return Markup(json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def templates(settings: ConsoleSettings) -> Jinja2Templates:
    t = Jinja2Templates(directory=str(HERE / "templates"))
    t.env.globals.update(base=BASE, clock=fmt_clock, datetime=fmt_datetime, span=fmt_span,
                         sla_min=settings.sla_minutes, percentile=sla.percentile)
    t.env.filters["tojson_safe"] = _tojson_safe
    return t


def tr(request: Request) -> i18n.Translator:
    """The words in the language the browser chose (cookie), else the configured default."""
    return i18n.pick(request.cookies.get(i18n.COOKIE), request.app.state.settings.lang)


def signed_in(request: Request) -> Any:
    """The console user, or None on the login and error pages (a bearer token is no console user)."""
    return request.user if VIA_SESSION in request.auth.scopes else None


def render(request: Request, name: str, *, status: int = 200, **ctx: Any) -> Response:
    user = signed_in(request)
    t = tr(request)
    ctx.update(t=t, user=user, csrf=user.csrf if user else "", path=request.url.path, lang=t.lang,
               can_act=bool(user and can_act(user.role)))
    return request.app.state.templates.TemplateResponse(request, name, ctx, status_code=status)


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def sla_ms(request: Request) -> int:
    """The promise (on scene within N minutes) in milliseconds, as the pages draw it."""
    return request.app.state.settings.sla_minutes * 60_000
