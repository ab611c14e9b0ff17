"""The fast path: answer OPTIONS requests inside the HTTP protocol, before any ASGI machinery.

uvicorn turns every request into a RequestResponseCycle, an asyncio task, two
ASGI messages and a header re-encoding: several times the cost of a whole
cached answer. ``FastPathProtocol`` (the bounded protocol of ``http.protocol``,
with all its rules on hostile input) hands the request to the request pipeline
itself (``serve.pipeline``: the same limiter, cache, decisions, counters and
logs as the ASGI app, misses included) and writes the response with the one
encoder (``serve.responses.encode``). It takes a request at one of two points:

* raw: a read that holds exactly one head on an idle connection, which the
  pipeline's head memo knows or the strict head reader (``http.head``)
  accepts; no parser pass at all;
* parsed: any other OPTIONS head, when httptools reports it complete.

Either way only when it is trivially safe: OPTIONS, HTTP/1.1 or 1.0, no body
(no Content-Length other than 0, no Transfer-Encoding), no Expect, no Upgrade,
no earlier request still being answered (so pipelined requests keep their
order), and the server not draining. Everything else goes to the ASGI app,
which answers through the same pipeline. The bytes are those uvicorn writes
for the same response (tests/e2e/test_fastpath.py compares both paths).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..serve.pipeline import percent_decoded, route_path
from ..serve.responses import encode
from .framing import BODY_OR_UPGRADE, CONTENT_LENGTH
from .head import read_head
from .protocol import BoundedHttpToolsProtocol

if TYPE_CHECKING:
    from .app import CorsHandlerApp


class FastPathProtocol(BoundedHttpToolsProtocol):
    handler: CorsHandlerApp  # set per server by ``for_app``

    @classmethod
    def for_app(cls, app: CorsHandlerApp, read_timeout: float) -> type[FastPathProtocol]:
        return type(cls.__name__, (cls,), {"handler": app, "read_timeout": read_timeout})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._answered_early = False  # the current parsed request was answered at its head
        self._blocked = False  # the current parsed request may have a body or an upgrade
        self._read = _head_reader(self.root_path)

    def data_received(self, data: bytes) -> None:
        if data[-4:] == b"\r\n\r\n" and self._between_requests() and self._answer_raw(data):
            self.server_state.total_requests += 1
            self._answered()
            return
        super().data_received(data)

    def _answer_raw(self, data: bytes) -> bool:
        """Answer a read holding exactly one head the head reader accepts (or the memo knows); False: parse it."""
        app = self.handler
        if app.draining:
            return False  # the app adds Connection: close while draining
        client = self.client
        response = app.pipeline.answer_head(data, self._read, client[0] if client else None)
        if response is None:
            return False
        self.transport.write(encode(response, self._date_lines()))
        return True

    def _between_requests(self) -> bool:
        """No request partly parsed and none being answered: the raw path cannot reorder anything."""
        return (
            not self._message_started
            and not self._unparsed_head_bytes
            and not self._backlog
            and not self._answering()
            and not self._last_request
            and not self.transport.is_closing()
        )

    def _answer(self, target: bytes, headers: list[tuple[bytes, bytes]], keep_alive: bool) -> bool:
        """Write the pipeline's answer (routed by ``route_path``, as the ASGI scope's path is); False: ASGI's."""
        app = self.handler
        if app.draining:
            return False  # the app adds Connection: close while draining
        try:
            path = self.root_path + route_path(target)
        except ValueError:
            return False  # uvicorn's own parse of the target fails the same way there
        client = self.client
        response = app.pipeline.answer(path, headers, client[0] if client else None, fast_path=True)
        self.transport.write(encode(response, self._date_lines(), close=not keep_alive))
        if not keep_alive:
            self.transport.close()
        return True

    # -- the parsed entry point ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._answered_early = False
        self._blocked = False

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        if not self._in_head:
            return  # a trailer field, ignored (http.protocol)
        lowered = self.headers[-1][0]  # uvicorn has just stored the lower-cased name
        if lowered in BODY_OR_UPGRADE or (lowered == CONTENT_LENGTH and value.strip() != b"0"):
            self._blocked = True

    def on_headers_complete(self) -> None:
        parser = self.parser
        if (
            self._blocked
            or parser.get_method() != b"OPTIONS"
            or parser.should_upgrade()
            or self._answering()
            or parser.get_http_version() not in ("1.1", "1.0")
        ):
            super().on_headers_complete()
            return
        self.check_target()
        self._head_done()
        ends = self._ends_connection()
        if not self._answer(self.url, self.headers, keep_alive=not ends):
            super().on_headers_complete()  # the ASGI app answers (ending the head again is harmless)
            return
        self._answered_early = True
        self._last_request = ends

    def on_message_complete(self) -> None:
        if not self._answered_early:
            super().on_message_complete()
            return
        self._answered_early = False
        self._request_done()
        self.on_response_complete()  # uvicorn's bookkeeping: request count, the next deadline


@functools.cache
def _head_reader(root_path: str) -> Callable[[bytes], tuple[str, list[tuple[bytes, bytes]]] | None]:
    """The raw entry's reader for a server's root path: (path as the scope has it, the pipeline's headers)."""

    def read(data: bytes) -> tuple[str, list[tuple[bytes, bytes]]] | None:
        head = read_head(data) if data[:8] == b"OPTIONS " else None
        # the reader's grammar has split the path from the query as httptools does (tests/http/test_head.py)
        return None if head is None else (root_path + percent_decoded(head.raw_path), head.headers)

    return read
