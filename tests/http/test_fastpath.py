"""The fast path relies on uvicorn internals: pin the version and check the hooks it uses are still there.

And its head memo: a repeated head is answered as a parsed one would be, and the memo stays bounded."""

from __future__ import annotations

import asyncio
import inspect
import random
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packaging.specifiers import SpecifierSet
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from cors_handler.http.app import CorsHandlerApp
from cors_handler.http.fastpath import FastPathProtocol
from cors_handler.http.protocol import BoundedHttpToolsProtocol
from loadtests.protobench import RecordingTransport, fast_path_connection

from ..conftest import make_policy
from .test_head import EXAMPLES, clean_heads, heads, mutated

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_installed_uvicorn_is_inside_the_pinned_minor_range() -> None:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    [spec] = [d for d in dependencies if re.match(r"uvicorn\b", d)]
    specifier = SpecifierSet(spec.removeprefix("uvicorn"))
    assert uvicorn.__version__ in specifier
    assert any(s.operator == "<" for s in specifier), "the fast path needs an upper bound on uvicorn"


def test_the_uvicorn_hooks_the_fast_path_overrides_behave_as_assumed() -> None:
    for hook in ("on_message_begin", "on_header", "on_headers_complete", "on_message_complete",
                 "on_response_complete", "shutdown"):  # fmt: skip
        assert hook in vars(HttpToolsProtocol), hook
        assert hook in vars(FastPathProtocol) or hook in ("on_response_complete", "shutdown")
    begin = inspect.getsource(HttpToolsProtocol.on_message_begin)
    assert 'self.url = b""' in begin and "self.headers = []" in begin
    header = inspect.getsource(HttpToolsProtocol.on_header)
    assert "name.lower()" in header and "self.headers.append((name, value))" in header
    complete = inspect.getsource(HttpToolsProtocol.on_headers_complete)
    assert "RequestResponseCycle(" in complete and "self.pipeline.appendleft" in complete
    response_complete = inspect.getsource(HttpToolsProtocol.on_response_complete)
    assert "total_requests += 1" in response_complete and "timeout_keep_alive" in response_complete
    assert STATUS_LINE[204] == b"HTTP/1.1 204 No Content\r\n" and STATUS_LINE[429].startswith(b"HTTP/1.1 429 ")


def test_the_uvicorn_methods_the_bounded_protocol_replaces_do_what_its_copies_assume() -> None:
    """protocol.py re-implements data_received and on_response_complete (without the per-request keep-alive
    timer, with the last-request rule and the pending error): a new uvicorn must not have moved work into them."""
    received = inspect.getsource(HttpToolsProtocol.data_received)
    assert "self._unset_keepalive_if_required()" in received and "self.parser.feed_data(data)" in received
    assert "HttpParserUpgrade" in received and "self.send_400_response(msg)" in received
    assert received.count("self.") == 7, received  # nothing else happens there
    completed = inspect.getsource(HttpToolsProtocol.on_response_complete)
    assert "self.pipeline.pop()" in completed and "self.flow.resume_reading()" in completed
    assert "self._start_asgi_task(cycle, app)" in completed and completed.count("self.") == 11, completed
    for name in ("data_received", "on_response_complete", "send_400_response", "on_headers_complete"):
        assert name in vars(BoundedHttpToolsProtocol), name


# -- the head memo: a repeated head answered without parsing gives the same bytes, counts and limits -----------


def _connection(app: CorsHandlerApp, loop: asyncio.AbstractEventLoop, peer: str = "127.0.0.1") -> Any:
    return fast_path_connection(app, loop, RecordingTransport(peer, keep=True))


def _app(**overrides: Any) -> CorsHandlerApp:
    limits = {"enabled": True, "average": 60, "period": 60, "burst": 3, "depth": 1}
    routes = [{"name": "off", "path_prefix": "/off", "enabled": False}, {"name": "api", "path_prefix": "/api"}]
    settings = {"allow_origins": ["https://app.example.com"], "allow_headers": ["content-type"],
                "rate_limit": limits, "routes": routes, **overrides}  # fmt: skip
    app = CorsHandlerApp(make_policy(**settings))
    if app.runtime.limiter is not None:  # a stopped clock: two apps fed the same requests agree to the token
        app.runtime.limiter._clock = lambda: 1000.0
    return app


