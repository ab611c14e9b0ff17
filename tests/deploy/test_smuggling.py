"""Request smuggling through real Traefik: cors-handler answers exactly the requests Traefik forwarded.

A client writes raw bytes to Traefik (configured from the rendered chart), hiding a second
preflight where a proxy and a server may frame a request differently: in the body of an
Upgrade request, behind contradicting Content-Length and Transfer-Encoding, in a folded or
duplicated header, in a chunk of bad size. Traefik either refuses the bytes or forwards
some requests; its JSON access log lists each request it forwarded to cors-handler (with
the status it passed on), and cors-handler's ``cors_preflight_requests_total`` counts each
OPTIONS request it answered. After every vector cors-handler must have answered no more
requests than Traefik forwarded (a hidden request answered counts at cors-handler only),
each forwarded one with its own answer (204, or 429 for a client's second request), and
fewer only by the requests Traefik failed itself (the client gone first: 499; a body it
could not read: 500; over HTTP/2 a stream that broke its own framing: 499 or 502),
whether or not cors-handler had answered the head. Clients speak HTTP/1.1 and, in a second table, HTTP/2 (which Traefik
downgrades). The hidden request names a
victim in its own ``X-Forwarded-For`` (``rate_limit.depth: 1``, one token per client): had
it been answered, the victim's own preflight would be refused with 429. And clients
arriving after the attack (on the backend connections Traefik keeps) must each get their
own answer, never the hidden request's: a partial head left in a body must not be
completed by the next request.
"""

from __future__ import annotations

import itertools
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..conftest import read_responses
from .stack import HOST, Stack, start_stack

pytestmark = pytest.mark.e2e

SMUGGLED = "https://smuggled.example.com"  # allowed, so that an answered hidden request would echo it
HONEST = [f"https://client-{i}.example.com" for i in range(6)]
OVERRIDES = {
    "policy": {
        "allow_origins": [*HONEST, SMUGGLED],
        # one token per client per hour: a single answered hidden request empties its victim's bucket
        "rate_limit": {"average": 1, "period": 3600, "burst": 1, "depth": 1},
    },
}

# Every connection comes from its own loopback address: Traefik trusts forwarded headers only from
# 127.0.0.1, so it sends the address as X-Forwarded-For and each client has its own bucket.
_addresses = (f"127.{a}.{b}.{c}" for a in range(1, 250) for b in range(256) for c in range(1, 255))


def preflight(origin: str, extra: str = "", forwarded_for: str | None = None, end: bool = True) -> bytes:
    """An OPTIONS preflight head (``end``: with its blank line; without it, a head left open)."""
    head = f"OPTIONS /api/items HTTP/1.1\r\nHost: {HOST}\r\nOrigin: {origin}\r\n"
    head += "Access-Control-Request-Method: PUT\r\n"
    if forwarded_for:
        head += f"X-Forwarded-For: {forwarded_for}\r\n"
    return (head + extra + ("\r\n" if end else "")).encode()


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)


def chunk_sized(size: bytes) -> Callable[[bytes], bytes]:
    """A chunked body carrying the hidden request in one chunk whose size line is ``size`` (%x: the true size)."""
    return lambda data: size.replace(b"%x", b"%x" % len(data)) + b"\r\n" + data + b"\r\n0\r\n\r\n"


def as_is(data: bytes) -> bytes:
    return data


@dataclass(frozen=True)
class Vector:
    """An outer preflight with ``headers`` (``{n}``: the body's length), then the body ``framing(hidden)``.

    Head and body are written separately, as Traefik forwards them; ``open_head``: the hidden
    request is a head left open, for whatever request comes next to complete.
    """

    headers: str
    framing: Callable[[bytes], bytes] = as_is
    open_head: bool = False
    version: str = "HTTP/1.1"

    def writes(self, hidden: bytes) -> list[bytes]:
        payload = self.framing(hidden)
        head = preflight(HONEST[0], self.headers.format(n=len(payload))).replace(b"HTTP/1.1", self.version.encode(), 1)
        return [head, payload]


UPGRADE = "Connection: Upgrade\r\nUpgrade: foo\r\n"
WEBSOCKET = ("Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")  # fmt: skip
H2C = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"
CHUNKED = "Transfer-Encoding: chunked\r\n"
LENGTH = "Content-Length: {n}\r\n"

