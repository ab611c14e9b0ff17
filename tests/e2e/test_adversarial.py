"""Adversarial HTTP against the running server, over raw sockets.

After every case the server must answer /health and a normal preflight
correctly; no case may produce a 500 or a traceback. Costs are printed by
``python -m loadtests.adversarial``; here we check behaviour and memory.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import Server, exchange, rss_kib

pytestmark = pytest.mark.e2e

GOOD = b"https://app.example.com"
HEAD = b"OPTIONS /api HTTP/1.1\r\nHost: t\r\n"


def preflight(origin: bytes = GOOD, method: bytes = b"GET", extra: bytes = b"", close: bool = True) -> bytes:
    lines = HEAD + b"Origin: " + origin + b"\r\nAccess-Control-Request-Method: " + method + b"\r\n" + extra
    return lines + (b"Connection: close\r\n" if close else b"") + b"\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, server_mode: str) -> Iterator[Server]:
    policy = {"allow_origins": [GOOD.decode()], "allow_headers": ["content-type", "x-request-id"],
              "rate_limit": {"enabled": False}, "client_timeout": 1}  # fmt: skip
    srv = Server(Path(tmp_path_factory.mktemp("adversarial")), policy, {}, [])
    yield srv
    srv.stop()
    logs = srv.logs()
    assert "Traceback" not in logs
    assert '"level":"error"' not in logs


@pytest.fixture(autouse=True)
def still_healthy(server: Server) -> Iterator[None]:
    yield
    assert server.request("GET", "/health", fresh=True).status == 200
    ok = exchange(server.port, preflight())
    assert ok.startswith(b"HTTP/1.1 204 "), ok
    assert b"access-control-allow-origin: https://app.example.com\r\n" in ok


def status_of(data: bytes) -> int:
    return int(data[9:12])


def test_crlf_injection_in_origin_cannot_add_headers(server: Server) -> None:
    # At the HTTP level "\r\n" ends the Origin line: the injected text is just another request header.
    data = exchange(server.port, preflight(GOOD + b"\r\nX-Injected: yes\r\nSet-Cookie: a=b"))
    assert b"x-injected" not in data.lower()
    assert b"set-cookie" not in data.lower()
    # Encoded or bare CR/LF inside the value never reach a response header.
    for origin in (GOOD + b"%0d%0aX-Injected:%20yes", GOOD + b"\rX-Injected: yes", GOOD + b"\nX-Injected: yes"):
        data = exchange(server.port, preflight(origin))
        assert status_of(data) == 400
        assert b"x-injected" not in data.lower().split(b"\r\n\r\n")[0]


@pytest.mark.parametrize(
    "origin",
    [b"https://app.example.com\xff", b"https://\xe4pp.example.com", b"https://app.example.com\x00",
     b"https://app.example.com\t", b"javascript:alert(1)", b"https://app.example.com@evil.com", b"*",
     b"https://app.example.com, https://evil.com", b"https://app.example.com https://evil.com"],
    ids=[
        "invalid-utf8-byte", "non-ascii-host", "nul-byte", "trailing-tab", "javascript-scheme", "userinfo", "star",
        "two-origins-comma", "two-origins-space",
    ],
)  # fmt: skip
def test_invalid_origin_bytes_are_400(server: Server, origin: bytes) -> None:
    data = exchange(server.port, preflight(origin))
    assert status_of(data) == 400, data
    assert b"access-control-allow-origin" not in data


def test_duplicate_origin_headers(server: Server) -> None:
    data = exchange(server.port, preflight(extra=b"Origin: https://evil.com\r\n"))
    assert status_of(data) == 400
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error_type"] == "invalid_preflight"


def test_body_on_options_is_ignored_and_the_connection_stays_usable(server: Server) -> None:
    body = b"x" * 5000
    first = preflight(extra=b"Content-Length: %d\r\n" % len(body), close=False) + body
    chunked = preflight(extra=b"Transfer-Encoding: chunked\r\n", close=False) + b"5\r\nhello\r\n0\r\n\r\n"
    data = exchange(server.port, first + chunked + preflight())
    assert data.count(b"HTTP/1.1 204 ") == 3


@pytest.mark.parametrize(
    ("request_headers", "status"),
    [
        (b"," * 4000, 204),  # empty items are tolerated; under the 4096-byte limit
        (b" " * 4000, 204),
        (b", " * 1000, 204),  # a thousand empty items
        (b"," * 5000, 400),  # over the limit: a length check, never a split
        (b"," * 1_000_000, 431),  # a megabyte of commas: stopped by the head bound
        (b" " * 1_000_000, 431),
    ],
    ids=["4000-commas", "4000-spaces", "1000-empty-items", "5000-commas", "1MB-commas", "1MB-spaces"],
)
def test_adversarial_request_headers(server: Server, request_headers: bytes, status: int) -> None:
    data = exchange(server.port, preflight(extra=b"Access-Control-Request-Headers: " + request_headers + b"\r\n"))
    assert status_of(data) == status


def test_a_thousand_request_header_lines(server: Server) -> None:
    lines = b"".join(b"Access-Control-Request-Headers: x-request-id\r\n" for _ in range(1000))
    assert status_of(exchange(server.port, preflight(extra=lines))) == 431
    lines = b"".join(b"Access-Control-Request-Headers: x-request-id\r\n" for _ in range(50))
    assert status_of(exchange(server.port, preflight(extra=lines))) == 204  # many lines, within bounds


def test_slow_client_is_disconnected(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        started = time.monotonic()
        s.sendall(b"OPTIONS /api HTTP/1.1\r\nHost: t\r\nOrigin: ")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
            if time.monotonic() - started > 4:
                break
            time.sleep(0.2)
            try:
                s.sendall(b"a")  # a byte at a time, never finishing
            except OSError:
                break
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert 0.8 < time.monotonic() - started < 4


def test_idle_connection_that_never_sends_is_closed(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        started = time.monotonic()
        assert s.recv(4096) == b""  # closed without a response
        assert 0.8 < time.monotonic() - started < 4


def test_adversarial_inputs_do_not_grow_memory(server: Server) -> None:
    cases = [
        preflight(extra=b"Access-Control-Request-Headers: " + b"," * 4000 + b"\r\n"),
        preflight(extra=b"Access-Control-Request-Headers: " + b"," * 5000 + b"\r\n"),
        preflight(b"https://" + b"a" * 600 + b".com"),
        preflight(b"https://evil%d.example.com"),
        HEAD + b"X: " + b"y" * 40_000 + b"\r\n\r\n",
    ]
    for case in cases:  # warm up
        exchange(server.port, case)
    before = rss_kib(server.proc.pid)
    for i in range(300):
        for case in cases:
            exchange(server.port, case.replace(b"%d", str(i).encode()))
    growth = rss_kib(server.proc.pid) - before
    print(f"RSS growth after 1,500 adversarial requests: {growth} KiB")
    assert growth < 2048


def test_answers_stalled_by_a_peer_that_resets_log_no_exception(start_server) -> None:  # type: ignore[no-untyped-def]
    """Issue 26 item 7: pipelined refused preflights behind a body, never read, then a reset: an error per connection.

    uvicorn marked only the last request parsed as disconnected; the app's earlier request, waiting
    for the peer to read, woke up and wrote to the closed transport: "Exception in ASGI application"
    with a traceback at error level, as often as a client opens connections. Now nothing is logged.
    The refusals carry the allowed origins (debug), so a few hundred fill every buffer cheaply.
    """
    origins = [f"https://team-{i:03}.example.com" for i in range(300)]
    server: Server = start_server({"allow_origins": origins, "debug": True, "rate_limit": {"enabled": False}})
    requests = b"OPTIONS /api HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx"  # with the ASGI app on both paths
    requests += preflight(b"https://evil.example.net", close=False) * 1000  # 8 MB of answers, queued behind it
    conns = []
    for _ in range(4):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window, never read
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(requests)
        conns.append(sock)
    time.sleep(2)  # the server writes until the buffers are full, then waits for the peer
    for sock in conns:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        sock.close()
    time.sleep(1)
    assert server.request("GET", "/health").status == 200
    logs = server.logs()
    assert "Exception in ASGI application" not in logs
    assert '"level":"error"' not in logs
