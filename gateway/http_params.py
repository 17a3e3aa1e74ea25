"""Integer query parameters of the HTTP API: a bad one is a 400 with its reason, never an
overflow in the store (SQLite and PostgreSQL hold 64-bit integers; PostgreSQL refuses a
negative LIMIT)."""
from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def int_param(request: Request, name: str, default: int, *, lo: int = INT64_MIN, hi: int = INT64_MAX) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        raise HTTPException(400, f"{name} is an integer from {lo} to {hi}")
    return value
