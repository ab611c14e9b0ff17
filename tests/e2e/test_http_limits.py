"""Request-head bounds and malformed HTTP, over raw sockets against the real server."""

import contextlib
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cors_handler.http.protocol import MAX_HEAD_BYTES, MAX_HEADERS

from ..conftest import NO_FAST_PATH_ENV, Server, exchange, read_until_closed

pytestmark = [pytest.mark.e2e, pytest.mark.both_paths]

PREFLIGHT = (
    b"OPTIONS /api HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example.com\r\nAccess-Control-Request-Method: GET\r\n"
)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """The same policy served with the fast path and with --no-fast-path."""
    workdir = Path(tmp_path_factory.mktemp("limits"))
    policy = {"rate_limit": {"enabled": False}}
    saved = os.environ.pop(NO_FAST_PATH_ENV, None)  # both modes here, whatever the run
    try:
        started = {"fast": Server(workdir, policy, {}, []), "asgi": Server(workdir, policy, {}, ["--no-fast-path"])}
    finally:
        if saved is not None:
            os.environ[NO_FAST_PATH_ENV] = saved
    yield started
    for srv in started.values():
        srv.stop()
        assert "Traceback" not in srv.logs()


@pytest.fixture(scope="module")
def server(servers: dict[str, Server]) -> Server:
    return servers["fast"]


def body_json(data: bytes) -> dict[str, str]:
    return json.loads(data.partition(b"\r\n\r\n")[2])


def assert_healthy(server: Server) -> None:
    assert server.request("GET", "/health", fresh=True).status == 200
    assert server.preflight("https://app.example.com", "GET").status == 204


@pytest.mark.parametrize(
    ("raw", "chunk"),
    [
        (PREFLIGHT + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n", 0),  # one 70 KB header
        (PREFLIGHT + b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS + 1)) + b"\r\n", 0),
        (PREFLIGHT + b"".join(b"Access-Control-Request-Headers: x-a\r\n" for _ in range(1000)) + b"\r\n", 0),
        (PREFLIGHT + b"X-Endless: " + b"a" * 1_000_000, 4096),  # a head that never ends, sent slowly
        (b"OPTIONS /" + b"a" * (MAX_HEAD_BYTES + 10) + b" HTTP/1.1\r\nHost: t\r\n\r\n", 0),
    ],
    ids=["70KB-header", "too-many-headers", "1000-request-header-lines", "endless-head", "long-url"],
)
def test_oversized_heads_get_431(server: Server, raw: bytes, chunk: int) -> None:
    started = time.perf_counter()
    data = exchange(server.port, raw, chunk)
    assert data.startswith(b"HTTP/1.1 431 ")
    assert body_json(data)["error_type"] == "request_header_fields_too_large"
    assert b"connection: close" in data
    assert time.perf_counter() - started < 5
    assert_healthy(server)


@pytest.mark.parametrize(
    "raw",
    [b"GARBAGE\r\n\r\n", b"OPTIONS / HTTP/9.9\r\n\r\n", b"OPTIONS / HTTP/1.1\r\nBad Header\r\n\r\n",
     b"OPTIONS / HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n"],
    ids=["garbage", "bad-version", "header-without-colon", "nul-in-value"],
)  # fmt: skip
def test_malformed_http_gets_json_400(server: Server, raw: bytes) -> None:
    data = exchange(server.port, raw)
    assert data.startswith(b"HTTP/1.1 400 ")
    assert body_json(data)["error_type"] == "invalid_request"
    assert b"Traceback" not in data
    assert_healthy(server)


def test_head_just_under_the_limit_is_served(server: Server) -> None:
    padding = b"X-Pad: " + b"p" * (MAX_HEAD_BYTES - len(PREFLIGHT) - 200) + b"\r\n"
    data = exchange(server.port, PREFLIGHT + padding + b"Connection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 204 ")


def test_pipelined_preflights_in_one_write_are_all_answered(server: Server) -> None:
    requests = PREFLIGHT + b"\r\n"
    data = exchange(server.port, requests * 400 + PREFLIGHT + b"Connection: close\r\n\r\n")
    assert data.count(b"HTTP/1.1 204 ") == 401  # 48 KB in one write: no false 431


def test_malformed_request_flood_logs_are_throttled(server: Server) -> None:
    before = server.logs().count("Invalid HTTP request received")
    for _ in range(300):
        exchange(server.port, b"GARBAGE\r\n\r\n")
    after = server.logs().count("Invalid HTTP request received")
    assert after - before <= 40  # 10 per second at most, and this loop takes well under 4 s
    assert_healthy(server)


HIDDEN = PREFLIGHT.replace(b"https://app.example.com", b"https://smuggled.example.com") + b"\r\n"
UPGRADES = {
    "upgrade token": b"Connection: Upgrade\r\nUpgrade: foo\r\n",
    "h2c": b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
    "websocket": b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    "upgrade without connection option": b"Upgrade: foo\r\n",
}


