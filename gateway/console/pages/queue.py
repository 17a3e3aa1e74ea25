"""The live queue: open and recent incidents, and the stream that keeps it current."""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from ...auth import VIA_SESSION, needs
from ...domain.lifecycle import TRANSITIONS
from ...store import Store
from ...timeutil import now_ms
from .. import queries
from ..render import render, tr
from ..security import BASE

KEEPALIVE_S = 15
POLL_S = 1.0  # also look without a poke: another gateway sharing the database may have changed it


def snapshot(store: Store) -> dict:
    now = now_ms()
    cursor = queries.event_cursor(store)  # before the read: the stream resends, never skips
    incs = queries.open_and_recent(store, now)
    return {"cursor": cursor, "incidents": queries.cards(store, incs, now)}


@needs(via=VIA_SESSION)
async def queue_page(request: Request) -> Response:
    user = request.user
    if user.role == "responder":
        return RedirectResponse(f"{BASE}/responder", 303)
    data = await run_in_threadpool(snapshot, request.app.state.store)
    boot = {**data, "now": now_ms(), "sla_ms": request.app.state.settings.sla_minutes * 60_000, "csrf": user.csrf,
            "can_ack": user.role in TRANSITIONS["acknowledge"].roles, "words": tr(request).table()}
    return render(request, "queue.html", boot=boot)


@needs(via=VIA_SESSION)
async def queue_json(request: Request) -> Response:
    return JSONResponse({**await run_in_threadpool(snapshot, request.app.state.store), "now": now_ms()})


def _changes(store: Store, after: int) -> tuple[int, list[dict]]:
    nxt, ids = queries.changed_after(store, after)
    return nxt, queries.cards(store, queries.incidents_by_id(store, ids), now_ms())


@needs(via=VIA_SESSION)
async def stream(request: Request) -> Response:
    store, hub = request.app.state.store, request.app.state.hub
    try:
        cursor = int(request.headers.get("last-event-id") or request.query_params.get("after") or -1)
    except ValueError:
        cursor = -1
    if cursor < 0:
        cursor = await run_in_threadpool(queries.event_cursor, store)

    async def events() -> AsyncIterator[str]:
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
                cursor, items = await run_in_threadpool(_changes, store, cursor)
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
