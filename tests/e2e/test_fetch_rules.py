"""Issue 17 item 9 on the wire: safelisted methods and `Origin: null` under `*`, hostile spellings included.

Both entry points (the protocol fast path and ``--no-fast-path``) must write the
same bytes for every request, on a fresh connection, split into small writes,
and pipelined; the answers must be what a browser needs (Fetch).
"""

from __future__ import annotations

import random
import socket
from pathlib import Path
from typing import Any

import pytest

from ..conftest import exchange, fast_and_asgi, read_responses, without_date

pytestmark = [pytest.mark.e2e, pytest.mark.both_paths]

POLICY: dict[str, Any] = {
    "environment": "development",
    "allow_origins": ["*"],
    "allow_methods": ["PUT"],
    "allow_headers": ["x-custom"],
    "rate_limit": {"enabled": False},
    "routes": [{"path_prefix": "/strict", "allow_origins": ["https://app.example.com"], "allow_methods": []}],
}


def preflight(origin: str, method: str, headers: str = "", path: str = "/api") -> bytes:
    head = f"OPTIONS {path} HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: {method}\r\n"
    return (head + (f"Access-Control-Request-Headers: {headers}\r\n" if headers else "") + "\r\n").encode()


def random_origin(rng: random.Random) -> str:
    host = "".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 12)))
    return f"{rng.choice(['https', 'http'])}://{host}.example{rng.choice(['', ':8443'])}"


# (request, expected status, expected Access-Control-Allow-Origin or None)
CASES = [
    pytest.param(preflight("null", "GET"), 204, "*", id="null-get"),
    pytest.param(preflight("null", "POST", "X-Custom"), 204, "*", id="null-post-custom-header"),
    pytest.param(preflight("null", "DELETE"), 403, None, id="null-delete"),
    pytest.param(preflight("NULL", "GET"), 400, None, id="upper-case-null-is-malformed"),
    pytest.param(preflight("null", "get"), 403, None, id="lower-case-get-is-not-safelisted"),
    pytest.param(preflight("https://a.example", "HEAD"), 204, "*", id="head"),
    pytest.param(preflight("https://a.example", "POST", "x-other"), 403, None, id="post-header-still-checked"),
    pytest.param(preflight("null", "GET", path="/strict"), 403, None, id="null-not-listed"),
    pytest.param(preflight("https://app.example.com", "POST", path="/strict"), 204, "https://app.example.com",
                 id="empty-methods-post"),
    pytest.param(preflight("https://app.example.com", "PUT", path="/strict"), 403, None, id="empty-methods-put"),
]  # fmt: skip


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with fast_and_asgi(Path(tmp_path_factory.mktemp("fetch")), POLICY) as pair:
        yield pair


def status_and_origin(raw: bytes) -> tuple[int, str | None]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in head[1:])
    return int(head[0].split()[1]), fields.get("access-control-allow-origin")


@pytest.mark.parametrize(("request_bytes", "status", "allow_origin"), CASES)
def test_answers_and_both_paths_agree(
    servers: Any, request_bytes: bytes, status: int, allow_origin: str | None
) -> None:
    fast, asgi = servers
    answers = []
    for server in (fast, asgi):
        for chunk in (0, 0, 7):  # fresh (fills the cache), again (the fast path may answer), split bytes
            answer = without_date(
                exchange(server.port, request_bytes.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"), chunk)
            )
            assert status_and_origin(answer) == (status, allow_origin)
            answers.append(answer)
    assert len(set(answers)) == 1


def test_pipelined_random_origins_both_paths_byte_for_byte(servers: Any) -> None:
    rng = random.Random(17)
    batch = [preflight(rng.choice(["null", random_origin(rng)]), rng.choice(["GET", "HEAD", "POST", "PUT", "DELETE"]),
                       rng.choice(["", "x-custom", "X-Custom, x-evil", "content-type"]),
                       rng.choice(["/api", "/strict/x"])) for _ in range(40)]  # fmt: skip
    outputs = []
    for server in servers:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"".join(batch))
            responses = read_responses(sock, len(batch))
        assert len(responses) == len(batch)
        outputs.append([without_date(r) for r in responses])
    assert outputs[0] == outputs[1]
