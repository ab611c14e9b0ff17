"""A short headless locust run through real Traefik (as the chart renders it), reconciled with Prometheus.

Locust counts what its users saw (per scenario, and failures: a wrong status or a
response cors-handler did not produce); cors-handler counts what it answered; Prometheus
scrapes those counters. The three must agree exactly once the last scrape is in.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitoring.queries import BY_NAME

from ..deploy.stack import start_stack
from .prometheus import SELECTOR, Prometheus, scrape_config

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
APP = "https://app.pvpipe.com"
TENANTS = "https://*.tenants.pvpipe.com"
OVERRIDES = {
    "policy": {
        "allow_origins": [APP, TENANTS],
        "rate_limit": {"enabled": False},  # through Traefik every locust user is one client, 127.0.0.1
    },
    "traefik": {"rateLimit": {"enabled": False}, "host": "127.0.0.1"},  # locust sends Host: 127.0.0.1:<port>
}


def locust_stats(stdout: str) -> dict[str, tuple[int, int]]:
    """Scenario name -> (requests, failures) from locust's final ``--json`` report."""
    return {entry["name"]: (entry["num_requests"], entry["num_failures"]) for entry in json.loads(stdout)}


def test_locust_through_traefik_reconciles_with_prometheus(tmp_path: Path) -> None:
    if importlib.util.find_spec("locust") is None:  # never import it here: it monkey-patches the process (gevent)
        pytest.skip("locust is a test dependency")
    stack = start_stack(tmp_path, "production", OVERRIDES)
    prometheus = Prometheus(tmp_path, [scrape_config(stack.docs, f"127.0.0.1:{stack.handler.port}")], [])
    try:
        prometheus.wait_until(lambda: prometheus.scalar(f"up{{{SELECTOR}}}") == 1, "scraping")
        env = {**os.environ, "CORS_LOCUST_ORIGIN": APP, "CORS_LOCUST_ROTATING_ORIGINS": "200",
               "CORS_LOCUST_ROTATING_ORIGIN": "https://t{n}.tenants.pvpipe.com"}  # fmt: skip
        run = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"), "--headless",
             "-u", "6", "-r", "6", "-t", "4s", "--stop-timeout", "2", "-H", f"http://127.0.0.1:{stack.proxy.port}",
             "--tags", "allowed", "rotating", "rejected", "--json", "--only-summary"],
            capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        stats = locust_stats(run.stdout)  # (the --csv files can miss the last second)
        assert set(stats) == {"allowed", "rotating", "rejected"}, stats
        assert all(failures == 0 for _, failures in stats.values()), stats
        sent = sum(requests for requests, _ in stats.values())
        assert sent > 300, stats  # a real load, not a handful

        prometheus.wait_until(
            lambda: prometheus.scalar(f"sum(cors_preflight_requests_total{{{SELECTOR}}})") == sent,
            f"scraped all {sent} locust requests",
        )
        by_result = prometheus.by(f"sum by (result) (cors_preflight_requests_total{{{SELECTOR}}})", "result")
        assert {r: v for r, v in by_result.items() if v} == {
            "allowed": stats["allowed"][0] + stats["rotating"][0],
            "rejected": stats["rejected"][0],
        }
        by_reason = prometheus.by(f"sum by (reason) (cors_preflight_rejections_total{{{SELECTOR}}})", "reason")
        assert {r: v for r, v in by_reason.items() if v} == {"origin_not_allowed": stats["rejected"][0]}
        assert [seen for seen in stack.backend.seen if seen[0] == "OPTIONS"] == []  # all answered by cors-handler
        p95 = prometheus.scalar(BY_NAME["p95_latency"].render(SELECTOR, "1m"))
        assert p95 is not None and 0 < p95 < 0.1
        print(f"locust: {stats}; prometheus: {by_result}; p95 {p95 * 1e3:.2f} ms")
    finally:
        prometheus.stop()
        stack.stop()
