"""The response cache stays at its bound whatever the traffic, and one-off keys do not evict real traffic.

Both through the real service: the fast path answers hits, misses go through the app.
"""

import http.client

import pytest

from ..conftest import Server

pytestmark = pytest.mark.e2e

CACHE_SIZE = 1000
DISTINCT = 12_000
STEADY = 100
FLOOD = 20_000
FLOOD_PER_STEADY = 20


def _send(conn: http.client.HTTPConnection, origin: str) -> int:
    conn.request("OPTIONS", "/api", headers={"Origin": origin, "Access-Control-Request-Method": "GET"})
    resp = conn.getresponse()
    resp.read()
    return resp.status


def test_cache_stays_at_its_bound(start_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = start_server(
        {"allow_origins": ["https://*.example.com"], "cache_size": CACHE_SIZE, "rate_limit": {"enabled": False}}
    )
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    statuses: dict[int, int] = {}
    peak = 0
    for i in range(DISTINCT):
        # half allowed (distinct subdomains), half rejected; each key twice: a full cache stores a key
        # on its second miss
        origin = f"https://u{i}.example.com" if i % 2 else f"https://u{i}.attacker.test"
        for _ in range(2):
            status = _send(conn, origin)
            statuses[status] = statuses.get(status, 0) + 1
        if i % 2000 == 1999:
            entries = server.metrics()["cors_response_cache_entries"]
            peak = max(peak, int(entries))
            assert entries <= CACHE_SIZE
    conn.close()
    metrics = server.metrics()
    assert statuses == {204: DISTINCT, 403: DISTINCT}
    assert metrics["cors_response_cache_entries"] == CACHE_SIZE
    assert peak == CACHE_SIZE
    hits, misses = metrics["cors_response_cache_hits_total"], metrics["cors_response_cache_misses_total"]
    assert hits + misses == 2 * DISTINCT
    # once the cache is full, a key is stored on its second miss (so its second request is a
    # miss too), unless the admission filter errs
    assert hits < CACHE_SIZE + 0.03 * DISTINCT
    # a repeat of a recent key is a hit
    server.preflight(f"https://u{DISTINCT - 1}.example.com", "GET", path="/api")
    assert server.metrics()["cors_response_cache_hits_total"] == hits + 1


def test_flood_of_refused_origins_does_not_evict_real_traffic(start_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = start_server(
        {"allow_origins": ["https://*.example.com"], "cache_size": CACHE_SIZE, "rate_limit": {"enabled": False}}
    )
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    steady = [f"https://s{i}.example.com" for i in range(STEADY)]
    for origin in steady * 2:
        assert _send(conn, origin) == 204
    before = server.metrics()
    steady_requests = 0
    for n in range(FLOOD):  # 20 times the cache's size in distinct refused origins
        assert _send(conn, f"https://r{n}.attacker.test") == 403
        if n % FLOOD_PER_STEADY == 0:
            assert _send(conn, steady[(n // FLOOD_PER_STEADY) % STEADY]) == 204
            steady_requests += 1
    conn.close()
    after = server.metrics()
    hits = after["cors_response_cache_hits_total"] - before["cors_response_cache_hits_total"]
    # the refused origins are all distinct: every hit is a steady key's
    assert hits / steady_requests >= 0.99
    assert after["cors_response_cache_entries"] <= CACHE_SIZE
