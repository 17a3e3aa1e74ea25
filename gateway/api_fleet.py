"""HTTP API for the fleet (docs/gateway.md "Fleet updates and remote commands"): the rollout
and every device's firmware for operators; widening, halting and remote commands for admins.

A release is stored only by `panic-gateway fleet release FILE` on the gateway's host (the
signed file comes from the release manager, and its bundle is larger than any API body);
here it is rolled further or halted. A command is audited under the caller's identity.
"""
from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from . import fleet
from .auth import VIA_TOKEN, needs
from .domain import rollout
from .http_params import int_param
from .timeutil import now_ms


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(400, "body must be JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "body must be a JSON object")
    return body


@needs(via=VIA_TOKEN, role="operator")
async def fleet_status(request: Request) -> JSONResponse:
    st = await run_in_threadpool(fleet.status, request.app.state.store, request.app.state.cfg)
    return JSONResponse(st)


@needs(via=VIA_TOKEN, role="admin")
async def widen(request: Request) -> JSONResponse:
    body = await _body(request)
    try:
        pct = rollout.parse_pct(body.get("to", ""))
    except rollout.RolloutError as exc:
        raise HTTPException(400, str(exc)) from None
    store = request.app.state.store
    current = await run_in_threadpool(store.current_rollout)
    if current is None:
        raise HTTPException(409, "no rollout: store a release with `panic-gateway fleet release FILE` first")
    if current.state == "halted" and body.get("resume") is not True:
        raise HTTPException(409, f"the rollout is halted: {current.why} (send \"resume\": true to go on regardless)")
    if pct < current.pct or (current.state == "done" and pct == current.pct):
        raise HTTPException(409, f"a rollout only widens: release {current.seq} is at {current.pct:g} %")
    r = await run_in_threadpool(lambda: store.start_rollout(current.seq, pct, by=request.user.identity,
                                                            at_ms=now_ms()))
    return JSONResponse({"seq": r.seq, "pct": r.pct, "state": r.state})


@needs(via=VIA_TOKEN, role="admin")
async def halt(request: Request) -> JSONResponse:
    body = await _body(request)
    why = body.get("why", "")
    if not isinstance(why, str) or len(why) > 200:
        raise HTTPException(400, "why is a string of at most 200 characters")
    store = request.app.state.store
    current = await run_in_threadpool(store.current_rollout)
    if current is None or current.state != "active":
        raise HTTPException(409, "no active rollout")
    text = f"halted by {request.user.identity}" + (f": {why}" if why else "")
    await run_in_threadpool(lambda: store.set_rollout_state(current.seq, "halted", text, at_ms=now_ms()))
    return JSONResponse({"seq": current.seq, "state": "halted", "why": text})


@needs(via=VIA_TOKEN, role="operator")
async def commands(request: Request) -> JSONResponse:
    dev = request.path_params["id"]
    store = request.app.state.store
    if await run_in_threadpool(store.get_device, dev) is None:
        raise HTTPException(404, "no such device")
    limit = min(int_param(request, "limit", 50), 1000)
    return JSONResponse({"dev": dev, "commands": await run_in_threadpool(store.commands, dev, limit)})


@needs(via=VIA_TOKEN, role="admin")
async def send_command(request: Request) -> JSONResponse:
    dev = request.path_params["id"]
    body = await _body(request)
    op, args = body.get("op"), body.get("args", {})
    if not isinstance(op, str) or not isinstance(args, dict):
        raise HTTPException(400, "op is a string, args an object")
    worker = getattr(request.app.state, "fleet", None)
    if await run_in_threadpool(request.app.state.store.get_device, dev) is None:
        raise HTTPException(404, "no such device")
    if worker is None:
        raise HTTPException(409, "this gateway runs no fleet worker")
    try:
        n = await run_in_threadpool(worker.send, dev, op, args, request.user.identity)
    except fleet.CommandError as exc:
        raise HTTPException(400 if "fleet connection" not in str(exc) else 409, str(exc)) from None
    except ValueError as exc:  # too big for the device
        raise HTTPException(400, str(exc)) from None
    return JSONResponse({"dev": dev, "n": n, "op": op}, status_code=202)


ROUTES: list[BaseRoute] = [
    Route("/api/fleet", fleet_status),
    Route("/api/fleet/rollout", widen, methods=["POST"]),
    Route("/api/fleet/halt", halt, methods=["POST"]),
    Route("/api/devices/{id}/commands", commands),
    Route("/api/devices/{id}/commands", send_command, methods=["POST"]),
]
