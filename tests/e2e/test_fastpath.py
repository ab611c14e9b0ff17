"""The protocol fast path answers exactly as the ASGI path does, and only where that is trivially safe."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from ..conftest import Server, fast_and_asgi, read_responses, read_until_closed, without_date

pytestmark = [pytest.mark.e2e, pytest.mark.both_paths]

POLICY: dict[str, Any] = {
    "environment": "production",
    "allow_origins": ["https://app.example.com"],
    "allow_headers": ["content-type", "x-request-id"],
    "allow_private_network": True,
    "max_age": 600,
    "rate_limit": {"average": 60, "burst": 3, "depth": 1},
    "routes": [
        {"name": "off", "path_prefix": "/off", "enabled": False},
        {"name": "v2", "path_prefix": "/api/v2", "allow_methods": ["GET"]},
    ],
}
APP = "https://app.example.com"


def preflight(origin: str = APP, method: str = "PUT", extra: str = "", path: str = "/api/items",
              version: str = "1.1", client: str = "198.51.100.1") -> bytes:  # fmt: skip
    head = f"OPTIONS {path} HTTP/{version}\r\nHost: x\r\nOrigin: {origin}\r\n"
    head += f"Access-Control-Request-Method: {method}\r\n"
    return f"{head}X-Forwarded-For: {client}\r\n{extra}\r\n".encode()


# Each request is sent twice on a fresh connection: the first fills the cache, the second may take the fast path.
MATRIX = {
    "allowed": preflight(),
    "allowed with headers": preflight(extra="Access-Control-Request-Headers: Content-Type, X-Request-Id\r\n"),
    "private network": preflight(extra="Access-Control-Request-Private-Network: true\r\n"),
    "rejected origin": preflight("https://evil.example.net"),
    "rejected method": preflight(method="PURGE"),
    "rejected header": preflight(extra="Access-Control-Request-Headers: x-secret\r\n"),
    "http/1.0": preflight(version="1.0"),
    "connection close": preflight(extra="Connection: close\r\n"),
    "route disabled": preflight(path="/off/x"),
    "not a preflight": b"OPTIONS /api HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example.com\r\n\r\n",
    "duplicate origin": preflight(extra="Origin: https://other.example.com\r\n"),
    "with a body": preflight(extra="Content-Length: 2\r\n") + b"{}",
    "chunked body": preflight(extra="Transfer-Encoding: chunked\r\n") + b"2\r\n{}\r\n0\r\n\r\n",
    "percent-encoded path": preflight(path="/api/%69tems"),
    # requests the raw path must read exactly as httptools does, or leave to it
    "query string": preflight(path="/api/items?page=2"),
    "keep-alive header": preflight(extra="Connection: keep-alive\r\n"),
    "value with spaces and tabs": preflight(extra="Access-Control-Request-Headers:  \tx-request-id \t\r\n"),
    "two request-header lines": preflight(
        extra="Access-Control-Request-Headers: content-type\r\nAccess-Control-Request-Headers: x-request-id\r\n"
    ),
    "mixed-case names": preflight().replace(b"Origin:", b"oRIGIN:").replace(b"Access-Control", b"ACCESS-control"),
    "obs-fold": preflight(extra="Access-Control-Request-Headers: content-type,\r\n x-request-id\r\n"),
    "space before colon": preflight().replace(b"Origin:", b"Origin :"),
    "bare LF": preflight().replace(b"\r\nOrigin", b"\nOrigin"),
    "lower-case method": preflight().replace(b"OPTIONS", b"options"),
    "absolute-form target": preflight(path="http://x/api/items"),
    "absolute-form without a path": preflight(path="http://x"),
    "absolute-form with a query, no path": preflight(path="http://x?page=2"),
    "NUL in a value": preflight(extra="X-Note: a\x00b\r\n"),
}


def ask(port: int, raw: bytes, count: int = 1) -> bytes:
    """Send ``raw`` on a new connection and return the first ``count`` responses, joined."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        return b"".join(read_responses(sock, count))


NOT_FAST = {"with a body", "chunked body",
            # malformed: httptools refuses them (a JSON 400) on both paths
            "obs-fold", "space before colon", "bare LF", "lower-case method", "NUL in a value",
            "absolute-form without a path", "absolute-form with a query, no path"}  # fmt: skip


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with fast_and_asgi(Path(tmp_path_factory.mktemp("fastpath")), POLICY) as pair:  # compares both modes itself
        yield pair


def fast_path_count(server: Server) -> float:
    return server.metrics()["cors_fast_path_responses_total"]


@pytest.mark.parametrize("name", list(MATRIX))
def test_fast_and_asgi_paths_write_the_same_bytes(servers: Any, name: str) -> None:
    fast, asgi = servers
    raw = MATRIX[name].replace(b"198.51.100.1", f"198.51.100.{list(MATRIX).index(name) + 10}".encode())
    answers = {}
    for label, server in (("fast", fast), ("asgi", asgi)):
        before = fast_path_count(server)
        first = ask(server.port, raw)
        second = ask(server.port, raw)
        answers[label] = (without_date(first), without_date(second), fast_path_count(server) - before)
    assert answers["fast"][:2] == answers["asgi"][:2], name
    assert answers["fast"][0] == answers["fast"][1]  # a cached answer is the computed one, byte for byte
    assert answers["asgi"][2] == 0
    assert answers["fast"][2] == (0 if name in NOT_FAST else 2), name  # misses included


