"""The live queue: open and recent incidents, and the stream that keeps it current."""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from ...auth import VIA_SESSION, Principal, needs
from ...domain.lifecycle import TRANSITIONS
from ...domain.visibility import View
from ...store import Store
from ...timeutil import now_ms
from .. import queries
from ..render import render, tr
from ..security import BASE, SESSION_COOKIE

KEEPALIVE_S = 15
POLL_S = 1.0  # also look without a poke: another gateway sharing the database may have changed it
# How often an idle stream re-reads its session; a stream with something to send re-reads it first.
RECHECK_S = 5.0


def snapshot(store: Store, view: View) -> dict:
    now = now_ms()
    cursor = queries.event_cursor(store)  # before the read: the stream resends, never skips
    incs = queries.open_and_recent(store, now, view=view)
    return {"cursor": cursor, "incidents": queries.cards(store, incs, now, view=view)}


async def still_signed_in(request: Request) -> bool:
    """The stream's session is still live with the same user, role, unit and sector: a logout, an
    expiry, a removed account or a changed role ends what it may read."""
    cookie = request.cookies.get(SESSION_COOKIE)
    now: Principal | None = await run_in_threadpool(request.app.state.sessions.principal, cookie) if cookie else None
    user: Principal = request.user
    return now is not None and (now.name, now.role, now.unit, now.sector) == (user.name, user.role, user.unit,
                                                                              user.sector)


@needs(via=VIA_SESSION)
async def queue_page(request: Request) -> Response:
    user = request.user
    if user.role == "responder":
        return RedirectResponse(f"{BASE}/responder", 303)
    data = await run_in_threadpool(snapshot, request.app.state.store, user.view)
    boot = {**data, "now": now_ms(), "sla_ms": request.app.state.settings.sla_minutes * 60_000, "csrf": user.csrf,
            "can_ack": user.role in TRANSITIONS["acknowledge"].roles, "words": tr(request).table()}
    return render(request, "queue.html", boot=boot)


@needs(via=VIA_SESSION)
async def queue_json(request: Request) -> Response:
    return JSONResponse({**await run_in_threadpool(snapshot, request.app.state.store, request.user.view),
                         "now": now_ms()})


def _changes(store: Store, after: int, view: View) -> tuple[int, list[dict]]:
    nxt, ids = queries.changed_after(store, after)
    return nxt, queries.cards(store, queries.incidents_by_id(store, ids, view=view), now_ms(), view=view)


@needs(via=VIA_SESSION)
async def stream(request: Request) -> Response:
    store, hub, view = request.app.state.store, request.app.state.hub, request.user.view
    try:
        cursor = int(request.headers.get("last-event-id") or request.query_params.get("after") or -1)
    except ValueError:
        cursor = -1
    if cursor < 0:
        cursor = await run_in_threadpool(queries.event_cursor, store)

    async def events() -> AsyncIterator[str]:
        nonlocal cursor
        poked = hub.subscribe()
        last_sent = last_checked = time.monotonic()
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
                nxt, items = await run_in_threadpool(_changes, store, cursor, view)
                if items or time.monotonic() - last_checked > RECHECK_S:
                    # Nothing is sent on a session that has ended: the browser reconnects and
                    # gets 401, or a new view.
                    if not await still_signed_in(request):
                        break
                    last_checked = time.monotonic()
                cursor = nxt
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
