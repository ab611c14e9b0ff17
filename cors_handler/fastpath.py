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

import asyncio
import re
import urllib.parse
from typing import TYPE_CHECKING, Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from .protocol import MAX_HEAD_BYTES, MAX_HEADERS, BoundedHttpToolsProtocol

if TYPE_CHECKING:
    from .app import CorsHandlerApp
    from .responses import Response

_CLOSE_LINE = b"connection: close\r\n"

# The strict subset of HTTP/1.1 the raw fast path reads itself; anything else goes to httptools.
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_ORIGIN_FORM = re.compile(rb"/[!-~]*")  # an absolute path (and query) of visible ASCII
_FORBIDDEN = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n")  # CTLs, bare CR or LF
# Headers that may announce a body or a protocol switch: such a request is never answered early.
_BODY_OR_UPGRADE = (b"transfer-encoding", b"expect", b"upgrade")
_NEEDS_PARSER = (*_BODY_OR_UPGRADE, b"content-length", b"connection")


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
        self._idle_since = 0.0
        self._keep_alive_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        # One whole bodiless OPTIONS head in one read, on an idle connection: read it here.
        if data[:8] == b"OPTIONS " and data[-4:] == b"\r\n\r\n" and self._idle() and self._answer_raw(data):
            return
        super().data_received(data)

    def _idle(self) -> bool:
        """No request partly parsed and none being answered: the raw path cannot reorder anything."""
        return (
            not self._message_started
            and not self._unparsed_head_bytes
            and (self.cycle is None or self.cycle.response_complete)
            and not self.transport.is_closing()
        )

    def _answer_raw(self, data: bytes) -> bool:
        """Answer a preflight head from its bytes when it is strictly well-formed and cached; else False."""
        if len(data) > MAX_HEAD_BYTES or data.find(b"\r\n\r\n") != len(data) - 4 or _FORBIDDEN.search(data):
            return False
        lines = data[:-4].split(b"\r\n")
        if len(lines) > MAX_HEADERS + 1:
            return False
        request_line = lines[0].split(b" ")
        if len(request_line) != 3 or request_line[2] != b"HTTP/1.1" or not _ORIGIN_FORM.fullmatch(request_line[1]):
            return False
        headers: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not _HEADER_NAME.fullmatch(name):
                return False
            name = name.lower()
            if name in _NEEDS_PARSER:
                return False  # bodies, upgrades and connection options: httptools and uvicorn decide
            headers.append((name, value.strip(b" \t")))
        response = self._cached_answer(request_line[1].partition(b"?")[0], headers)
        if response is None:
            return False
        self._write(response, keep_alive=True)
        self._disarm_read_timer()
        self.server_state.total_requests += 1
        self._idle_since = self.loop.time()
        if self._keep_alive_timer is None or self.timeout_keep_alive_task is not self._keep_alive_timer:
            self._unset_keepalive_if_required()  # uvicorn's timer (after an ASGI answer) would ignore this one
            self._keep_alive_timer = self.loop.call_later(self.timeout_keep_alive, self._keep_alive_check)
            self.timeout_keep_alive_task = self._keep_alive_timer
        return True

    def _keep_alive_check(self) -> None:
        """uvicorn's keep-alive timeout, without a new timer per request: one per idle period.

        uvicorn cancels and re-arms a timer on every request; on the raw path that was a
        tenth of the work. Here the timer stays armed while requests keep coming and, when
        it fires, re-arms itself for the rest of the idle time since the last answer.
        """
        self.timeout_keep_alive_task = self._keep_alive_timer = None
        remaining = self._idle_since + self.timeout_keep_alive - self.loop.time()
        if remaining > 0 and not self.transport.is_closing():
            self._keep_alive_timer = self.loop.call_later(remaining, self._keep_alive_check)
            self.timeout_keep_alive_task = self._keep_alive_timer
        elif self._idle():
            self.timeout_keep_alive_handler()

    def _write(self, response: Response, keep_alive: bool) -> None:
        self.transport.write(
            b"".join((
                STATUS_LINE[response.status], self._date_lines(), response.header_lines,
                b"" if keep_alive else _CLOSE_LINE, b"\r\n", response.body,
            ))
        )  # fmt: skip
        if not keep_alive:
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._answered = False
        self._blocked = False

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        lowered = self.headers[-1][0]  # uvicorn has just stored the lower-cased name
        if lowered in _BODY_OR_UPGRADE or (lowered == b"content-length" and value.strip() != b"0"):
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
        response = self._cached_answer(httptools.parse_url(self.url).path, self.headers)
        if response is None:
            return False
        self._write(response, keep_alive=version == "1.1" and parser.should_keep_alive())
        return True

    def _cached_answer(self, raw_path: bytes, headers: list[tuple[bytes, bytes]]) -> Response | None:
        """The app's cached answer for this request, the path decoded as uvicorn decodes it for the scope."""
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        client = self.client
        return self.handler.answer_cached(self.root_path + path, headers, client[0] if client else None)

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
