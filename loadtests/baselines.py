"""The Python baselines loadtests/bench.py runs, on uvloop + httptools like cors-handler.

``bare_app``: a raw ASGI app answering every request with a constant 204: the ceiling
of any ASGI app on this server (no policy, no headers, no work at all).

``starlette_app``: Starlette's CORSMiddleware, what most Python users would put in
front of an app, configured with the same origins as the bench policy.

``python -m loadtests.baselines constant --port N``: no ASGI, no uvicorn: a uvloop
``asyncio.Protocol`` that feeds every read to an httptools parser and, for each
complete request, writes the same constant bytes (cors-handler's own answer to the
bench's allowed preflight, Date line included, so both send the same number of bytes).
The Python limit: the event loop's read and write calls and one httptools pass per
request, and nothing else.

``python -m loadtests.baselines floor --port N``: the floor under that: a uvloop Protocol
that parses nothing and writes the same constant bytes for every read that ends a head
(wrk sends one request per read and waits for its answer). One Python call per request
and the event loop's read and write: no Python server on uvloop answers faster, so a
ratio against any other server is bounded by this one's.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
from typing import Any

import httptools
import uvloop
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


def allowed_answer() -> bytes:
    """cors-handler's bytes for the bench's allowed preflight, with a Date line as uvicorn writes it."""
    from cors_handler.config.compile import compile_settings
    from cors_handler.config.settings import load_settings
    from cors_handler.serve.pipeline import preview
    from cors_handler.serve.responses import encode

    from .scenarios import PATH, POLICY

    headers = [(b"origin", ALLOWED_ORIGIN.encode()), (b"access-control-request-method", b"PUT")]
    response = preview(compile_settings(load_settings(**POLICY)).policy, PATH, headers)[1]
    assert response.status == 204, response
    date = b"date: " + email.utils.formatdate(usegmt=True).encode() + b"\r\n"
    return encode(response, b"server: uvicorn\r\n" + date)


class ConstantBytesProtocol(asyncio.Protocol):
    """Parse with httptools, answer every complete request with ``ANSWER``; close on bad input."""

    ANSWER = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport  # uvloop's TCPTransport (not an asyncio.Transport subclass)
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_complete(self) -> None:
        self.transport.write(self.ANSWER)


class FloorProtocol(asyncio.Protocol):
    """Write ``ANSWER`` for every read that ends a head; parse nothing (the floor of a Python server on uvloop)."""

    ANSWER = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        if data.endswith(b"\r\n\r\n"):
            self.transport.write(self.ANSWER)


async def _serve(protocol: type[asyncio.Protocol], port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol, "127.0.0.1", port, backlog=2048)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the constant-bytes Protocol or the floor baseline.")
    parser.add_argument("kind", choices=["constant", "floor"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    protocol = ConstantBytesProtocol if args.kind == "constant" else FloorProtocol
    protocol.ANSWER = allowed_answer()
    uvloop.run(_serve(protocol, args.port))


if __name__ == "__main__":
    main()