def _head(path: str = "/api/items", *lines: str) -> bytes:
    return (f"OPTIONS {path} HTTP/1.1\r\nHost: x\r\n" + "".join(f"{line}\r\n" for line in lines) + "\r\n").encode()


ASK = ("Origin: https://app.example.com", "Access-Control-Request-Method: PUT")
MEMO_HEADS = {
    "allowed": _head("/api/items", *ASK, "X-Forwarded-For: 198.51.100.1"),
    "allowed, headers": _head(
        "/api/items", *ASK, "Access-Control-Request-Headers: Content-Type", "X-Forwarded-For: 198.51.100.2"
    ),
    "refused origin": _head(
        "/api/items",
        "Origin: https://evil.example",
        "Access-Control-Request-Method: PUT",
        "X-Forwarded-For: 198.51.100.3",
    ),
    "refused header": _head("/api", *ASK, "Access-Control-Request-Headers: x-secret", "X-Forwarded-For: 198.51.100.4"),
    "not a preflight": _head("/api", "Origin: https://app.example.com", "X-Forwarded-For: 198.51.100.5"),
    "internal path": _head("/health", "X-Forwarded-For: 198.51.100.6"),
    "duplicate origin": _head("/api", *ASK, "Origin: https://app.example.com", "X-Forwarded-For: 198.51.100.7"),
    "origin too long": _head("/api", "Origin: https://" + "a" * 600, "Access-Control-Request-Method: PUT"),
    "disabled route": _head("/off/x", *ASK, "X-Forwarded-For: 198.51.100.8"),
    "percent-encoded path": _head("/o%66f/x?q=%2F", *ASK, "X-Forwarded-For: 198.51.100.9"),
    "the peer's bucket": _head("/api/items", *ASK),
    "malformed forwarded": _head("/api/items", *ASK, "X-Forwarded-For: not-an-address"),
    "private network": _head("/api", *ASK, "Access-Control-Request-Private-Network: true"),
}


@pytest.mark.parametrize("head", MEMO_HEADS.values(), ids=MEMO_HEADS.keys())
def test_a_memoized_head_is_answered_as_a_parsed_one_with_the_same_limits_and_counts(head: bytes) -> None:
    loop = asyncio.new_event_loop()
    try:
        memo, parsing = _app(), _app()
        parsing.runtime.heads.offer = lambda head, prepared: None  # type: ignore[method-assign]
        connections = [_connection(memo, loop), _connection(parsing, loop)]
        for _ in range(5):  # stored at the second sight, answered from the memo after: the burst of 3 runs out too
            for connection in connections:
                connection.data_received(head)
        assert len(memo.runtime.heads) == 1 and len(parsing.runtime.heads) == 0
        ours, theirs = (c.transport.writes for c in connections)
        assert ours == theirs and len(ours) == 5
        assert b" 429 " in ours[-1]
        assert memo.metrics.requests == parsing.metrics.requests and memo.metrics.fast_path == 5
        assert memo.runtime.cache.stats() == parsing.runtime.cache.stats()
        assert sum(memo.metrics.buckets) == sum(parsing.metrics.buckets) == 5
    finally:
        loop.close()


def test_a_memoized_head_without_forwarded_for_takes_each_peers_own_token() -> None:
    loop = asyncio.new_event_loop()
    try:
        app = _app()
        head = MEMO_HEADS["the peer's bucket"]
        first = _connection(app, loop, "192.0.2.1")
        for _ in range(4):
            first.data_received(head)
        second = _connection(app, loop, "192.0.2.2")
        second.data_received(head)  # from the memo, but another client
        assert len(app.runtime.heads) == 1
        assert [w[9:12] for w in first.transport.writes] == [b"204", b"204", b"204", b"429"]
        assert second.transport.writes[0][9:12] == b"204"
    finally:
        loop.close()