@pytest.mark.parametrize("name", ["absolute-form without a path", "absolute-form with a query, no path"])
def test_a_target_without_a_path_is_a_json_400(servers: Any, name: str) -> None:
    """Issue 26 item 10: `OPTIONS http://a HTTP/1.1` closed the connection without an answer, on both paths."""
    for server in servers:
        answer = ask(server.port, MATRIX[name])
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        assert answer.endswith(b'{"error_type":"invalid_request","message":"Malformed HTTP request"}')


def client_request(client: str, extra: str = "", path: str = "/api/items", method: str = "PUT") -> bytes:
    return preflight(method=method, extra=extra, path=path, client=client)


def name_value_head(size: int) -> bytes:
    """A preflight head of exactly ``size`` bytes padded with ``Name:value`` lines (the 431 accounting's edge)."""
    head = preflight(client="CLIENT")[:-2]
    lines = b"".join(b"X-%d:v\r\n" % i for i in range(60))
    pad = size - len(head) - len(lines) - len(b"X-Pad:\r\n") - 2
    return head + lines + b"X-Pad:" + b"p" * pad + b"\r\n\r\n"


HIDDEN = client_request("CLIENT").replace(APP.encode(), b"https://smuggled.example.com")
UPGRADE = b"Connection: Upgrade\r\nUpgrade: foo\r\n"
CHUNK = b"%x\r\n%s\r\n0\r\n\r\n" % (len(HIDDEN), HIDDEN)
# Whole exchanges: the writes, sent in order on one connection, then a closing request; each server's
# whole output is compared. "CLIENT" and "CLOSER" become client addresses of their own per sequence (at most
# two requests each: the limiter's burst is 3, so no answer depends on timing).
H2C = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"
WEBSOCKET = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: a2V5\r\n"
MALFORMED = b"OPTIONS /api HTTP/1.1\r\nBad Header\r\n\r\n"


def with_body(extra: str, body: bytes) -> bytes:
    return client_request("CLIENT", extra) + body


SEQUENCES: dict[str, list[bytes]] = {
    "upgrade, hidden request in the body": [
        client_request("CLIENT", UPGRADE.decode() + f"Content-Length: {len(HIDDEN)}\r\n"), HIDDEN],
    "upgrade, hidden request in one write": [
        with_body(UPGRADE.decode() + f"Content-Length: {len(HIDDEN)}\r\n", HIDDEN)],
    "upgrade h2c, hidden request after it": [client_request("CLIENT", H2C), HIDDEN],
    "upgrade websocket": [client_request("CLIENT", WEBSOCKET)],
    "upgrade, chunked body": [with_body(UPGRADE.decode() + "Transfer-Encoding: chunked\r\n", CHUNK)],
    "upgrade without connection option": [with_body(f"Upgrade: foo\r\nContent-Length: {len(HIDDEN)}\r\n", HIDDEN)],
    "partial head in an upgrade body": [with_body(UPGRADE.decode() + "Content-Length: 60\r\n", HIDDEN[:60]), HIDDEN],
    "trailing space in the method": [client_request("CLIENT", method="PUT "), client_request("CLIENT", method="PUT ")],
    "trailing tab in the method": [client_request("CLIENT", method="PUT\t")],
    "trailing space in the PNA flag": [client_request("CLIENT", "Access-Control-Request-Private-Network: true \r\n")],
    "fragment on a disabled route": [client_request("CLIENT", path="/off#x"), client_request("CLIENT", path="/off#x")],
    "fragment on another route": [client_request("CLIENT", path="/api/v2#x"), client_request("CLIENT", path="/api/v2")],
    "proxy-connection close": [client_request("CLIENT"), client_request("CLIENT", "Proxy-Connection: close\r\n")],
    "connection close, then more": [client_request("CLIENT", "Connection: close\r\n") + HIDDEN],
    "pipelined then malformed, one write": [client_request("CLIENT") + MALFORMED],
    "pipelined then malformed, two writes": [client_request("CLIENT"), MALFORMED],
    "body then malformed": [with_body("Content-Length: 2\r\n", b"{}GARBAGE\r\n\r\n")],
    "lone CRLF between requests": [client_request("CLIENT") + b"\r\n", client_request("CLIENT")],
    "CL.TE": [with_body(f"Content-Length: {len(CHUNK)}\r\nTransfer-Encoding: chunked\r\n", CHUNK)],
    "TE.CL": [with_body("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", CHUNK)],
    "duplicate content-length": [with_body("Content-Length: 2\r\nContent-Length: 40\r\n", b"{}" + HIDDEN)],
    "obs-fold transfer-encoding": [with_body("Transfer-Encoding:\r\n chunked\r\n", CHUNK)],
    "broken chunk size after an answered head": [
        with_body("Transfer-Encoding: chunked\r\n", b"0x5\r\nhello\r\n0\r\n\r\n")],
    "negative chunk size": [with_body("Transfer-Encoding: chunked\r\n", b"-1\r\n")],
    "LF-only chunk lines": [with_body("Transfer-Encoding: chunked\r\n", b"5\nhello\n0\n\n")],
    "transfer-encoding identity": [with_body("Transfer-Encoding: identity\r\n", b"")],
    "trailer field named like a preflight header": [
        with_body("Transfer-Encoding: chunked\r\n", b"0\r\nAccess-Control-Request-Headers: x-secret\r\n\r\n")],
    "chunked body, then a pipelined request": [with_body("Transfer-Encoding: chunked\r\n", b"0\r\n\r\n" + HIDDEN)],
    **{f"{size}-byte head of Name:value lines": [name_value_head(size)]
       for size in (32_660, 32_690, 32_730, 32_768, 32_769)},
}  # fmt: skip
CLOSER = b"OPTIONS /api HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: CLOSER\r\nConnection: close\r\n\r\n"