VECTORS = {
    # the issue's: an Upgrade request's body read as requests, the body in a second write
    "upgrade with a body": Vector(UPGRADE + LENGTH),
    "upgrade websocket with a body": Vector(WEBSOCKET + LENGTH),
    "upgrade h2c with a body": Vector(H2C + LENGTH),
    "upgrade with a chunked body": Vector(UPGRADE + CHUNKED, chunked),
    "partial head in an upgrade body": Vector(UPGRADE + LENGTH, open_head=True),
    "upgrade without connection upgrade": Vector("Upgrade: foo\r\n" + LENGTH),
    "connection upgrade without upgrade": Vector("Connection: Upgrade\r\n" + LENGTH),
    # a body on a preflight is a body: read and dropped
    "content-length body": Vector(LENGTH),
    "chunked body": Vector(CHUNKED, chunked),
    "partial head in a body": Vector(LENGTH, open_head=True),
    "expect 100-continue": Vector("Expect: 100-continue\r\n" + LENGTH),
    "http/1.0 keep-alive with a body": Vector("Connection: keep-alive\r\n" + LENGTH, version="HTTP/1.0"),
    # framing a proxy and a server may read differently
    "CL.TE": Vector(LENGTH + CHUNKED, lambda data: b"0\r\n\r\n" + data),
    "TE.CL": Vector(CHUNKED + "Content-Length: 4\r\n", chunked),
    "duplicate content-length": Vector("Content-Length: 0\r\n" + LENGTH),
    "content-length list": Vector("Content-Length: {n}, 0\r\n"),
    "content-length with a sign": Vector("Content-Length: +{n}\r\n"),
    "obs-fold transfer-encoding": Vector("Transfer-Encoding:\r\n chunked\r\n" + LENGTH),
    "obs-fold hides content-length": Vector("X-Pad: a\r\n Content-Length: {n}\r\n"),
    "space before colon": Vector("Transfer-Encoding : chunked\r\n" + LENGTH),
    "tab before chunked": Vector("Transfer-Encoding:\tchunked\r\n" + LENGTH),
    "transfer-encoding xchunked": Vector("Transfer-Encoding: xchunked\r\n" + LENGTH),
    "transfer-encoding chunked, identity": Vector("Transfer-Encoding: chunked, identity\r\n" + LENGTH, chunked),
    "transfer-encoding twice": Vector(CHUNKED + "Transfer-Encoding: identity\r\n", chunked),
    "chunk size with an extension": Vector(CHUNKED, chunk_sized(b"%x;ext=1")),
    "chunk size 0x-prefixed": Vector(CHUNKED, chunk_sized(b"0x%x")),
    "chunk size overflowing": Vector(CHUNKED, chunk_sized(b"1000000000000000%x")),
    "chunk size negative": Vector(CHUNKED, lambda data: b"-1\r\n" + data),
    "chunk shorter than its size": Vector(CHUNKED, lambda data: b"1\r\nA\r\n0\r\n\r\n" + data),
    "chunk lines ending in LF": Vector(CHUNKED, lambda data: b"%x\n%s\n0\n\n" % (len(data), data)),
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(Path(tmp_path_factory.mktemp("smuggling")), "production", OVERRIDES)
    yield stack
    stack.stop()


def connect(stack: Stack, address: str | None = None) -> socket.socket:
    source = (address or next(_addresses), 0)
    return socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=5, source_address=source)


def attack(stack: Stack, writes: list[bytes]) -> bytes:
    """Write ``writes`` one after another (each its own segment); Traefik's answer, if it sends one."""
    with connect(stack) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for data in writes:
                sock.sendall(data)
                time.sleep(0.02)  # Traefik forwards head and body as they come: two writes to cors-handler
            return b"".join(read_responses(sock, 1))
        except OSError:
            return b""  # Traefik refused the bytes and closed


def ask(stack: Stack, origin: str, address: str | None = None) -> tuple[int, str | None]:
    """An honest preflight from a new client (or the one at ``address``): (status, Access-Control-Allow-Origin)."""
    with connect(stack, address) as sock:
        sock.sendall(preflight(origin, "Connection: close\r\n"))
        [answer] = read_responses(sock, 1)
    status = int(answer.split(b" ", 2)[1])
    allowed = re.search(rb"(?im)^access-control-allow-origin: *([^\r\n]*)", answer)
    return status, allowed.group(1).decode() if allowed else None


def forwarded(stack: Stack) -> list[int]:
    """The status cors-handler gave each request Traefik logged as forwarded to it, in order."""
    url = f"http://127.0.0.1:{stack.handler.port}"
    return [entry["OriginStatus"] for entry in stack.proxy.access_log() if entry.get("ServiceURL") == url]


# What Traefik logs itself for a request it had begun to forward (cors-handler may or may not have answered its head
# by then): 499 when the client went away first (the attacker reads one answer and hangs up, a second request that
# Traefik read from its bytes may still be in flight; over HTTP/2, a stream that breaks its own framing); HTTP/1.1,
# 500 when it cannot read the client's body; HTTP/2, 502 when its transport refuses a body longer than the
# Content-Length it forwarded.
TRAEFIK_OWN_H1 = (499, 500)
TRAEFIK_OWN_H2 = (499, 502)


