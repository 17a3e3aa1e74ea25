"""A cap on request bodies, enforced before anything parses them.

Pure ASGI, so it costs nothing on responses (the live stream stays unbuffered). A declared
Content-Length over the cap is answered 413 without reading a byte; a body without one
(chunked) is counted as it streams and cut off at the cap, so no form or JSON parser ever
holds more than `max_bytes` of an unauthenticated caller's data.
"""
from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Every body the gateway takes is small: a login form, a CSRF token and a note of at most
# 2000 characters, an action's JSON. 64 KiB leaves room and bounds any parser's memory.
MAX_BODY = 64 * 1024


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_BODY) -> None:
        self.app, self.max = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max
            except ValueError:
                too_big = True  # not a length: refused like an oversize one
            if too_big:
                response = JSONResponse({"error": f"request body over {self.max} bytes"}, status_code=413,
                                        headers={"Connection": "close"})
                return await response(scope, receive, send)
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max:
                    # Raised inside the endpoint's read: the app's handler answers 413.
                    raise HTTPException(413, f"request body over {self.max} bytes")
            return message

        await self.app(scope, counted, send)
