"""HTTP API for operators, responders and dispatch systems (Starlette)."""
from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .auth import token_hash
from .store import Store


def create_app(store: Store, health: Callable[[], dict]) -> Starlette:
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

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    return Starlette(routes=[
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Route("/api/incidents", incidents),
        Route("/api/incidents/{id}", incident),
        Route("/api/forwards", forwards),
    ], exception_handlers={HTTPException: http_error})
