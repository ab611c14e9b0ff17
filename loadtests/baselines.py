"""The baselines loadtests/bench.py runs on the same uvicorn (uvloop + httptools) as cors-handler.

``bare_app``: a raw ASGI app answering every request with a constant 204: the ceiling
of any ASGI app on this server (no policy, no headers, no work at all).

``starlette_app``: Starlette's CORSMiddleware, what most Python users would put in
front of an app, configured with the same origins as the bench policy.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from .scenarios import ALLOWED_ORIGIN, ROTATING_REGEX

_START = {"type": "http.response.start", "status": 204, "headers": []}
_BODY = {"type": "http.response.body", "body": b""}


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send(_START)
        await send(_BODY)
    elif scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})


starlette_app = Starlette(
    middleware=[
        Middleware(
            CORSMiddleware,
            allow_origins=[ALLOWED_ORIGIN],
            allow_origin_regex=ROTATING_REGEX,
            allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["content-type", "authorization", "x-request-id"],
            max_age=600,
        )
    ]
)
