"""A seeded random differential run: the fast path and ``--no-fast-path`` answer every byte sequence alike.

Each sequence is 1-5 pipelined requests built from a preflight and mutated, at the level of
the request's parts and of its bytes: the Host (routed hosts in every spelling, no host, two,
invalid ones), header names and values (case, spaces and tabs, CR and
LF, NUL and other controls, obs-fold, duplicates, deletions), the target (fragments, queries,
percent-encoding, dot segments, other forms), the method and version, framing and connection
headers (Content-Length, Transfer-Encoding, Expect, Upgrade, Connection, Proxy-Connection)
with or without the body they announce, heads just under or over the size limits, random
origins against a large policy (exact, wildcard and regex entries). The bytes are cut at
random boundaries into several writes and followed by a last request that closes the
connection. Both servers get the same writes at the same time; what each writes back
(Date lines aside), and whether it closed the connection, must be the same. The two servers'
counters must agree at the end too (one pipeline: the same requests limited, cached, refused).

Reproduce a run with CORS_DIFFERENTIAL_SEED=<seed> (and CORS_DIFFERENTIAL_SEQUENCES=<n>); a
failure prints each differing sequence's writes.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cors_handler.http.protocol import MAX_HEAD_BYTES, MAX_HEADERS

from ..conftest import Server, fast_and_asgi, without_date

pytestmark = [pytest.mark.e2e, pytest.mark.both_paths]

SEED = int(os.environ.get("CORS_DIFFERENTIAL_SEED", "15"))
SEQUENCES = int(os.environ.get("CORS_DIFFERENTIAL_SEQUENCES", "3000"))
CONCURRENCY = 16  # sequences in flight at once (each on both servers)
CLIENT_TIMEOUT = 2.0  # the servers' client_timeout (an unfinished request gets a 408), with slack for a loaded machine
OPEN_AFTER = 4.0  # a connection the server has not closed by then counts as left open (keep-alive: 5 s)

EXACT = [f"https://app{i}.example.com" for i in range(3000)] + [f"http://localhost:{3000 + i}" for i in range(50)]
WILDCARD = [f"https://*.tenant{i}.example.net" for i in range(500)]
REGEX = [r"^https://pr-[0-9]+\.preview\.example\.org$", r"^https://[a-z]{2}\.cdn[0-9]\.example\.io$"]
PARTNERS = [f"https://partner{i}.example.biz" for i in range(200)]
POLICY: dict[str, Any] = {
    "environment": "staging",
    "allow_origins": EXACT + WILDCARD,
    "allow_origin_regex": REGEX,
    "allow_headers": ["content-type", "x-request-id", "authorization"],
    "expose_headers": ["x-request-id", "ETag"],
    "allow_private_network": True,
    "max_age": 600,
    "cache_size": 100_000,  # no evictions: hit and miss counts do not depend on the order of sequences
    "client_timeout": CLIENT_TIMEOUT,
    # two tokens per client: pipelines of three or more get 429s; the loopback peer (no forwarded header) is exempt
    "rate_limit": {"average": 1, "period": 3600, "burst": 2, "depth": 1, "excluded_ips": ["127.0.0.1/32"]},
    "routes": [
        {"name": "v2", "path_prefix": "/api/v2", "allow_origins": PARTNERS, "allow_credentials": True},
        {"name": "off", "path_prefix": "/off", "enabled": False},
        {"name": "live", "path_prefix": "/api/live", "max_age": 0},
        # '*' methods and headers with credentials: the request echoed, authorization included (issue 28)
        {
            "name": "open",
            "path_prefix": "/api/open",
            "allow_origins": PARTNERS,
            "allow_credentials": True,
            "allow_methods": ["*"],
            "allow_headers": ["*"],
            "expose_headers": [],
        },
        # routes scoped by host: an exact host, a wildcard and a narrower one under it, an IP literal
        {"name": "orders", "hosts": ["orders.acme.io"], "path_prefix": "/", "allow_origins": PARTNERS[:5]},
        {"name": "tenants", "hosts": ["*.acme.io"], "path_prefix": "/api/v2", "max_age": 7},
        {"name": "eu", "hosts": ["*.eu.acme.io", "10.0.0.1"], "path_prefix": "/api", "enabled": False},
        {"name": "exact-v2", "hosts": ["orders.acme.io"], "path_prefix": "/api/v2", "path_exact": True, "max_age": 9},
        # many hosts: each its own route (a large host table, exact and wildcard entries)
        *(
            {
                "name": f"h{i}",
                "hosts": [f"h{i}.acme.io" if i % 2 else f"*.w{i}.acme.io"],
                "path_prefix": "/api",
                "max_age": 1000 + i,
            }
            for i in range(300)
        ),
    ],
}
# Hosts: the routed ones in every spelling a client or proxy may send, and what is no host at all.
HOSTS = [
    "x",
    "orders.acme.io",
    "ORDERS.acme.io:8443",
    "orders.acme.io.",
    "a.acme.io",
    "a.b.eu.acme.io",
    "eu.acme.io",
    "acme.io",
    "evilacme.io",
    "10.0.0.1",
    "10.0.0.1:80",
    "[::1]:8080",
    "",
    " orders.acme.io",
    "orders.acme.io ",
    "orders.acme.io:",
    "orders..acme.io",
    "o\xe9.acme.io",
    "*.acme.io",
    "a" * 300,
    "h7.acme.io",
    "x.w8.acme.io",
    "H9.ACME.IO:1",
    "w10.acme.io",
    "a.b.w12.acme.io",
]
CLOSE = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

PATHS = ["/api/items", "/api/v2/orders", "/api/v2", "/api/v20", "/api/live/feed", "/off", "/off/x", "/", "/health",
         "/ready", "/api/items?page=2", "/api/v2#x", "/off#x", "/api/items#frag?q", "/%61pi/v2/x", "/api/v2/../items",
         "/off/../api/v2", "//api/v2", "/api/%2e%2e/off", "/api/v2?#", "*", "http://x/api/v2", "/api/it%00ems",
         "/api/\xe9t\xe9", "/api/open/x"]  # fmt: skip
REQUEST_METHODS = ["GET", "HEAD", "POST", "options", "OPTIONS ", "OPTIONS\t"]
VERSIONS = ["HTTP/1.0", "HTTP/1.2", "HTTP/2.0", "HTTP/1.1 ", "http/1.1"]
METHODS = ["GET", "PUT", "POST", "DELETE", "PATCH", "PURGE", "put", "GET ", " GET", "", "G\tET", "CONNECT", "HEAD"]
REQUEST_HEADERS = ["content-type", "Content-Type, X-Request-Id", "x-request-id ,authorization", "x-secret",
                   " , ,", "content-type,,x-request-id", "CONTENT-TYPE\t", "content type", "*", ""]  # fmt: skip
FRAMING = {
    "content-length": ["0", "2", "5", "90", " 3", "3 ", "00", "+1", "-1", "1,1", "0, 0", "99999999999999999999",
                       "0x2", ""],
    "transfer-encoding": ["chunked", " chunked", "chunked ", "Chunked", "identity", "gzip, chunked", "chunked, gzip",
                          "chunked,", "xchunked", ""],
    "expect": ["100-continue", "100-Continue", "nothing"],
    "upgrade": ["foo", "websocket", "h2c", "HTTP/2.0", ""],
    "connection": ["close", "keep-alive", "Upgrade", "close, upgrade", "Keep-Alive, TE", "CLOSE", "x", ""],
    "proxy-connection": ["close", "keep-alive", "Close"],
    "keep-alive": ["timeout=5", "x"],
}  # fmt: skip
INSERTS = [b" ", b"\t", b"\r", b"\n", b"\r\n", b"\x00", b"\x01", b"\x7f", b"\xff", b":", b"#", b"?", b"%", b",",
           b"\r\n\r\n", b"\r\n ", b"OPTIONS "]  # fmt: skip


# A few origins come back again and again (their answers get cached: the fast path's requests), the rest rarely.
HOT = [EXACT[0], EXACT[1], EXACT[-1], "https://a.tenant0.example.net", "https://pr-1.preview.example.org",
       PARTNERS[0], "https://evil.example.com", "null", "https://app1.example.com."]  # fmt: skip


ODD_ORIGINS = ["null", "", "https://APP1.example.com", "https://app1.example.com/", "https://app1.example.com:443",
               "https://app1.example.com.", "https://evil.com#.tenant1.example.net", "*", "file://",
               "https://[::1]"]  # fmt: skip


def origin(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.5:
        return rng.choice(HOT)
    roll = rng.random()
    if roll < 0.25:
        return rng.choice(EXACT)
    if roll < 0.4:
        return f"https://{rng.choice(['a', 'b.c', 'www'])}.tenant{rng.randrange(520)}.example.net"
    if roll < 0.5:
        return rng.choice([f"https://pr-{rng.randrange(999)}.preview.example.org", "https://ab.cdn7.example.io"])
    if roll < 0.6:
        return rng.choice(PARTNERS)
    if roll < 0.7:
        return rng.choice(ODD_ORIGINS)
    return f"https://r{rng.randrange(10**9)}.example.{rng.choice(['com', 'net', 'org'])}"


def recase(rng: random.Random, text: str) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in text)


def request(rng: random.Random, client: str) -> bytes:
    """One request: a preflight (mostly), mutated in its parts, then in its bytes."""
    method = "OPTIONS" if rng.random() < 0.92 else rng.choice(REQUEST_METHODS)
    target = rng.choice(PATHS) if rng.random() < 0.6 else "/api/items"
    version = "HTTP/1.1" if rng.random() < 0.96 else rng.choice(VERSIONS)
    requested = "PUT" if rng.random() < 0.6 else rng.choice(METHODS)
    host = "x" if rng.random() < 0.5 else rng.choice(HOSTS)
    headers = [["Host", host], ["Origin", origin(rng)], ["Access-Control-Request-Method", requested]]
    if rng.random() < 0.03:
        headers.append(["Host", rng.choice(HOSTS)])  # two Hosts: no host (llhttp passes both)
    if rng.random() < 0.3:
        headers.append(["Access-Control-Request-Headers", rng.choice(REQUEST_HEADERS)])
    if rng.random() < 0.15:
        headers.append(["Access-Control-Request-Private-Network", rng.choice(["true", "TRUE", "true ", "false", ""])])
    if rng.random() < 0.2:
        rng.shuffle(headers)
    for _ in range(rng.choice([0, 0, 0, 0, 0, 0, 1, 1, 2, 3])):
        mutate_header(rng, headers)
    framing: dict[str, str] = {}
    if rng.random() < 0.2:
        for _ in range(rng.choice([1, 1, 2, 3])):
            name = rng.choice(list(FRAMING))
            value = rng.choice(FRAMING[name])
            framing[name] = value
            headers.insert(rng.randrange(len(headers) + 1), [recase(rng, name) if rng.random() < 0.3 else name, value])
    if rng.random() < 0.01:  # a head just under or over the size limit
        size = len(str(headers)) + 80
        headers.append(["X-Pad", "p" * (MAX_HEAD_BYTES - size + rng.randrange(-150, 150))])
    if rng.random() < 0.01:  # about the header-count limit
        headers += [[f"X-H{i}", "v"] for i in range(MAX_HEADERS - len(headers) + rng.randrange(-3, 4))]
    lines = [f"{method} {target} {version}"] + [f"{name}: {value}" if name else value for name, value in headers]
    head = "".join(line + ("\r\n" if rng.random() < 0.995 else rng.choice(["\n", "\r", "\r\n\r\n"])) for line in lines)
    data = ("\r\n" if rng.random() < 0.03 else "").encode() + head.encode("latin-1")
    for _ in range(rng.choice([0] * 20 + [1, 1, 2])):
        data = mutate_bytes(rng, data)
    # the client's address last, never mutated: each sequence has its own bucket
    data += f"X-Forwarded-For: {client}\r\n\r\n".encode()
    return data + body(rng, framing, client)


def mutate_header(rng: random.Random, headers: list[list[str]]) -> None:
    header = rng.choice(headers)
    name, value = header
    kind = rng.randrange(16)
    if kind == 0:
        header[0] = recase(rng, name)
    elif kind == 1:
        header[1] = rng.choice([" ", "\t", "  ", " \t"]) + value
    elif kind == 2:
        header[1] = value + rng.choice([" ", "\t", "  ", " \t", "\t "])
    elif kind == 3:
        header[0] = name + rng.choice([" ", "\t"])  # whitespace before the colon
    elif kind == 4:
        headers.append(list(header))  # a duplicate
    elif kind == 5 and len(headers) > 1:
        headers.remove(header)
    elif kind == 6:
        header[1] = value[: len(value) // 2] + "\r\n " + value[len(value) // 2 :]  # obs-fold
    elif kind == 7:
        header[1] = value + rng.choice(["\x00", "\x01", "\x7f", "\xff", "\r", "\n"]) + "x"
    elif kind == 8:
        header[1] = ""
    elif kind == 9:
        headers.insert(rng.randrange(len(headers) + 1), [rng.choice(["X-Note", "Cookie", "Via", "x-forwarded-host"]),
                                                         rng.choice(["1", "a b", "\xe9", "a;b=c"])])  # fmt: skip
    elif kind == 10:
        header[0] = ""  # a line without a name
        header[1] = ":" + value if rng.random() < 0.5 else value
    elif kind == 11:
        header[1] = value * rng.randrange(2, 50)
    else:
        header[0] = recase(rng, name)


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    kind = rng.randrange(4)
    if kind == 0:
        return data[:at] + rng.choice(INSERTS) + data[at:]
    if kind == 1:
        return data[:at] + data[at + rng.randrange(1, 4) :]
    if kind == 2 and at < len(data):
        return data[:at] + bytes([rng.randrange(256)]) + data[at + 1 :]
    end = min(len(data), at + rng.randrange(1, 40))
    return data[:end] + data[at:end] + data[end:]


# The last chunk, then trailer fields: never request headers, whatever they are named.
CHUNKED_ENDS = [b"\r\n0\r\n\r\n", b"\r\n0\r\n", b"\n0\n\n", b"\r\n0\r\nX: t\r\n\r\n",
                b"\r\n0\r\nAccess-Control-Request-Headers: x-secret\r\n\r\n", b"\r\n0\r\nOrigin: null\r\n\r\n",
                b"\r\n0\r\nX-Forwarded-For: 10.255.255.255\r\n\r\n"]  # fmt: skip


def body(rng: random.Random, framing: dict[str, str], client: str) -> bytes:
    """What follows the head: the body its framing announces, more or less of it, or a hidden request."""
    hidden = b"OPTIONS /api/items HTTP/1.1\r\nHost: x\r\nOrigin: https://app7.example.com\r\n"
    hidden += b"Access-Control-Request-Method: PUT\r\nX-Forwarded-For: %s\r\n\r\n" % client.encode()
    roll = rng.random()
    if "transfer-encoding" in framing and roll < 0.7:
        chunk = rng.choice([b"{}", hidden, b"a" * 20])
        size = rng.choice([b"%x" % len(chunk), b"%x" % (len(chunk) + 1), b"0x%x" % len(chunk), b"%x;ext" % len(chunk),
                           b" %x" % len(chunk), b"-1", b"1%016x" % len(chunk), b"%X" % len(chunk)])  # fmt: skip
        return size + b"\r\n" + chunk + rng.choice(CHUNKED_ENDS)
    if "content-length" in framing and roll < 0.7:
        declared = framing["content-length"].strip()
        length = int(declared) if declared.isdigit() and int(declared) < 100 else 2
        return rng.choice([b"{}", hidden, b"x" * 100])[: length + rng.choice([0, 0, 0, -1, 1])]
    if ("upgrade" in framing or "connection" in framing) and roll < 0.8:
        return hidden
    return b""


def sequence(rng: random.Random, index: int) -> list[bytes]:
    """1-5 pipelined requests cut at random boundaries into writes."""
    clients = [f"10.{index >> 8 & 255}.{index & 255}.{i}" for i in (1, 2)]
    requests = [request(rng, rng.choice(clients)) for _ in range(rng.choice([1, 1, 2, 2, 3, 4, 5]))]
    data = b"".join(requests)
    cuts = set(rng.sample(range(1, len(data)), min(len(data) - 1, rng.choice([0, 0, 1, 1, 2, 3, 4]))))
    if rng.random() < 0.5:  # each request in its own write (where the raw head reader may take it), and more cuts
        cuts.update(itertools.accumulate(len(r) for r in requests[:-1]))
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)] + [CLOSE]


@dataclass(frozen=True)
class Outcome:
    received: bytes  # Date lines removed
    closed: bool  # the server closed the connection within OPEN_AFTER seconds


async def play(port: int, writes: list[bytes]) -> Outcome:
    """Send ``writes`` (each its own segment, most of the time its own read) while reading until the server closes.

    Plain sockets: a reset after the server's last answer still returns the bytes before it (a stream reader would not).
    """
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await loop.sock_connect(sock, ("127.0.0.1", port))

        async def feed() -> None:
            try:
                for data in writes:
                    await loop.sock_sendall(sock, data)
                    await asyncio.sleep(0.002)
            except OSError:
                pass  # the server answered and closed before the last write

        feeding = asyncio.create_task(feed())
        received, closed = b"", False
        try:
            async with asyncio.timeout(OPEN_AFTER):
                while chunk := await loop.sock_recv(sock, 65536):
                    received += chunk
                closed = True
        except TimeoutError:
            pass
        except OSError:
            closed = True  # reset: the server closed with our bytes unread
        feeding.cancel()
    return Outcome(without_date(received), closed)


async def run_all(fast: Server, asgi: Server, sequences: list[list[bytes]]) -> list[tuple[Outcome, Outcome]]:
    limit = asyncio.Semaphore(CONCURRENCY)

    async def both(writes: list[bytes]) -> tuple[Outcome, Outcome]:
        async with limit:
            first, second = await asyncio.gather(play(fast.port, writes), play(asgi.port, writes))
            return first, second

    return await asyncio.gather(*(both(writes) for writes in sequences))


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    with fast_and_asgi(Path(tmp_path_factory.mktemp("differential")), POLICY) as pair:
        yield pair


COMPARED_COUNTERS = ("cors_preflight_requests_total", "cors_preflight_rejections_total",
                     "cors_response_cache_hits_total", "cors_response_cache_misses_total",
                     "cors_response_cache_entries", "cors_rate_limiter_clients")  # fmt: skip


def counters(server: Server) -> dict[str, float]:
    return {key: value for key, value in server.metrics().items() if key.partition("{")[0] in COMPARED_COUNTERS}


def show(writes: list[bytes], fast: Outcome, asgi: Outcome) -> str:
    return (f"writes={writes!r}\n  fast (closed={fast.closed}): {fast.received!r}\n"
            f"  asgi (closed={asgi.closed}): {asgi.received!r}")  # fmt: skip


def test_fast_path_and_asgi_path_answer_random_mutated_sequences_alike(servers: tuple[Server, Server]) -> None:
    fast, asgi = servers
    rng = random.Random(SEED)
    sequences = [sequence(rng, index) for index in range(SEQUENCES)]
    outcomes = asyncio.run(run_all(fast, asgi, sequences))
    differing = [(writes, a, b) for writes, (a, b) in zip(sequences, outcomes, strict=True) if a != b]
    report = "\n".join(show(*case) for case in differing[:5])
    assert not differing, f"seed {SEED}: {len(differing)} of {SEQUENCES} sequences differ, e.g.\n{report}"
    answered = sum(a.received.count(b"HTTP/1.1 ") for a, _ in outcomes)
    assert answered > SEQUENCES, answered  # the run exercised more than the closing requests
    assert fast.metrics()["cors_fast_path_responses_total"] > SEQUENCES / 10  # and the fast path
    assert counters(fast) == counters(asgi)