def test_a_policy_swap_forgets_the_memoized_heads() -> None:
    loop = asyncio.new_event_loop()
    try:
        app = _app(rate_limit={"enabled": False})
        connection = _connection(app, loop)
        head = MEMO_HEADS["allowed"]
        for _ in range(3):
            connection.data_received(head)
        assert len(app.runtime.heads) == 1
        app.swap(make_policy(allow_origins=["https://other.example.com"]))
        connection.data_received(head)
        assert connection.transport.writes[-1][9:12] == b"403" and len(app.runtime.heads) == 0
    finally:
        loop.close()


def test_a_flood_of_one_off_heads_neither_grows_the_memo_past_its_bound_nor_evicts_real_traffic() -> None:
    """Random origins and random clients: every head new. The memo holds at most its bound, and the heads
    that recur stay memoized throughout (a one-off head is stored only when the filter says seen: rarely)."""
    rng = random.Random(7)
    loop = asyncio.new_event_loop()
    try:
        app = _app(cache_size=64, rate_limit={"enabled": False})
        memo = app.runtime.heads
        connection = _connection(app, loop)
        steady = [_head("/api/items", *ASK, f"X-Forwarded-For: 203.0.113.{i}") for i in range(16)]
        for head in steady * 2:
            connection.data_received(head)
        for round_ in range(400):
            for _ in range(40):
                origin = f"https://{rng.getrandbits(64):x}.example.net"
                client = ".".join(str(rng.randrange(256)) for _ in range(4))
                connection.data_received(_head("/api/items", f"Origin: {origin}", "Access-Control-Request-Method: PUT",
                                               f"X-Forwarded-For: {client}"))  # fmt: skip
                assert len(memo) <= 64
            for head in steady:
                assert memo.get(head) is not None, round_
                connection.data_received(head)
        # heads seen twice are stored up to the bound, the least recently used go first
        for i in range(200):
            twice = _head("/api/items", *ASK, f"X-Forwarded-For: 10.0.{i // 250}.{i % 250}")
            connection.data_received(twice)
            connection.data_received(twice)
            assert len(memo) <= 64
        assert len(memo) == 64 and all(memo.get(head) is None for head in steady)
    finally:
        loop.close()


def test_heads_whose_answers_are_not_cached_stay_out_of_the_memo() -> None:
    """A flood of new refused origins: the cache refuses to store them (its admission filter), so the memo does
    not take them either. Offered every head, the memo's own filter would let 1.4-2.8 % of them in and fill it."""
    loop = asyncio.new_event_loop()
    try:
        app = _app(cache_size=64, rate_limit={"enabled": False})
        connection = _connection(app, loop)
        for n in range(10_000):
            connection.data_received(
                _head("/api/items", f"Origin: https://f{n}.flood.example", "Access-Control-Request-Method: PUT")
            )
        assert len(app.runtime.cache._entries) == 64  # the first 64, stored while it had room, then rarely one more
        assert len(app.runtime.heads) < 16
        assert all(w[9:12] == b"403" for w in connection.transport.writes[-100:])
    finally:
        loop.close()


_PAIR: list[CorsHandlerApp] = []


@given(st.one_of(clean_heads(), heads(), mutated()))
@settings(max_examples=max(50, EXAMPLES // 10), deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_head_sent_again_and_again_gets_the_bytes_it_gets_without_the_memo(data: bytes) -> None:
    """The generated and mutated heads of test_head.py, each read three times on a new connection of an
    app with the memo and one without: the same bytes every time (the limiter's state carries over)."""
    if not _PAIR:
        _PAIR.extend((_app(), _app()))
        _PAIR[1].runtime.heads.offer = lambda head, prepared: None  # type: ignore[method-assign]
    loop = asyncio.new_event_loop()
    try:
        connections = [_connection(app, loop) for app in _PAIR]
        for _ in range(3):
            for connection in connections:
                connection.data_received(data)
                loop.run_until_complete(asyncio.sleep(0.001))  # what went to the ASGI app is answered too
        ours, theirs = (c.transport.writes for c in connections)
        assert ours == theirs
        assert _PAIR[0].metrics.requests == _PAIR[1].metrics.requests
    finally:
        loop.run_until_complete(_cancel(asyncio.all_tasks(loop)))
        loop.close()


async def _cancel(tasks: set[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
