"""uvicorn's httptools protocol, made safe on hostile bytes: bounded heads, no smuggling, no pinned connections.

Head bounds. httptools accepts any number of headers of any size, buffering a
partial header internally. The head is bounded two ways: precisely, as the
parser reports the URL and each header (more than MAX_HEADERS headers, or more
than MAX_HEAD_BYTES counted as ``len(url) + sum(len(name) + len(value) + 4)``),
and coarsely, by the bytes received while a head is still open. Either way the
client gets a JSON 431; any other malformed request gets a JSON 400.

The last request. Some requests end the connection: one carrying ``Upgrade``
(answered as if it had none: RFC 9110 lets a server ignore it), one that does
not keep the connection alive (``Connection: close``, HTTP/1.0), and a
malformed one. Nothing after such a head is parsed as a request, so bytes that
a proxy sent as a body can never be answered as a hidden request. (llhttp ends
an upgrade request at its head and uvicorn used to parse the next read as a new
request: smuggling through any proxy that forwards the body.)

In order, up to the first error. Pipelined requests are answered in order; an
error answer (400, 431, 408) waits for the answers queued before it, then
closes the connection. The fast path answers synchronously while parsing, so
both paths send the same answers.

One deadline per connection. Every state has one, kept as a number that a
single timer checks when it fires (re-arming for what is left), so a request
costs no timer operation: a new connection and bytes that are not yet a whole
request (a lone CRLF, a partial head, a slow body) or an answer the client does
not read get ``read_timeout`` from the moment that state began; an idle
connection after its last answer gets uvicorn's keep-alive timeout. Then the
connection closes, with a JSON 408 only where a head had begun and nothing was
answered for it (an answered request whose body stalls gets no second answer).

A peer that does not read. While the transport's buffer is over its high-water
mark nothing more is read, so no more requests are answered into it; a
connection whose answers cannot be flushed is aborted one ``read_timeout`` after
it was closed, so its buffer and descriptor are freed.

At shutdown uvicorn closes every connection that has no request in progress.
That would drop a request whose bytes are still arriving (or a connection
accepted a moment before the listener closed). Such connections get a short
grace to deliver their request, which is then answered; the app adds
``Connection: close`` while draining, so the connection ends after it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..cors.limits import MAX_HEAD_BYTES, MAX_HEADERS, MAX_PIPELINED_REQUESTS
from ..serve.pipeline import route_path
from ..serve.responses import HEAD_TOO_LARGE, MALFORMED_REQUEST, REQUEST_TIMEOUT, Response, encode
from .framing import UPGRADE

# At shutdown, a connection whose request has not fully arrived gets this long to finish it.
SHUTDOWN_GRACE_SECONDS = 1.0


class HeadTooLarge(Exception):
    """Raised inside a parser callback to stop parsing an oversized head."""


class AfterLastRequest(Exception):
    """Raised inside a parser callback when a request begins after the connection's last one."""