def since(stack: Stack, before: tuple[int, int], own: tuple[int, ...], timeout: float = 3.0) -> tuple[list[int], int]:
    """(statuses of the requests Traefik forwarded, requests cors-handler answered) since ``before``.

    cors-handler counts a request before it answers and Traefik logs it after, so the log may
    lag: wait until the counts agree, or until only requests that Traefik failed itself
    (``own`` statuses) are missing at cors-handler, or ``timeout`` passes.
    """
    deadline = time.monotonic() + timeout
    while True:
        statuses, answered = forwarded(stack)[before[0] :], int(stack.preflights()) - before[1]
        failed = sum(statuses.count(status) for status in own)
        if 0 <= len(statuses) - answered <= failed or time.monotonic() > deadline:
            return statuses, answered
        time.sleep(0.05)


def assert_only_forwarded_requests_answered(
    stack: Stack, name: str, before: tuple[int, int], received: bytes, victim: str, own: tuple[int, ...]
) -> None:
    """The checks after an attack (see the module docstring); ``received``, what the attacker got, for the messages."""
    # clients after the attack (on the backend connections Traefik keeps) each get their own answer
    later = HONEST[1:5]
    assert [ask(stack, origin) for origin in later] == [(204, origin) for origin in later], name
    statuses, answered = since(stack, before, own)
    hidden_answered = answered - len(statuses)
    assert hidden_answered <= 0, f"{name}: {hidden_answered} hidden requests answered; the attacker got {received!r}"
    # Every request Traefik forwarded is a well-formed preflight from an allowed origin: cors-handler answers it 204,
    # or 429 when Traefik read a second request from one client's bytes. Anything else went to the wrong request.
    expected = {204, 429, *own}
    assert set(statuses) <= expected, f"{name}: Traefik logged {statuses}; the attacker got {received!r}"
    failed = sum(statuses.count(status) for status in own)
    assert -hidden_answered <= failed, f"{name}: {statuses} forwarded, {answered} answered"
    assert SMUGGLED.encode() not in received, name
    # the victim's only token is still there: no hidden request in its name was answered
    assert ask(stack, HONEST[5], victim) == (204, HONEST[5]), name


victims = (f"127.250.0.{i}" for i in itertools.count(1))
ATTEMPTS = 3  # per vector: whether a server reads head and body in one read or two depends on timing


@pytest.mark.parametrize("name", list(VECTORS))
def test_cors_handler_answers_only_the_requests_traefik_forwarded(stack: Stack, name: str) -> None:
    vector, victim = VECTORS[name], next(victims)
    hidden = preflight(SMUGGLED, forwarded_for=victim, end=not vector.open_head)
    before = len(forwarded(stack)), int(stack.preflights())
    received = b"".join(attack(stack, vector.writes(hidden)) for _ in range(ATTEMPTS))
    assert_only_forwarded_requests_answered(stack, name, before, received, victim, TRAEFIK_OWN_H1)


# HTTP/2 from the client (cleartext, prior knowledge), HTTP/1.1 from Traefik to cors-handler: the body carries
# the hidden request, the headers claim a framing HTTP/2 does not have (curl sends them as given).
H2_VECTORS = {
    "content-length 0 with data": ["-H", "Content-Length: 0"],
    "content-length shorter than the data": ["-H", "Content-Length: 5"],
    "transfer-encoding chunked": ["-H", "Transfer-Encoding: chunked"],
    "upgrade": ["-H", "Connection: Upgrade", "-H", "Upgrade: foo"],
    "plain body": [],
}


@pytest.mark.parametrize("name", list(H2_VECTORS))
def test_http2_requests_downgraded_by_traefik_hide_no_request(stack: Stack, name: str) -> None:
    curl, victim = shutil.which("curl"), next(victims)
    if curl is None:
        pytest.skip("curl is needed; scripts/test.sh installs it")
    hidden = preflight(SMUGGLED, forwarded_for=victim).decode()
    command = [curl, "-s", "-i", "--http2-prior-knowledge", "--max-time", "5", "-X", "OPTIONS", "-H", f"Host: {HOST}",
               "-H", f"Origin: {HONEST[0]}", "-H", "Access-Control-Request-Method: PUT", *H2_VECTORS[name],
               "--data-binary", "0\r\n\r\n" + hidden]  # fmt: skip
    before = len(forwarded(stack)), int(stack.preflights())
    received = b""
    for _ in range(ATTEMPTS):
        source = ["--interface", next(_addresses)]
        url = f"http://127.0.0.1:{stack.proxy.port}/api/items"
        done = subprocess.run([*command, *source, url], capture_output=True, timeout=10)
        # the client spoke HTTP/2: it got an HTTP/2 answer, or Traefik reset the stream (curl's exit code 92)
        assert (done.returncode == 0 and done.stdout.startswith(b"HTTP/2 ")) or done.returncode == 92, done
        received += done.stdout
    assert_only_forwarded_requests_answered(stack, f"h2 {name}", before, received, victim, TRAEFIK_OWN_H2)
