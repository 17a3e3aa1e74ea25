"""Logging in and out, and choosing the language."""
from __future__ import annotations

import hmac

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ...auth import VIA_SESSION, needs
from .. import accounts, i18n
from ..render import render, signed_in, tr
from ..security import (
    BASE,
    LOGIN_CSRF_COOKIE,
    check_csrf,
    new_login_token,
    safe_next,
    same_origin,
    small_form,
)

MAX_NAME = 64
MAX_PASSWORD = 256


def login_form(request: Request, *, error: str = "", status: int = 200) -> Response:
    token = new_login_token()
    resp = render(request, "login.html", status=status, token=token, error=error,
                  next=safe_next(request.query_params.get("next")))
    request.app.state.sessions.set_cookie(request, resp, LOGIN_CSRF_COOKIE, token, 3600)
    return resp


async def login_page(request: Request) -> Response:
    if signed_in(request):
        return RedirectResponse(f"{BASE}/", 303)
    return login_form(request)


async def login_post(request: Request) -> Response:
    state = request.app.state
    form = await small_form(request)
    t = tr(request)
    cookie, sent = request.cookies.get(LOGIN_CSRF_COOKIE, ""), str(form.get("csrf", ""))
    # Login CSRF: double-submit token, so no other site can log a browser into our console.
    if not same_origin(request) or not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
        return login_form(request, error=t("login_expired"), status=403)
    name, password = str(form.get("username", ""))[:MAX_NAME], str(form.get("password", ""))[:MAX_PASSWORD]
    ip = request.client.host if request.client else "?"
    wait = state.limiter.retry_after(ip, name)
    if wait:
        resp = login_form(request, error=t("login_limited", s=wait), status=429)
        resp.headers["Retry-After"] = str(wait)
        return resp
    user = await run_in_threadpool(accounts.check_password, state.store, name, password)
    if user is None:
        state.limiter.failed(ip, name)
        return login_form(request, error=t("login_failed"), status=401)
    state.limiter.succeeded(ip, name)
    nxt = safe_next(str(form.get("next", "")))
    if user.role == "responder" and nxt == f"{BASE}/":
        nxt = f"{BASE}/responder"
    resp = RedirectResponse(nxt, 303)
    await run_in_threadpool(state.sessions.login, request, resp, user.name)
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path=BASE)
    return resp


@needs(via=VIA_SESSION)
async def logout(request: Request) -> Response:
    form = await small_form(request)
    check_csrf(request, request.user.csrf, form.get("csrf"))
    resp = RedirectResponse(f"{BASE}/login", 303)
    await run_in_threadpool(request.app.state.sessions.logout, request, resp)
    return resp


async def set_lang(request: Request) -> Response:
    lang = request.path_params["lang"]
    resp = RedirectResponse(safe_next(request.query_params.get("next")), 303)
    if lang in i18n.LANGS:
        resp.set_cookie(i18n.COOKIE, lang, max_age=365 * 86400, path=BASE, httponly=True,
                        samesite="strict", secure=request.app.state.sessions.secure_for(request))
    return resp
