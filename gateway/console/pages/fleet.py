"""Armada: the fleet's firmware at a glance (docs/console.md): a halted rollout's reason at
the top, then every button's version, slot, place in the rollout and last command result.
Read-only: releases and commands go through `panic-gateway fleet` or the admin API."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ... import fleet
from ...auth import VIA_SESSION, needs
from ...domain.visibility import sees_area
from ..render import render

ORDER = ("failed", "sent", "later", "waiting", "ok", "skipped")


@needs(via=VIA_SESSION, role="operator")
async def fleet_page(request: Request) -> Response:
    store = request.app.state.store
    st = await run_in_threadpool(fleet.status, store, request.app.state.cfg)
    registry = {d.id: d for d in await run_in_threadpool(store.list_devices)}
    view = request.user.view
    rows = [d for d in st["devices"] if d["dev"] in registry and sees_area(view, registry[d["dev"]].kecamatan)]
    # Trouble first: failed and in-flight devices of the rollout, then the rest by id.
    rows.sort(key=lambda d: (ORDER.index(d["rollout"]) if d["rollout"] in ORDER else len(ORDER), d["dev"]))
    versions: dict[str, int] = {}
    for d in rows:
        versions[d["fw"] or "?"] = versions.get(d["fw"] or "?", 0) + 1
    return render(request, "fleet.html", rollout=st["rollout"], rows=rows, versions=sorted(versions.items()),
                  kelurahan={d: registry[d].kelurahan for d in registry})
