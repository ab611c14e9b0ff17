"""The response cache stays at its bound whatever the traffic (50,000 distinct origins)."""

import http.client

from ..conftest import Server

CACHE_SIZE = 1000
ORIGINS = 50_000


def test_cache_stays_at_its_bound(start_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = start_server(
        {"allow_origins": ["https://*.example.com"], "cache_size": CACHE_SIZE, "rate_limit": {"enabled": False}}
    )
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    statuses: dict[int, int] = {}
    peak = 0
    for i in range(ORIGINS):
        # half allowed (distinct subdomains), half rejected: both kinds are cached
        origin = f"https://u{i}.example.com" if i % 2 else f"https://u{i}.attacker.test"
        conn.request("OPTIONS", "/api", headers={"Origin": origin, "Access-Control-Request-Method": "GET"})
        resp = conn.getresponse()
        resp.read()
        statuses[resp.status] = statuses.get(resp.status, 0) + 1
        if i % 5000 == 4999:
            entries = server.metrics()["cors_response_cache_entries"]
            peak = max(peak, int(entries))
            assert entries <= CACHE_SIZE
    conn.close()
    metrics = server.metrics()
    assert statuses == {204: ORIGINS // 2, 403: ORIGINS // 2}
    assert metrics["cors_response_cache_entries"] == CACHE_SIZE
    assert peak == CACHE_SIZE
    assert metrics["cors_response_cache_misses_total"] == ORIGINS
    # a repeat of a recent key is a hit
    server.preflight(f"https://u{ORIGINS - 1}.example.com", "GET", path="/api")
    assert server.metrics()["cors_response_cache_hits_total"] == 1
