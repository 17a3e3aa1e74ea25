"""The buttons: health per device, and the map layers (kelurahan centres, posts, buttons)."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...auth import VIA_SESSION, needs
from ...domain.visibility import redact_registry, sees_area
from ...timeutil import now_ms
from .. import geo, health
from ..render import render


@needs(via=VIA_SESSION)
async def devices_page(request: Request) -> Response:
    kel = request.query_params.get("kelurahan", "")
    rows, source = await run_in_threadpool(health.rows, request.app.state.store, now_ms())
    view = request.user.view
    rows = [redact_registry(view, r) for r in rows if sees_area(view, r["kecamatan"])]
    kelurahan = sorted({r["kelurahan"] for r in rows if r["kelurahan"]})
    shown = [r for r in rows if not kel or r["kelurahan"] == kel]
    counts: dict[str, int] = {}
    for r in shown:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    return render(request, "devices.html", rows=shown, kelurahan=kelurahan, kel=kel, source=source,
                  counts=counts, total=len(shown))


@needs(via=VIA_SESSION)
async def geo_json(request: Request) -> Response:
    devices = await run_in_threadpool(request.app.state.store.list_devices)
    devices = [d for d in devices if sees_area(request.user.view, d.kecamatan)]
    return JSONResponse(geo.layers(request.app.state.settings.areas, devices))
