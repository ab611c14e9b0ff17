"""The benchmark harness reads wrk's report correctly (wrk itself runs in loadtests/bench.py, not here)."""

import argparse

import pytest

from loadtests.bench import (
    CONSTANT,
    FLOOR,
    HOSTS,
    LARGE,
    OURS,
    RSS_KIB,
    SERVERS,
    STARLETTE,
    TARGET_CELLS,
    TRAEFIK,
    Result,
    parse_wrk,
    report,
    select,
    steady_hit_ratio,
    target_table,
)
from loadtests.memory import ALLOWED_FLOOD, REFUSED_FLOOD
from loadtests.scenarios import (
    ALLOWED_ORIGIN,
    FLOOD_WITH_STEADY,
    RANDOM_HOSTS,
    RANDOM_HOSTS_REFUSED,
    RANDOM_REFUSED,
    SCENARIOS,
)

WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:41234/api/items
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   654.19us  106.78us   3.11ms   97.31%
    Req/Sec    76.69k     1.16k   77.92k    80.00%
  Latency Distribution
     50%  639.00us
     75%  653.00us
     90%  669.00us
     99%    1.26ms
  381515 requests in 5.00s, 29.47MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 15
Requests/sec:  76207.51
Transfer/sec:      5.89MB
"""


def test_parse_wrk_reads_rate_latency_and_errors() -> None:
    result = parse_wrk(WRK_OUTPUT, expects_2xx=True)
    assert result == Result(76207.51, 0.639, 1.26, 3 + 15)
    refused = parse_wrk(WRK_OUTPUT, expects_2xx=False)  # a 403 scenario: the 2xx answers are the wrong ones
    assert refused.errors == 3 + (381515 - 15)


def test_a_mixed_scenario_counts_only_socket_errors() -> None:
    assert parse_wrk(WRK_OUTPUT, expects_2xx=None).errors == 3


def test_report_prints_every_row_and_the_ratios() -> None:
    results = {(name, scenario): Result(1000.0 * (i + 1), 1.0, 2.0, 0)
               for i, name in enumerate(SERVERS) for scenario in SERVERS[name]}  # fmt: skip
    text = report(results, {"cors-handler": 0.2})
    assert text.count("\n") >= sum(map(len, SERVERS.values()))
    assert "cors-handler / nginx: allowed origin: 0.11x" in text
    assert "cors-handler --no-fast-path / bare ASGI: allowed origin: 0.29x" in text
    assert "cors-handler --candidate / cors-handler: allowed origin: 10.00x" in text  # what a candidate costs
    assert "write-only Protocol (the floor) / Starlette CORSMiddleware: allowed origin: 0.62x" in text


def test_target_table_has_every_ratio_of_the_issue() -> None:
    rates = {(OURS, "allowed origin"): 60_000.0, (CONSTANT, "allowed origin"): 80_000.0,
             (TRAEFIK, "allowed origin"): 20_000.0, (STARLETTE, "allowed origin"): 12_000.0,
             (FLOOR, "allowed origin"): 84_000.0, (OURS, RANDOM_REFUSED): 36_000.0,
             (LARGE, RANDOM_REFUSED): 9_000.0, (OURS, RANDOM_HOSTS): 50_000.0, (HOSTS, RANDOM_HOSTS): 47_500.0,
             (OURS, RANDOM_HOSTS_REFUSED): 30_000.0, (HOSTS, RANDOM_HOSTS_REFUSED): 24_000.0}  # fmt: skip
    results = {cell: Result(rate, 1.0, 2.0, 0) for cell, rate in rates.items()}
    results[OURS, FLOOD_WITH_STEADY] = Result(30_000.0, 1.0, 2.0, 0, hit_ratio=0.995, flood_multiple=27.0)
    RSS_KIB.clear()
    RSS_KIB.update({HOSTS: (70 * 1024, 75 * 1024), OURS: (60 * 1024, 62 * 1024)})
    lines = target_table(results, {REFUSED_FLOOD: 70.5, ALLOWED_FLOOD: 61.2}).splitlines()
    RSS_KIB.clear()
    assert lines[1:] == [
        "  cached allowed preflight / constant-bytes Protocol (the Python limit): 0.75x (target >= 0.75x)  met",
        "    bound: the write-only Protocol (the floor) / the same baseline: 1.05x",
        "  cached allowed preflight / Traefik 3.7 headers middleware, GOMAXPROCS=1: 3.00x (target >= 2.0x)  met",
        "    bound: the write-only Protocol (the floor) / the same baseline: 4.20x",
        "  cached allowed preflight / Starlette CORSMiddleware on uvicorn: 5.00x (target >= 4.0x)  met",
        "    bound: the write-only Protocol (the floor) / the same baseline: 7.00x",
        "  random refused origins (every request a miss), small policy / cached allowed preflight: 0.60x "
        "(target >= 0.5x)  met",
        "  random refused origins, 21,000-entry policy / the same with the 2-entry policy: 0.25x (target >= 0.5x)"
        "  NOT met",
        "  random hosts and paths (cached), 1,000-host policy / the same with the 1-route policy: 0.95x"
        " (target >= 0.9x)  met",
        "  random hosts, refused origins (every request a miss), 1,000-host policy / the 1-route policy: 0.80x"
        " (target >= 0.9x)  NOT met",
        "  hit ratio of steady allowed keys during a random-origin flood: 99.50% (target >= 99%, 27.0 cache sizes"
        " of new origins)  met",
        "  RSS, 1,000 hosts in 1,000 route files: 70.0 MiB answering, 75.0 MiB peak over its scenarios; the 1-route"
        " policy's: 62.0 MiB (target < 80 MiB)  met",
        "  RSS peak, 1M preflights, random origins and X-Forwarded-For clients, limiter on: 70.5 MiB "
        "(target <= 64 MiB)  NOT met",
        "  RSS peak, 1M preflights, random allowed subdomains (a cached allowed answer each) and X-Forwarded-For "
        "clients, limiter at defaults: 61.2 MiB (target <= 64 MiB)  met",
    ]
    assert "not measured" in target_table({}, {})
    assert "RSS" not in target_table({}, {})  # a run without the memory scenarios has no RSS line


def test_steady_hit_ratio_reads_the_metrics_deltas() -> None:
    allowed = 'cors_preflight_requests_total{result="allowed",route="default"}'
    before = {allowed: 100.0, "cors_response_cache_hits_total": 50.0}
    after = {allowed: 1100.0, "cors_response_cache_hits_total": 1040.0, "cors_response_cache_misses_total": 9.0}
    assert steady_hit_ratio(before, after) == pytest.approx(0.99)


def test_scenarios_are_selected_by_name() -> None:
    def args(**given: object) -> argparse.Namespace:
        return argparse.Namespace(**{"targets": False, "server": None, "scenario": None, **given})

    assert select(args()) == SERVERS
    assert select(args(targets=True)) == TARGET_CELLS
    assert select(args(server=[TRAEFIK], scenario=["allowed origin", RANDOM_REFUSED])) == {TRAEFIK: ["allowed origin"]}
    with pytest.raises(SystemExit, match="unknown server"):
        select(args(server=["apache"]))
    assert ALLOWED_ORIGIN in SCENARIOS["allowed origin"][0]
