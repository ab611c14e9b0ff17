"""The fast path: answer cached preflights inside the HTTP protocol, before any ASGI machinery.

uvicorn turns every request into a RequestResponseCycle, an asyncio task, two
ASGI messages and a header re-encoding: several times the cost of our whole
cached answer. For the one request shape this service exists for, none of it
is needed. ``FastPathProtocol`` (uvicorn's httptools protocol, with the head
bounds of ``BoundedHttpToolsProtocol``) looks at each request when its head
is complete and, when it is trivially safe, writes the cached response's
bytes straight to the transport:

* the method is OPTIONS, HTTP/1.1 or 1.0, with no body (no Content-Length
  other than 0, no Transfer-Encoding), no Expect and no Upgrade;
* no earlier request on the connection is still being answered (pipelined
  requests keep their order), and the server is not draining;
* the app finds the response in its cache (``CorsHandlerApp.answer_cached``:
  same limiter, same counters and logs as the ASGI path).

Everything else, and every cache miss, goes to the ASGI app, which stays the
single source of truth: the fast path only replays what it computed. The
bytes are the ones uvicorn would write (same status line table, the server's
Date header, the headers in order, ``connection: close`` when the request
does not keep the connection alive), which tests/e2e/test_fastpath.py checks.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from .protocol import BoundedHttpToolsProtocol

if TYPE_CHECKING:
    from .app import CorsHandlerApp

_CLOSE_LINE = b"connection: close\r\n"


class FastPathProtocol(BoundedHttpToolsProtocol):
    handler: CorsHandlerApp  # set per server by ``for_app``

    @classmethod
    def for_app(cls, app: CorsHandlerApp, read_timeout: float) -> type[FastPathProtocol]:
        return type(cls.__name__, (cls,), {"handler": app, "read_timeout": read_timeout})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._answered = False
        self._blocked = False  # the request may have a body or an upgrade: never the fast path
        self._default_headers: object = None
        self._leading = b""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._answered = False
        self._blocked = False

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        lowered = name.lower()
        if lowered in (b"transfer-encoding", b"expect", b"upgrade") or (
            lowered == b"content-length" and value.strip() != b"0"
        ):
            self._blocked = True

    def on_headers_complete(self) -> None:
        if not self._blocked and self._try_fast_path():
            self._answered = True
            self._head_done()  # the head bounds, as the ASGI path's on_headers_complete does
            return
        super().on_headers_complete()

    def _try_fast_path(self) -> bool:
        parser = self.parser
        if parser.get_method() != b"OPTIONS" or parser.should_upgrade():
            return False
        if self.cycle is not None and not self.cycle.response_complete:
            return False  # an earlier request is still being answered: keep the order
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            return False
        raw_path = httptools.parse_url(self.url).path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        client = self.client
        response = self.handler.answer_cached(self.root_path + path, self.headers, client[0] if client else None)
        if response is None:
            return False
        keep_alive = version == "1.1" and parser.should_keep_alive()
        self.transport.write(
            b"".join((
                STATUS_LINE[response.status], self._date_lines(), response.header_lines,
                b"" if keep_alive else _CLOSE_LINE, b"\r\n", response.body,
            ))
        )  # fmt: skip
        if not keep_alive:
            self.transport.close()
        return True

    def _date_lines(self) -> bytes:
        """The server's default headers (Date), encoded once per change (uvicorn replaces the list each second)."""
        current = self.server_state.default_headers
        if current is not self._default_headers:
            self._default_headers = current
            self._leading = b"".join([b"%s: %s\r\n" % pair for pair in current])
        return self._leading

    def on_message_complete(self) -> None:
        if not self._answered:
            super().on_message_complete()
            return
        self._answered = False
        self._request_done()
        self.on_response_complete()  # uvicorn's own bookkeeping: request count, keep-alive timer
