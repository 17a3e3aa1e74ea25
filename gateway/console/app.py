"""The dispatch console's routes: login, live queue, incident, responder, devices, SLA.

Server-rendered pages and a little vanilla JS; every change goes through the same
store.transition and on_change path as the REST API, so the button's ack and the
webhooks are exactly the same whichever way an operator acts.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ..api import ACTIONS
from ..auth import CAN_ACT
from ..models import FINAL, STAGES, Incident
from ..store import Store, TransitionError
from ..timeutil import now_ms
from . import accounts, geo, health, i18n, queries, sla
from .hub import Hub
from .security import (
    BASE,
    LOGIN_CSRF_COOKIE,
    SECURITY_HEADERS,
    LoginLimiter,
    NotLoggedIn,
    Sessions,
    check_csrf,
    csp,
    login_redirect,
    new_login_token,
    safe_next,
    same_origin,
)
from .settings import ConsoleSettings

HERE = Path(__file__).parent
WIB = timezone(timedelta(hours=7))  # Malang keeps Western Indonesia Time all year: no DST
ALL_ROLES = ("viewer", "responder", "operator", "admin")
DESK_ROLES = ("viewer", "operator", "admin")
KEEPALIVE_S = 15
POLL_S = 1.0  # also look without a poke: another gateway sharing the database may have changed it


def allowed_actions(role: str, state: str) -> list[str]:
    """Actions that fit both the role and the incident's state, in the order a desk uses them."""
    if state in FINAL:
        return []
    order = STAGES.index(state)
    fits = {"acknowledge": state == "new",
            "dispatch": order < STAGES.index("on_scene"),
            "en_route": state == "dispatched",
            "on_scene": order < STAGES.index("on_scene"),
            "resolve": True,
            "false_alarm": True}
    return [a for a in ACTIONS if fits[a] and a in CAN_ACT.get(role, set())]


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
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class SecurityHeaders:
    """Pure ASGI (not BaseHTTPMiddleware), so the live stream is never buffered."""

    def __init__(self, app, policy: str) -> None:
        self.app, self.policy = app, policy

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                for k, v in {**SECURITY_HEADERS, "Content-Security-Policy": self.policy}.items():
                    if k.lower().encode() not in names:
                        headers.append((k.lower().encode(), v.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_console(store: Store, sinks: list[str], on_change: Callable[[Incident], None], hub: Hub,
                   settings: ConsoleSettings | None = None) -> Starlette:
    settings = settings or ConsoleSettings()
    accounts.ensure_tables(store)
    sessions = Sessions(store, settings.secure_cookie, settings.session_hours * 3600_000)
    limiter = LoginLimiter(settings.login_max_failures, settings.login_window_s)
    sla_ms = settings.sla_minutes * 60_000
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.globals.update(base=BASE, clock=fmt_clock, datetime=fmt_datetime, span=fmt_span,
                       sla_min=settings.sla_minutes, percentile=sla.percentile)
    env.filters["tojson_safe"] = lambda v: Markup(json.dumps(v).replace("<", "\\u003c")
                                                  .replace(">", "\\u003e").replace("&", "\\u0026"))

    def tr(request: Request) -> i18n.Translator:
        return i18n.pick(request.cookies.get(i18n.COOKIE), settings.lang)

    def render(request: Request, name: str, status: int = 200, **ctx) -> Response:
        user = getattr(request.state, "user", None)
        ctx.update(t=tr(request), user=user, csrf=getattr(request.state, "csrf", ""),
                   path=request.url.path, lang=tr(request).lang,
                   can_act=bool(user and CAN_ACT.get(user.role)))
        return templates.TemplateResponse(request, name, ctx, status_code=status)

    def wants_json(request: Request) -> bool:
        return "application/json" in request.headers.get("accept", "")

    # --- login -------------------------------------------------------------------------
    def login_form(request: Request, error: str = "", status: int = 200) -> Response:
        token = new_login_token()
        resp = render(request, "login.html", status, token=token, error=error,
                      next=safe_next(request.query_params.get("next")))
        sessions.set_cookie(resp, LOGIN_CSRF_COOKIE, token, 3600)
        return resp

    async def login_page(request: Request) -> Response:
        if sessions.user(request):
            return RedirectResponse(f"{BASE}/", 303)
        return login_form(request)

    async def login_post(request: Request) -> Response:
        form = await request.form()
        t = tr(request)
        cookie, sent = request.cookies.get(LOGIN_CSRF_COOKIE, ""), str(form.get("csrf", ""))
        # Login CSRF: double-submit token, so no other site can log a browser into our console.
        if not same_origin(request) or not cookie or not hmac.compare_digest(cookie, sent):
            return login_form(request, t("login_expired"), 403)
        name, password = str(form.get("username", ""))[:64], str(form.get("password", ""))[:256]
        ip = request.client.host if request.client else "?"
        wait = limiter.retry_after(ip, name)
        if wait:
            resp = login_form(request, t("login_limited", s=wait), 429)
            resp.headers["Retry-After"] = str(wait)
            return resp
        user = await run_in_threadpool(accounts.check_password, store, name, password)
        if user is None:
            limiter.failed(ip, name)
            return login_form(request, t("login_failed"), 401)
        limiter.succeeded(ip, name)
        nxt = safe_next(str(form.get("next", "")))
        if user.role == "responder" and nxt == f"{BASE}/":
            nxt = f"{BASE}/responder"
        resp = RedirectResponse(nxt, 303)
        await run_in_threadpool(sessions.login, resp, user.name)
        resp.delete_cookie(LOGIN_CSRF_COOKIE, path=BASE)
        return resp

    async def logout(request: Request) -> Response:
        user, csrf = sessions.require(request)
        form = await request.form()
        check_csrf(request, csrf, form.get("csrf"))
        resp = RedirectResponse(f"{BASE}/login", 303)
        sessions.logout(request, resp)
        return resp

    async def set_lang(request: Request) -> Response:
        lang = request.path_params["lang"]
        resp = RedirectResponse(safe_next(request.query_params.get("next")), 303)
        if lang in i18n.LANGS:
            resp.set_cookie(i18n.COOKIE, lang, max_age=365 * 86400, path=BASE, httponly=True,
                            samesite="strict", secure=settings.secure_cookie)
        return resp

    # --- the live queue ----------------------------------------------------------------
    def snapshot() -> dict:
        now = now_ms()
        cursor = queries.event_cursor(store)  # before the read: the stream resends, never skips
        incs = queries.open_and_recent(store, now)
        return {"cursor": cursor, "incidents": queries.cards(store, incs, now)}

    async def queue_page(request: Request) -> Response:
        user, _ = sessions.require(request)
        if user.role == "responder":
            return RedirectResponse(f"{BASE}/responder", 303)
        data = await run_in_threadpool(snapshot)
        t = tr(request)
        boot = {**data, "now": now_ms(), "sla_ms": sla_ms, "csrf": request.state.csrf,
                "can_ack": "acknowledge" in CAN_ACT.get(user.role, set()), "words": t.table()}
        return render(request, "queue.html", boot=boot)

    async def queue_json(request: Request) -> Response:
        sessions.require(request)
        return JSONResponse({**await run_in_threadpool(snapshot), "now": now_ms()})

    async def stream(request: Request) -> Response:
        sessions.require(request)
        try:
            cursor = int(request.headers.get("last-event-id") or request.query_params.get("after") or -1)
        except ValueError:
            cursor = -1
        if cursor < 0:
            cursor = await run_in_threadpool(queries.event_cursor, store)

        def changes(after: int) -> tuple[int, list[dict]]:
            nxt, ids = queries.changed_after(store, after)
            return nxt, queries.cards(store, queries.incidents_by_id(store, ids), now_ms())

        async def events():
            nonlocal cursor
            poked = hub.subscribe()
            last_sent = time.monotonic()
            try:
                yield "retry: 1000\n\n"
                while not hub.done:
                    try:
                        await asyncio.wait_for(poked.wait(), POLL_S)
                    except TimeoutError:
                        pass
                    poked.clear()
                    if hub.done or await request.is_disconnected():
                        break
                    cursor, items = await run_in_threadpool(changes, cursor)
                    for item in items:
                        yield f"id: {cursor}\nevent: incident\ndata: {json.dumps(item)}\n\n"
                        last_sent = time.monotonic()
                    if time.monotonic() - last_sent > KEEPALIVE_S:
                        yield f"event: ping\ndata: {now_ms()}\n\n"
                        last_sent = time.monotonic()
            finally:
                hub.unsubscribe(poked)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # --- one incident ----------------------------------------------------------------------
    async def incident_page(request: Request) -> Response:
        user, _ = sessions.require(request)
        inc_id = request.path_params["id"]
        inc = await run_in_threadpool(store.get_incident, inc_id)
        if inc is None:
            raise HTTPException(404, "not_found")
        events = await run_in_threadpool(store.events, inc.id)
        falses = (await run_in_threadpool(queries.false_alarms, store, [inc.dev], now_ms())).get(inc.dev, 0)
        timeline, prev = [], inc.press_ms
        for e in events:
            timeline.append({**e, "since_press": e["at_ms"] - inc.press_ms, "step": e["at_ms"] - prev})
            prev = e["at_ms"]
        units = await run_in_threadpool(accounts.units, store)
        boot = {"incident": {k: v for k, v in inc.to_json().items()}, "tile_url": settings.tile_url,
                "tile_attribution": settings.tile_attribution, "words": tr(request).table(),
                "sla_ms": sla_ms, "now": now_ms()}
        return render(request, "incident.html", inc=inc, dev=inc.device or {}, timeline=timeline,
                      latency=inc.latencies(), actions=allowed_actions(user.role, inc.state),
                      falses=falses, units=units, boot=boot, sla_ms=sla_ms,
                      ok=request.query_params.get("ok", ""), err=request.query_params.get("err", ""))

    async def act(request: Request) -> Response:
        user, csrf = sessions.require(request)
        form = await request.form()
        check_csrf(request, csrf, form.get("csrf") or request.headers.get("x-csrf-token"))
        inc_id, action = request.path_params["id"], request.path_params["action"]
        if action not in ACTIONS:
            raise HTTPException(404, "not_found")
        if action not in CAN_ACT.get(user.role, set()):
            raise HTTPException(403, "forbidden")
        note = str(form.get("note") or "").strip()[:2000] or None
        unit = str(form.get("unit") or "").strip()[:64] or None
        back = safe_next(str(form.get("next") or f"{BASE}/incidents/{inc_id}"))
        try:
            inc = await run_in_threadpool(store.transition, inc_id, action, f"{user.role}:{user.name}",
                                          now_ms(), sinks, note, unit)
        except LookupError:
            raise HTTPException(404, "not_found") from None
        except TransitionError as exc:
            if wants_json(request):
                return JSONResponse({"error": str(exc)}, status_code=409)
            return RedirectResponse(f"{back}{'&' if '?' in back else '?'}err={quote(str(exc)[:200])}", 303)
        on_change(inc)
        if wants_json(request):
            return JSONResponse({"state": inc.state, "id": inc.id})
        return RedirectResponse(f"{back}{'&' if '?' in back else '?'}ok={action}", 303)

    # --- responder on a phone ----------------------------------------------------------------
    async def responder_page(request: Request) -> Response:
        user, _ = sessions.require(request, ("responder", "operator", "admin"))
        unit = request.query_params.get("unit", "") if user.role != "responder" else ""
        unit = user.unit or unit
        incs = await run_in_threadpool(queries.for_unit, store, unit) if unit else []
        items = await run_in_threadpool(queries.cards, store, incs, now_ms())
        for item in items:
            item["actions"] = [a for a in allowed_actions(user.role, item["state"])
                               if a in ("en_route", "on_scene", "resolve")]
        return render(request, "responder.html", unit=unit, items=items, now=now_ms(), sla_ms=sla_ms,
                      ok=request.query_params.get("ok", ""), err=request.query_params.get("err", ""))

    # --- devices ---------------------------------------------------------------------------
    async def devices_page(request: Request) -> Response:
        sessions.require(request, ALL_ROLES)
        kel = request.query_params.get("kelurahan", "")
        rows, source = await run_in_threadpool(health.rows, store, now_ms())
        kelurahan = sorted({r["kelurahan"] for r in rows if r["kelurahan"]})
        shown = [r for r in rows if not kel or r["kelurahan"] == kel]
        counts: dict[str, int] = {}
        for r in shown:
            counts[r["state"]] = counts.get(r["state"], 0) + 1
        return render(request, "devices.html", rows=shown, kelurahan=kelurahan, kel=kel, source=source,
                      counts=counts, total=len(shown))

    # --- SLA ---------------------------------------------------------------------------------
    async def dashboard_page(request: Request) -> Response:
        sessions.require(request, DESK_ROLES)
        t = tr(request)
        now = now_ms()
        today = datetime.fromtimestamp(now / 1000, WIB).date()
        q = request.query_params
        try:
            d_from = datetime.strptime(q.get("from", ""), "%Y-%m-%d").date()
        except ValueError:
            d_from = today - timedelta(days=6)
        try:
            d_to = datetime.strptime(q.get("to", ""), "%Y-%m-%d").date()
        except ValueError:
            d_to = today
        d_from, d_to = min(d_from, d_to), max(d_from, d_to)

        def day_ms(d) -> int:
            return int(datetime(d.year, d.month, d.day, tzinfo=WIB).timestamp() * 1000)

        def compute(a: int, b: int):
            return sla.figures(queries.sla_rows(store, a, b), now, sla_ms)

        t_items, t_all = await run_in_threadpool(compute, day_ms(today), day_ms(today + timedelta(days=1)))
        p_items, p_all = await run_in_threadpool(compute, day_ms(d_from), day_ms(d_to + timedelta(days=1)))
        m = settings.sla_minutes
        charts = {
            "today_on": Markup(sla.onscene_chart(t_items, m, t("chart_onscene"), t("minutes"))),
            "today_share": Markup(sla.share_chart(t_items, t("chart_share", m=m))),
            "period_on": Markup(sla.onscene_chart(p_items, m, t("chart_onscene"), t("minutes"))),
            "period_share": Markup(sla.share_chart(p_items, t("chart_share", m=m))),
        }
        return render(request, "dashboard.html", today=today.isoformat(), d_from=d_from.isoformat(),
                      d_to=d_to.isoformat(), t_items=t_items, t_all=t_all, p_items=p_items, p_all=p_all,
                      charts=charts, fmt=sla.minutes, pct=lambda f: "—" if f.share is None else f"{100 * f.share:.0f}%")

    async def geo_json(request: Request) -> Response:
        sessions.require(request)
        devices = await run_in_threadpool(store.list_devices)
        return JSONResponse(geo.layers(settings.areas, devices))

    # --- errors ------------------------------------------------------------------------------
    async def not_logged_in(request: Request, exc: NotLoggedIn) -> Response:
        if request.method != "GET" or wants_json(request) or request.url.path.endswith("/events"):
            return JSONResponse({"error": "login required"}, status_code=401)
        return login_redirect(request)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        if wants_json(request) or request.headers.get("x-csrf-token") is not None:
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        t = tr(request)
        msg = {403: t("forbidden"), 404: t("not_found")}.get(exc.status_code, str(exc.detail))
        if exc.detail == "csrf":
            msg = t("login_expired")
        return render(request, "error.html", exc.status_code, message=msg, code=exc.status_code)

    routes = [
        Route("/", queue_page),
        Route("/login", login_page),
        Route("/login", login_post, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/lang/{lang}", set_lang),
        Route("/queue.json", queue_json),
        Route("/events", stream),
        Route("/incidents/{id}", incident_page),
        Route("/incidents/{id}/{action}", act, methods=["POST"]),
        Route("/responder", responder_page),
        Route("/devices", devices_page),
        Route("/dashboard", dashboard_page),
        Route("/geo.json", geo_json),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={NotLoggedIn: not_logged_in, HTTPException: http_error})
    app.add_middleware(SecurityHeaders, policy=csp(settings.tile_url))
    return app


def mount_console(app: Starlette, store: Store, sinks: list[str], on_change: Callable[[Incident], None],
                  hub: Hub, settings: ConsoleSettings | None = None) -> None:
    """Serve the console under /console of the API app (one process, one port)."""
    console = create_console(store, sinks, on_change, hub, settings)

    async def root(request: Request) -> Response:
        return RedirectResponse(f"{BASE}/", 303)

    app.router.routes.append(Mount(BASE, app=console))
    app.router.routes.append(Route("/", root))