def exchange_all(port: int, writes: list[bytes], closer_client: bytes) -> bytes:
    """Every byte the server writes for ``writes`` (a pause between them) and a closing request, until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for raw in [*writes, CLOSER.replace(b"CLOSER", closer_client)]:
            try:
                sock.sendall(raw)
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.05)
        return read_until_closed(sock)


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_fast_and_asgi_paths_write_the_same_bytes_for_whole_exchanges(servers: Any, name: str) -> None:
    index = list(SEQUENCES).index(name) + 10
    writes = [raw.replace(b"CLIENT", b"198.51.101.%d" % index) for raw in SEQUENCES[name]]
    outputs = [without_date(exchange_all(server.port, writes, b"198.51.102.%d" % index)) for server in servers]
    assert outputs[0] == outputs[1], name
    assert b"smuggled" not in outputs[0]
    assert outputs[0].startswith(b"HTTP/1.1 ") and outputs[0].endswith((b"\r\n\r\n", b"}")), outputs[0]


def test_rate_limit_and_counters_apply_on_the_fast_path(servers: Any) -> None:
    fast, _ = servers
    raw = preflight(client="203.0.113.50")
    ask(fast.port, raw)  # fills the cache (and takes the first of 3 tokens)
    before = fast.metrics()
    statuses = [ask(fast.port, raw).split(b" ", 2)[1] for _ in range(4)]
    after = fast.metrics()
    assert statuses == [b"204", b"204", b"429", b"429"]
    assert after["cors_fast_path_responses_total"] - before["cors_fast_path_responses_total"] == 4
    key = 'cors_preflight_requests_total{result="%s",route="default"}'
    assert after[key % "allowed"] - before[key % "allowed"] == 2
    assert after[key % "rate_limited"] - before[key % "rate_limited"] == 2


def test_pipelined_and_keep_alive_requests_are_answered_in_order(servers: Any) -> None:
    fast, _ = servers
    evil = preflight("https://evil.example.net", client="198.51.100.99")
    warm = preflight(client="198.51.100.98")
    ask(fast.port, warm)
    ask(fast.port, evil)
    # a cached allowed, a body (ASGI), a cached rejection, then a miss (ASGI), all in one write
    body = preflight(client="198.51.100.97", extra="Content-Length: 2\r\n") + b"{}"
    miss = preflight(client="198.51.100.96", extra="Access-Control-Request-Headers: content-type\r\n")
    close = preflight(client="198.51.100.95", extra="Connection: close\r\n")
    raw = (warm + body + evil + miss + close).replace(b"Connection: keep-alive\r\n", b"")
    before = fast_path_count(fast)
    answer = ask(fast.port, raw, 5)
    statuses = re.findall(rb"HTTP/1.1 (\d{3})", answer)
    assert statuses == [b"204", b"204", b"403", b"204", b"204"], answer
    assert answer.count(b"connection: close") == 1 and answer.endswith(b"connection: close\r\n\r\n")
    # only the first: once the body request is with the ASGI app, the requests behind it queue there
    assert fast_path_count(fast) - before == 1


def test_keep_alive_timeout_still_closes_an_idle_connection_after_fast_answers(servers: Any) -> None:
    fast, _ = servers
    raw = preflight(client="198.51.100.120")
    ask(fast.port, raw)  # cached now
    with socket.create_connection(("127.0.0.1", fast.port), timeout=15) as sock:
        started = time.monotonic()
        for _ in range(3):
            sock.sendall(raw)
            assert read_responses(sock, 1)[0].startswith(b"HTTP/1.1 204")
            time.sleep(2)  # active for 6 s in all: longer than the 5 s keep-alive timeout
        assert sock.recv(1) == b""  # then closed by the server, about 5 s after the last answer
        idle = time.monotonic() - started - 6
        assert 2 <= idle <= 5, idle
