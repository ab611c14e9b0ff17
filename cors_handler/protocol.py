"""uvicorn's httptools protocol with hard bounds on the request head.

httptools accepts any number of headers of any size, buffering a partial
header internally: a client could make one connection hold megabytes. This
subclass bounds the head two ways:

* precisely, as the parser reports the URL and each complete header: more
  than MAX_HEADERS headers, or more than MAX_HEAD_BYTES of URL and headers,
  stops parsing;
* coarsely, for a head that never completes: bytes received while a head is
  still open are counted across reads; past MAX_HEAD_BYTES the connection is
  answered and closed. (Memory held is at most the limit plus one read.)

Either way the client gets 431 with a JSON error_type, and any malformed
request gets a JSON 400 instead of uvicorn's plain text; the connection is
closed in both cases, as uvicorn does.

Slow clients: a request (head and body) must arrive within ``read_timeout``
seconds of its first byte, and a new connection must start its first request
within the same time; otherwise the connection is closed (with a JSON 408
when part of a request had arrived). uvicorn's keep-alive timeout covers the
idle time between requests.

At shutdown uvicorn closes every connection that has no request in progress.
That would drop a request whose bytes are still arriving (or a connection
accepted a moment before the listener closed). Such connections get a short
grace to deliver their request, which is then answered; the app adds
``Connection: close`` while draining, so the connection ends after it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .responses import encode_http11, json_response

MAX_HEAD_BYTES = 32 * 1024
MAX_HEADERS = 100
# At shutdown, a connection whose request has not fully arrived gets this long to finish it.
SHUTDOWN_GRACE_SECONDS = 1.0

_TOO_LARGE = json_response(
    431,
    {"error_type": "request_header_fields_too_large",
     "message": f"Request head exceeds {MAX_HEADERS} headers or {MAX_HEAD_BYTES} bytes"},
)  # fmt: skip
_MALFORMED = json_response(400, {"error_type": "invalid_request", "message": "Malformed HTTP request"})
_TIMEOUT = json_response(408, {"error_type": "request_timeout", "message": "Request not received in time"})


class HeadTooLarge(Exception):
    """Raised inside a parser callback to stop parsing an oversized head."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    read_timeout: float = 10.0  # set per server by ``with_read_timeout``

    @classmethod
    def with_read_timeout(cls, seconds: float) -> type[BoundedHttpToolsProtocol]:
        return type(cls.__name__, (cls,), {"read_timeout": seconds})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None
        self._message_started = False
        self._in_head = True
        self._unparsed_head_bytes = 0
        self._head_size = 0
        self._header_count = 0
        self._head_too_large = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_read_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_read_timer()
        super().connection_lost(exc)

    def _arm_read_timer(self) -> None:
        if self._read_timer is None:
            self._read_timer = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _disarm_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self._message_started or self._unparsed_head_bytes:
            self.transport.write(encode_http11(_TIMEOUT, tuple(self.server_state.default_headers), close=True))
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._unparsed_head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._unparsed_head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._head_too_large = True
            self.send_400_response("head too large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._message_started = True
        self._arm_read_timer()
        self._in_head = True
        self._head_size = 0
        self._header_count = 0

    def _grow_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > MAX_HEAD_BYTES or self._header_count > MAX_HEADERS:
            self._head_too_large = True
            raise HeadTooLarge

    def on_url(self, url: bytes) -> None:
        self._grow_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._grow_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_done()
        super().on_headers_complete()

    def _head_done(self) -> None:
        self._in_head = False
        self._unparsed_head_bytes = 0

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._request_done()

    def _request_done(self) -> None:
        self._message_started = False
        self._disarm_read_timer()
        self._in_head = True

    def send_400_response(self, msg: str) -> None:
        """Every parse failure ends here (uvicorn calls it); answer in JSON and close."""
        response = _TOO_LARGE if self._head_too_large else _MALFORMED
        self.transport.write(encode_http11(response, tuple(self.server_state.default_headers), close=True))
        self.transport.close()

    def shutdown(self) -> None:
        waiting_for_request = self.cycle is None or (self._in_head and self._unparsed_head_bytes > 0)
        if waiting_for_request and not self.transport.is_closing():
            self.loop.call_later(SHUTDOWN_GRACE_SECONDS, self._close_unless_busy)
            return
        super().shutdown()

    def _close_unless_busy(self) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()
        else:
            self.cycle.keep_alive = False
