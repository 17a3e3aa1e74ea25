"""HTTP API for operators, responders and dispatch systems (Starlette)."""
from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .auth import CAN_ACT, token_hash
from .models import Incident
from .store import Store, TransitionError
from .timeutil import now_ms

ACTIONS = ("acknowledge", "dispatch", "en_route", "on_scene", "resolve", "false_alarm")


def create_app(store: Store, health: Callable[[], dict], sinks: list[str],
               on_change: Callable[[Incident], None] = lambda inc: None,
               extra_routes: Callable[[Callable[[Request], tuple[str, str]]], list[BaseRoute]] | None = None,
               ) -> Starlette:
    """extra_routes(principal) adds routes that share the bearer-token check (api_ops)."""
    def principal(request: Request) -> tuple[str, str]:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "bearer token required")
        found = store.token(token_hash(token.strip()))
        if found is None:
            raise HTTPException(401, "unknown token")
        return found

    def healthz(request: Request) -> JSONResponse:
        h = health()
        return JSONResponse(h, status_code=200 if h["ok"] else 503)

    def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    def incidents(request: Request) -> JSONResponse:
        principal(request)
        q = request.query_params
        try:
            since = int(q.get("since", 0))
            limit = min(int(q.get("limit", 500)), 5000)
        except ValueError:
            raise HTTPException(400, "since and limit are integers") from None
        items = store.list_incidents(since_ms=since, limit=limit, state=q.get("state"))
        return JSONResponse({"incidents": [i.to_json() for i in items]})

    def incident(request: Request) -> JSONResponse:
        principal(request)
        inc = store.get_incident(request.path_params["id"])
        if inc is None:
            raise HTTPException(404, "no such incident")
        return JSONResponse({**inc.to_json(), "events": store.events(inc.id)})

    def forwards(request: Request) -> JSONResponse:
        principal(request)
        return JSONResponse({"sinks": store.forward_stats()})

    async def act(request: Request) -> JSONResponse:
        role, name = principal(request)
        action = request.path_params["action"]
        if action not in ACTIONS:
            raise HTTPException(404, f"no action {action!r}; one of {', '.join(ACTIONS)}")
        if action not in CAN_ACT.get(role, set()):
            raise HTTPException(403, f"role {role} may not {action}")
        try:
            body = await request.json() if await request.body() else {}
        except ValueError:
            raise HTTPException(400, "body must be JSON") from None
        if not isinstance(body, dict):
            raise HTTPException(400, "body must be a JSON object")
        note, unit = body.get("note"), body.get("unit")
        if note is not None and (not isinstance(note, str) or len(note) > 2000):
            raise HTTPException(400, "note is a string of at most 2000 characters")
        if unit is not None and (not isinstance(unit, str) or not 0 < len(unit) <= 64):
            raise HTTPException(400, "unit is a string of 1 to 64 characters")
        try:
            inc = await run_in_threadpool(store.transition, request.path_params["id"], action,
                                          f"{role}:{name}", now_ms(), sinks, note, unit)
        except LookupError:
            raise HTTPException(404, "no such incident") from None
        except TransitionError as exc:
            raise HTTPException(409, str(exc)) from None
        on_change(inc)
        return JSONResponse(inc.to_json())

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    return Starlette(routes=[
        *(extra_routes(principal) if extra_routes else []),  # first: /api/incidents/{id}.cap
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Route("/api/incidents", incidents),
        Route("/api/incidents/{id}", incident),
        Route("/api/incidents/{id}/{action}", act, methods=["POST"]),
        Route("/api/forwards", forwards),
    ], exception_handlers={HTTPException: http_error})
