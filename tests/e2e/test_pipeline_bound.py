"""Requests pipelined behind one the ASGI app answers are bounded per connection, on both paths.

The attack (issue 26, item 1): on one connection, a request the ASGI app must take
(a body, or GET /health), then thousands of tiny pipelined requests in one write,
never reading. uvicorn parses every request already read and queues it; before the
bound, 16 such connections took the server from about 52 to 247 MiB. Now at most
MAX_PIPELINED_REQUESTS requests and one read's bytes wait per connection.
"""

from __future__ import annotations

import re
import socket
import time

import pytest

from cors_handler.cors.limits import MAX_PIPELINED_REQUESTS

from ..conftest import Server, exchange, rss_kib

pytestmark = pytest.mark.e2e

FIRST = {
    "body": b"OPTIONS / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
    "health": b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n",
}
TINY = b"OPTIONS / HTTP/1.1\r\n\r\n"
COPIES = 256 * 1024 // len(TINY)  # about 11,900 requests in 256 KiB
PREFLIGHT = (
    b"OPTIONS /api HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example.com\r\nAccess-Control-Request-Method: GET\r\n"
)
REFUSED = PREFLIGHT.replace(b"https://app.example.com", b"https://evil.example")


def flood(port: int, connections: int, first: bytes) -> list[socket.socket]:
    held = []
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # this client does not read
        sock.sendall(first + TINY * COPIES)
        held.append(sock)
    return held


def settled_rss(pid: int, seconds: float = 1.5) -> int:
    """The server's RSS once it has worked through what it was sent (the peak of a few samples)."""
    peak, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, rss_kib(pid))
        time.sleep(0.1)
    return peak


@pytest.mark.parametrize("first", list(FIRST), ids=list(FIRST))
def test_requests_queued_behind_an_asgi_answer_are_bounded_per_connection(start_server, first: str) -> None:  # type: ignore[no-untyped-def]
    server: Server = start_server({"client_timeout": 5, "rate_limit": {"enabled": False}})
    for _ in range(3):  # warm up: allocations of a first answer are not the attack's
        assert exchange(server.port, PREFLIGHT + b"Connection: close\r\n\r\n").startswith(b"HTTP/1.1 204")
    before = settled_rss(server.proc.pid, 0.5)
    held = flood(server.port, 16, FIRST[first])
    during = settled_rss(server.proc.pid)
    growth_mib = (during - before) / 1024
    print(f"\n{first}: 16 connections x {COPIES:,} pipelined requests, not read: RSS {before / 1024:.1f} -> "
          f"{during / 1024:.1f} MiB (+{growth_mib:.1f}); queue bound {MAX_PIPELINED_REQUESTS}")  # fmt: skip
    # one read's bytes (256 KiB) and MAX_PIPELINED_REQUESTS requests per connection: 16 connections stay
    # well under 16 MiB; unbounded, they took 195 MiB.
    assert growth_mib < 16, growth_mib
    # the server still answers everyone else at once
    assert exchange(server.port, PREFLIGHT + b"Connection: close\r\n\r\n").startswith(b"HTTP/1.1 204")
    for sock in held:
        sock.close()


def test_a_reading_client_gets_every_pipelined_answer_in_order_past_the_bound(start_server) -> None:  # type: ignore[no-untyped-def]
    """The bound only defers parsing: a client that reads gets all of its answers, in order."""
    server: Server = start_server({"rate_limit": {"enabled": False}})
    count = 10 * MAX_PIPELINED_REQUESTS
    requests = [FIRST["body"]] + [(REFUSED if i % 3 == 0 else PREFLIGHT) + b"\r\n" for i in range(count)]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"".join(requests))
        data = b""
        while data.count(b"HTTP/1.1 ") < count + 1:
            chunk = sock.recv(65536)
            assert chunk, data[-300:]
            data += chunk
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
    assert statuses == [b"204"] + [b"403" if i % 3 == 0 else b"204" for i in range(count)]
