"""Request-head bounds and malformed HTTP, over raw sockets against the real server."""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cors_handler.protocol import MAX_HEAD_BYTES, MAX_HEADERS

from ..conftest import Server, exchange

PREFLIGHT = (
    b"OPTIONS /api HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example.com\r\nAccess-Control-Request-Method: GET\r\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp("limits")), {"rate_limit": {"enabled": False}}, {}, [])
    yield srv
    srv.stop()
    assert "Traceback" not in srv.logs()


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