class NoPath(Exception):
    """Raised inside a parser callback for a request target without a path (``OPTIONS http://a``): a JSON 400."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    read_timeout: float = 10.0  # set per server by ``with_read_timeout``

    @classmethod
    def with_read_timeout(cls, seconds: float) -> type[BoundedHttpToolsProtocol]:
        return type(cls.__name__, (cls,), {"read_timeout": seconds})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the request being parsed
        self._message_started = False
        self._in_head = True
        self._unparsed_head_bytes = 0
        self._backlog = b""  # bytes read but not parsed: the queue of requests is full
        self._head_size = 0
        self._header_count = 0
        self._head_too_large = False
        self._upgrade = False
        # the connection
        self._last_request = False  # the current request ends the connection: parse nothing after it
        self._pending_error: Response | None = None  # sent once the answers queued before it are out
        self._deadline = 0.0
        self._idle = False  # waiting for a next request after an answer (keep-alive deadline)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._default_headers: object = None
        self._leading = b""
        self._with_app: Any = None  # the request the ASGI app is answering (uvicorn's RequestResponseCycle)

    # -- the deadline -------------------------------------------------------------------------

    def _expect_within(self, seconds: float) -> None:
        """The connection must make progress within ``seconds``: move the deadline (rarely the timer)."""
        deadline = self.loop.time() + seconds
        self._deadline = deadline
        if self._timer is None or self._timer_at > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_later(seconds, self._deadline_check)
            self._timer_at = deadline

    def _deadline_check(self) -> None:
        self._timer = None
        remaining = self._deadline - self.loop.time()
        if remaining > 0:
            self._timer = self.loop.call_later(remaining, self._deadline_check)
            self._timer_at = self._deadline
            return
        transport = self.transport
        if transport.is_closing():
            if transport.get_write_buffer_size():
                transport.abort()  # the peer has not read what it was sent: give up on delivering it
            return
        if self._message_started and self._in_head and not self._answering():
            self._write_and_close(REQUEST_TIMEOUT)  # a request had begun and nothing was answered for it
        else:
            transport.close()
        if transport.get_write_buffer_size():
            self._expect_within(self.read_timeout)  # the answers still buffered get one more deadline

    def _answering(self) -> bool:
        """A request is with the app, or queued behind one: its answer is not fully written yet."""
        return self.cycle is not None and not self.cycle.response_complete

    def _answered(self) -> None:
        """An answer is out and none is pending: wait for the next request, or for the rest of it."""
        if self._message_started or (self._in_head and self._unparsed_head_bytes):
            self._expect_within(self.read_timeout)
        else:
            self._idle = True
            self._expect_within(self.timeout_keep_alive)

    # -- uvicorn's hooks ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect_within(self.read_timeout)  # the first request must begin within read_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # uvicorn marks only the last request parsed as disconnected: the one with the app, pipelined before
        # it and waiting for the peer to read, would wake up and write to the closed transport (a RuntimeError
        # and an error-level "Exception in ASGI application" per connection, as often as a client likes).
        if self._with_app is not None and not self._with_app.response_complete:
            self._with_app.disconnected = True
        super().connection_lost(exc)

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        self._with_app = cycle
        super()._start_asgi_task(cycle, app)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, without its per-request keep-alive timer, with the last-request rule and the queue bound."""
        if self._last_request or self.transport.is_closing():
            return  # bytes after the last request are never parsed
        if self._idle:
            self._idle = False
            self._expect_within(self.read_timeout)
        if self._backlog:  # parsing has stopped (reading too): keep the bytes in order
            self._backlog += data
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        """Parse ``data``, stopping where the requests read but not answered reach MAX_PIPELINED_REQUESTS.

        uvicorn queues a request parsed while another is answered, and pausing reading
        does not stop the parser working through bytes already read: a read of
        thousands of tiny pipelined requests would become thousands of queued
        requests. So a read holding several heads is parsed one head at a time, and
        once the queue is full the rest waits, unparsed, until an answer drains it
        (``on_response_complete``): at most MAX_PIPELINED_REQUESTS requests and one
        read's bytes per connection, whatever the client sends.
        """
        start, size = 0, len(data)
        while start < size:
            if len(self.pipeline) >= MAX_PIPELINED_REQUESTS:
                self._backlog = data[start:]
                self.flow.pause_reading()
                return
            end = data.find(b"\r\n\r\n", start, size - 4) + 4  # a head ends here, unless it is the last one
            end = size if end < 4 else end
            if not self._parse(data if start == 0 and end == size else data[start:end]):
                return
            start = end

    def _parse(self, chunk: bytes) -> bool:
        """Feed ``chunk`` to the parser; False when the connection takes no more (an error, its last request).

        Within one read, the parser itself refuses a request after the last one (``on_message_begin``).
        """
        if self.transport.is_closing():
            return False
        if self._in_head:
            self._unparsed_head_bytes += len(chunk)
        try:
            self.parser.feed_data(chunk)
        except httptools.HttpParserUpgrade:
            return False  # on_headers_complete has made it the last request, answered as if without Upgrade
        except httptools.HttpParserError:
            if not self._last_request:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return False
        if self._in_head and self._unparsed_head_bytes > MAX_HEAD_BYTES and not self._last_request:
            self._head_too_large = True
            self.send_400_response("head too large")
            return False
        return True

    def on_message_begin(self) -> None:
        if self._last_request:
            raise AfterLastRequest
        super().on_message_begin()
        if self._idle:  # a request pipelined behind the last answer has begun
            self._idle = False
            self._expect_within(self.read_timeout)
        self._message_started = True
        self._in_head = True
        self._head_size = 0
        self._header_count = 0
        self._upgrade = False

    def _grow_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > MAX_HEAD_BYTES or self._header_count > MAX_HEADERS:
            self._head_too_large = True
            raise HeadTooLarge

    def on_url(self, url: bytes) -> None:
        self._grow_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # a chunked body's trailer field: body framing, never a request header (RFC 9110 6.5.1)
        self._header_count += 1
        self._grow_head(len(name) + len(value) + 4)
        super().on_header(name, value)
        if self.headers[-1][0] == UPGRADE:  # uvicorn has just stored the lower-cased name
            self._upgrade = True

    def check_target(self) -> None:
        """Raise NoPath for a request target with no path (``OPTIONS http://a``): a 400 while the head is open.

        uvicorn decodes a None path after the head: the callback's error closed the connection unanswered.
        """
        try:
            route_path(self.url)
        except ValueError:
            raise NoPath from None

    def on_headers_complete(self) -> None:
        self.check_target()  # before the head is done: its error is answered as a malformed head
        self._head_done()
        super().on_headers_complete()
        if self._ends_connection():
            self._last_request = True
            self.cycle.keep_alive = False  # uvicorn adds connection: close and closes after the answer

    def _ends_connection(self) -> bool:
        parser = self.parser
        if self._upgrade or parser.should_upgrade():
            return True
        return parser.get_http_version() != "1.1" or not parser.should_keep_alive()

    def _head_done(self) -> None:
        self._in_head = False
        self._unparsed_head_bytes = 0

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._request_done()
        if not self._answering() and not self._last_request:
            self._answered()  # the answer went out before the body had arrived

    def _request_done(self) -> None:
        self._message_started = False
        self._in_head = True

    def on_response_complete(self) -> None:
        """uvicorn's, with the deadline instead of its keep-alive timer, and the pending error answer."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            self._expect_within(self.read_timeout)
        if self._backlog:  # the queue has room again: parse on where parsing stopped
            backlog, self._backlog = self._backlog, b""
            self._feed(backlog)
            if self.transport.is_closing():
                return
        if not self.pipeline and not self._backlog and not self.flow.write_paused:
            self.flow.resume_reading()  # (uvicorn resumes at every answer: its queue then grows by a read each time)
        if self._answering():
            return
        if self._pending_error is not None:
            self._write_and_close(self._pending_error)
        elif self._last_request:
            self.transport.close()  # the connection ends after this answer (a broken body, see send_400_response)
        else:
            self._answered()

    def send_400_response(self, msg: str) -> None:
        """Every parse failure ends here: a JSON 400 (431 for a head too large), after the answers before it.

        A failure in the body of a request that was answered at its head gets no second
        answer (one response per request: a proxy would hand it to its next request);
        the connection just closes after that answer.
        """
        self._last_request = True
        if self._message_started and not self._in_head:
            response = None
        else:
            response = HEAD_TOO_LARGE if self._head_too_large else MALFORMED_REQUEST
        if self._answering():
            self._pending_error = response
        elif response is not None:
            self._write_and_close(response)
        else:
            self.transport.close()

    def _write_and_close(self, response: Response) -> None:
        self.transport.write(encode(response, self._date_lines(), close=True))
        self.transport.close()

    def _date_lines(self) -> bytes:
        """The server's default headers (Date), encoded once per change (uvicorn replaces the list each second)."""
        current = self.server_state.default_headers
        if current is not self._default_headers:
            self._default_headers = current
            self._leading = b"".join([b"%s: %s\r\n" % pair for pair in current])
        return self._leading

    def pause_writing(self) -> None:
        """The peer is not reading: stop reading too, so no more requests are answered into a growing buffer."""
        super().pause_writing()
        self.flow.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        if not self.pipeline and not self._backlog:
            self.flow.resume_reading()

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
