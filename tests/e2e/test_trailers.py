"""Chunked trailer fields are body framing, never request headers, whenever they arrive.

cors-handler answers an OPTIONS request from its head. The fields after the last chunk
(a trailer section) must not change that answer: RFC 9110 §6.5.1 forbids merging them
into the header section, and a proxy that forwards trailers would otherwise let a client
add headers after the proxy's own. tests/e2e/test_http_limits.py sends head and trailer
in one write; here the trailer also comes in a later write (the answer must not depend
on TCP segmentation), and a trailer ``X-Forwarded-For`` must not choose the rate-limit
bucket (``rate_limit.depth: 1``, one token per client).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import Server, fast_and_asgi, read_responses

pytestmark = [pytest.mark.e2e, pytest.mark.both_paths]

POLICY = {
    "allow_origins": ["https://app.example.com"],
    "allow_headers": ["content-type"],
    "rate_limit": {"average": 1, "period": 3600, "burst": 1, "depth": 1},  # one token per client
}
_clients = iter(range(1, 250))


def chunked_preflight() -> bytes:
    """An allowed preflight from a new client, with a chunked body to follow."""
    return (
        b"OPTIONS /api/items HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example.com\r\n"
        b"Access-Control-Request-Method: PUT\r\nX-Forwarded-For: 198.51.100.%d\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" % next(_clients)
    )


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    with fast_and_asgi(Path(tmp_path_factory.mktemp("trailers")), POLICY) as pair:
        yield pair


def answers(port: int, *writes: bytes) -> list[bytes]:
    """The status of the answer to ``writes`` (one write each; the connection is kept alive, so nothing is reset)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for data in writes:
            sock.sendall(data)
            time.sleep(0.01)
        return [response.split(b" ", 2)[1] for response in read_responses(sock, 1)]


TRAILERS = {
    "request headers": b"Access-Control-Request-Headers: x-secret",  # as a header: refused (403)
    "origin": b"Origin: https://evil.example.com",  # as a header: a duplicate Origin (400)
    "private network": b"Access-Control-Request-Private-Network: true",  # as a header: refused (403)
}


@pytest.mark.parametrize("name", list(TRAILERS))
@pytest.mark.parametrize("split", [False, True], ids=["with the head", "after the head"])
def test_trailer_fields_do_not_change_the_answer(servers: tuple[Server, Server], name: str, split: bool) -> None:
    body = b"0\r\n" + TRAILERS[name] + b"\r\n\r\n"
    for server in servers:
        head = chunked_preflight()
        assert answers(server.port, *((head, body) if split else (head + body,))) == [b"204"], name


def test_a_trailer_does_not_choose_the_rate_limit_bucket(servers: tuple[Server, Server]) -> None:
    for server in servers:
        trailer = b"0\r\nX-Forwarded-For: 203.0.113.%d\r\n\r\n" % next(_clients)
        # two clients, each with its own token, naming the same address in a trailer: both allowed
        assert answers(server.port, chunked_preflight() + trailer) == [b"204"]
        assert answers(server.port, chunked_preflight() + trailer) == [b"204"]