@pytest.mark.parametrize("mode", ["fast", "asgi"])
@pytest.mark.parametrize("framing", ["content-length", "chunked", "no body"])
@pytest.mark.parametrize("upgrade", list(UPGRADES))
@pytest.mark.parametrize("writes", ["one write", "two writes"])
def test_an_upgrade_request_is_answered_as_plain_and_nothing_after_its_head_is_read(
    servers: dict[str, Server], mode: str, framing: str, upgrade: str, writes: str
) -> None:
    """The issue's smuggling vector: the hidden request in the upgrade's body (or after it) is never answered."""
    server = servers[mode]
    if framing == "content-length":
        head, body = UPGRADES[upgrade] + b"Content-Length: %d\r\n\r\n" % len(HIDDEN), HIDDEN
    elif framing == "chunked":
        head, body = (
            UPGRADES[upgrade] + b"Transfer-Encoding: chunked\r\n\r\n",
            b"%x\r\n%s\r\n0\r\n\r\n" % (len(HIDDEN), HIDDEN),
        )
    else:
        head, body = UPGRADES[upgrade] + b"\r\n", HIDDEN
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        if writes == "one write":
            sock.sendall(PREFLIGHT + head + body)
        else:
            sock.sendall(PREFLIGHT + head)
            time.sleep(0.05)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(body)
        data = read_until_closed(sock)
    assert data.count(b"HTTP/1.1 ") == 1, data
    assert data.startswith(b"HTTP/1.1 204 ") and b"access-control-allow-origin: https://app.example.com" in data
    assert b"smuggled" not in data and data.endswith(b"connection: close\r\n\r\n")
    assert_healthy(server)


@pytest.mark.parametrize("mode", ["fast", "asgi"])
@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        (b"GARBAGE\r\n\r\n" + PREFLIGHT + b"\r\n", [b"204", b"204", b"400"]),
        (b"OPTIONS /api HTTP/1.1\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n", [b"204", b"204", b"431"]),
        (PREFLIGHT + b"Connection: close\r\n\r\n" + PREFLIGHT + b"\r\n", [b"204", b"204", b"204"]),
        (PREFLIGHT + b"Proxy-Connection: close\r\n\r\n" + PREFLIGHT + b"\r\n", [b"204", b"204", b"204"]),
        (PREFLIGHT.replace(b"HTTP/1.1", b"HTTP/1.0") + b"\r\n" + PREFLIGHT + b"\r\n", [b"204", b"204", b"204"]),
    ],
    ids=["malformed", "too-large", "connection-close", "proxy-connection-close", "http-1.0"],
)
def test_pipelined_requests_are_answered_in_order_up_to_the_first_that_ends_the_connection(
    servers: dict[str, Server], mode: str, tail: bytes, expected: list[bytes]
) -> None:
    server = servers[mode]
    body = PREFLIGHT + b"Content-Length: 2\r\n\r\n{}"  # answered by the ASGI app on both paths
    data = exchange(server.port, PREFLIGHT + b"\r\n" + body + tail)
    assert re.findall(rb"HTTP/1.1 (\d{3}) ", data) == expected, data
    assert data.endswith((b"connection: close\r\n\r\n", b"}"))
    assert_healthy(server)


@pytest.mark.parametrize("mode", ["fast", "asgi"])
@pytest.mark.parametrize(
    "body",
    [b"0x5\r\nhello\r\n0\r\n\r\n", b"-1\r\n", b"5\nhello\n0\n\n", b"zz\r\n"],
    ids=["hex-prefix", "negative", "lf-only", "not-hex"],
)
def test_a_body_that_breaks_framing_after_its_request_was_answered_gets_no_second_answer(
    servers: dict[str, Server], mode: str, body: bytes
) -> None:
    """One response per request: the answer given at the head, then the connection closes (no 400 after it)."""
    data = exchange(servers[mode].port, PREFLIGHT + b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert re.findall(rb"HTTP/1.1 (\d{3}) ", data) == [b"204"], data
    assert_healthy(servers[mode])


@pytest.mark.parametrize("mode", ["fast", "asgi"])
@pytest.mark.parametrize(
    "trailer",
    [b"Access-Control-Request-Headers: x-secret", b"Origin: https://evil.example.net", b"X-Forwarded-For: 203.0.113.9"],
    ids=["request-headers", "origin", "forwarded-for"],
)
def test_chunked_trailer_fields_are_never_read_as_request_headers(
    servers: dict[str, Server], mode: str, trailer: bytes
) -> None:
    head = PREFLIGHT + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    data = exchange(servers[mode].port, head + b"0\r\n" + trailer + b"\r\n\r\n")
    assert re.findall(rb"HTTP/1.1 (\d{3}) ", data) == [b"204"], data
