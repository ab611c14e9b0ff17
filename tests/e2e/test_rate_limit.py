"""Rate limiting against the running server: burst, 429 shape, clients, exclusions, memory bound."""

import json
import os

import pytest

from ..conftest import Server, rss_kib
from .pipeline import pipeline, preflight_bytes

pytestmark = pytest.mark.e2e

LIMITED = {
    "allow_origins": ["https://app.example.com"],
    "rate_limit": {"average": 60, "period": 60, "burst": 5, "depth": 1, "excluded_ips": ["10.0.0.0/8"]},
}


def xff(ip: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip}


def test_burst_of_five_then_429_second_client_unaffected(start_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = start_server(LIMITED)
    results = [server.preflight("https://app.example.com", "GET", extra=xff("203.0.113.1")) for _ in range(6)]
    assert [r.status for r in results] == [204] * 5 + [429]
    limited = results[-1]
    assert limited.json()["error_type"] == "rate_limited"
    assert isinstance(limited.json()["message"], str)
    assert limited.headers["retry-after"] == "1"  # 60 per minute: the next token in one second
    assert limited.headers["x-ratelimit-limit"] == "60"
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert server.preflight("https://app.example.com", "GET", extra=xff("203.0.113.2")).status == 204
    # the limit applies to every OPTIONS, preflight or not; internal GETs are never limited
    assert server.request("OPTIONS", "/api", xff("203.0.113.1")).status == 429
    for _ in range(20):
        assert server.request("GET", "/health", xff("203.0.113.1")).status == 200
    assert server.request("GET", "/metrics", xff("203.0.113.1")).status == 200
    m = server.metrics()
    assert m['cors_preflight_requests_total{result="rate_limited",route="default"}'] == 2
    assert m["cors_rate_limiter_clients"] == 2


def test_depth_selects_rightmost_and_ipv6_clients(start_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = start_server(LIMITED)
    # the spoofable left part changes every time: the client is still the rightmost address
    statuses = [server.preflight("https://app.example.com", "GET", extra=xff(f"1.2.3.{i}, 2001:db8::7")).status
                for i in range(6)]  # fmt: skip
    assert statuses == [204] * 5 + [429]
    assert server.preflight("https://app.example.com", "GET", extra=xff("2001:DB8:0::7")).status == 429  # same client


def test_excluded_cidrs_are_never_limited(start_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = start_server(LIMITED)
    assert {server.preflight("https://app.example.com", "GET", extra=xff("10.1.2.3")).status for _ in range(30)} == {
        204
    }


def test_peer_is_the_client_without_depth(start_server) -> None:  # type: ignore[no-untyped-def]
    policy = {"allow_origins": ["https://app.example.com"], "rate_limit": {"average": 60, "period": 60, "burst": 3}}
    server: Server = start_server(policy)
    statuses = [server.preflight("https://app.example.com", "GET", extra=xff(f"9.9.9.{i}")).status for i in range(4)]
    assert statuses == [204, 204, 204, 429]  # X-Forwarded-For ignored at depth 0: all from 127.0.0.1


def test_rate_limit_log_is_throttled(start_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = start_server(LIMITED)
    statuses = pipeline(server.port, [preflight_bytes("https://app.example.com", forwarded="198.51.100.1")] * 2000)
    assert statuses.count(429) == 1995
    lines = [json.loads(line) for line in server.logs().splitlines() if '"rate limited"' in line]
    assert 1 <= len(lines) <= 40
    assert lines[0]["client"] == "198.51.100.1"


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc for RSS")
def test_200k_distinct_clients_table_bounded_rss_flat(start_server) -> None:  # type: ignore[no-untyped-def]
    max_clients = 50_000
    server: Server = start_server({
        "allow_origins": ["https://app.example.com"],
        "rate_limit": {"average": 60, "period": 60, "burst": 5, "depth": 1, "max_clients": max_clients},
    })  # fmt: skip

    def burst(first: int, count: int) -> None:
        requests = [
            preflight_bytes("https://app.example.com", forwarded=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
            for i in range(first, first + count)
        ]
        assert set(pipeline(server.port, requests)) == {204}  # every client is new: never limited

    rss = {}
    for step in range(4):  # 4 x 50,000 = 200,000 distinct client addresses
        burst(step * 50_000, 50_000)
        clients = server.metrics()["cors_rate_limiter_clients"]
        assert clients <= max_clients
        rss[step] = rss_kib(server.proc.pid)
    assert max_clients // 2 <= clients <= max_clients  # two generations of at most max_clients / 2
    # The table is full after the first step; later steps only replace entries. RSS stays flat:
    # within 4 MiB from the second step on (the first allocates the table and warms the caches).
    growth_kib = max(rss[2], rss[3]) - rss[1]
    print(f"RSS KiB by step: {rss}; growth after the table filled: {growth_kib} KiB")
    assert growth_kib < 4096, rss
