"""The SMS relay's edge: `POST /api/sms/inbound`, called by the SMS daemon's hook.

Only a token of the relay role reaches it (`panic-gateway sms setup` makes one), and that
token reaches nothing else: it carries no viewer scope, so every reading route refuses it.
The answer is 200 with the verdict whether the SMS was taken or refused (the hook's job is
done either way); anything else means the gateway did not take it and the hook keeps the
message for `panic-gateway sms replay-inbox`.
"""
from __future__ import annotations

import threading

from starlette.authentication import requires
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from .auth import VIA_TOKEN
from .sms import settings as sms_settings
from .sms.relay import SmsRelay, request_body

RELAY_ROLE = "sms_relay"
_lock = threading.Lock()


def _relay(state) -> SmsRelay:
    with _lock:
        relay = getattr(state, "sms_relay", None)
        if relay is None:
            ingest = getattr(state, "sms_ingest", None)
            if ingest is None:
                raise HTTPException(503, "this gateway does not ingest (no SMS relay)")
            cfg, store = state.cfg, state.store
            relay = SmsRelay(device_by_sim=store.device_by_sim, device=store.get_device, ingest=ingest,
                             per_number_per_hour=sms_settings.load(cfg).per_number_per_hour, root=cfg.topic_root,
                             stale_past_ms=cfg.stale_past_s * 1000, stale_future_ms=cfg.stale_future_s * 1000)
            state.sms_relay = relay
        return relay


@requires(VIA_TOKEN, status_code=401)
async def inbound(request: Request) -> JSONResponse:
    if request.user.role != RELAY_ROLE:
        raise HTTPException(403, "only the SMS relay's token may hand in SMS")
    try:
        number, text = request_body(await request.body())
    except ValueError as exc:
        raise HTTPException(400, str(exc)[:200]) from None
    relay = _relay(request.app.state)
    verdict = await run_in_threadpool(relay.handle, number, text)
    return JSONResponse({"refused": verdict.reason, "reply": verdict.reply, "incident": verdict.incident,
                         "stage": verdict.stage})


ROUTES: list[BaseRoute] = [Route("/api/sms/inbound", inbound, methods=["POST"])]
