"""A real Prometheus scrapes a real cors-handler after a known mix of traffic.

Every catalogue query (docs/monitoring.md and dashboard) and every alert expression of the rendered
PrometheusRule is run through Prometheus's HTTP API and compared with what was sent.
Ratios are exact up to float rounding: every series exists from startup at 0 and the
first scrape happens before any traffic, so rate() extrapolates all series alike.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.queries import BY_NAME, QUERIES

from ..conftest import Server
from ..deploy.chart import RELEASE, environment_values, merge, objects, one
from ..deploy.stack import candidate_args
from .prometheus import SELECTOR, Prometheus, scrape_config
from .test_alerts import write_rules

pytestmark = pytest.mark.e2e

APP = "https://app.example.com"  # in values-production.yaml
RESULTS = ("allowed", "rejected", "invalid", "not_preflight", "rate_limited")
REASONS = ("origin_not_allowed", "method_not_allowed", "header_not_allowed")
BURST = 5
STORM = BURST + 4  # one client: BURST allowed, then 4 rate limited

# what is sent: (count, result, reason, headers)
MIX: list[tuple[int, str, str | None, list[tuple[str, str]]]] = [
    (18, "allowed", None, [("Origin", APP), ("Access-Control-Request-Method", "PUT"),
                           ("Access-Control-Request-Headers", "content-type")]),
    (13, "allowed", None, [("Origin", APP), ("Access-Control-Request-Method", "PUT"),
                           ("Access-Control-Request-Headers", "x-request-id")]),
    (9, "rejected", "origin_not_allowed", [("Origin", "https://evil.example.net"),
                                           ("Access-Control-Request-Method", "PUT")]),
    (4, "rejected", "method_not_allowed", [("Origin", APP), ("Access-Control-Request-Method", "PURGE")]),
    (3, "rejected", "header_not_allowed", [("Origin", APP), ("Access-Control-Request-Method", "PUT"),
                                           ("Access-Control-Request-Headers", "x-secret")]),
    (2, "invalid", None, [("Origin", APP), ("Origin", "https://evil.example.net"),
                          ("Access-Control-Request-Method", "PUT")]),
    (3, "not_preflight", None, [("Origin", APP)]),
]  # fmt: skip
DISTINCT_CACHE_KEYS = 6  # two allowed variants, the storm's (no request headers), three rejected
# The chart's candidatePolicy for the scraped service: the production policy without x-request-id
# (it would refuse the 13 preflights asking for it) and with the evil origin (it would allow those 9).
CANDIDATE_CHANGES: dict[str, Any] = {
    "allow_headers": ["content-type", "authorization"],
    "allow_origins": [APP, "https://admin.example.com", "https://evil.example.net"],
}
CANDIDATE_REFUSED = 13  # live allowed, candidate header_not_allowed
CANDIDATE_ALLOWED = 9  # live origin_not_allowed, candidate allowed


# Two teams' route sources (chart values) and their files: orders.yaml in force, broken.yaml refused (a bad origin).
SOURCES = [{"name": "orders", "hosts": ["orders.example.net"]}, {"name": "broken", "hosts": ["broken.example.net"]}]
SOURCE_FILES = {
    "orders.yaml": yaml.safe_dump(
        {"routes": [{"path_prefix": "/orders", "allow_origins": ["https://shop.example.net"]}]}
    ),
    "broken.yaml": yaml.safe_dump({"routes": [{"path_prefix": "/", "allow_origins": ["https://bad origin"]}]}),
}


def expected_results() -> dict[str, int]:
    counts = dict.fromkeys(RESULTS, 0)
    for count, result, _, _ in MIX:
        counts[result] += count
    counts["allowed"] += BURST
    counts["rate_limited"] += STORM - BURST
    return counts


def expected_reasons() -> dict[str, int]:
    counts = dict.fromkeys(REASONS, 0)
    for count, _, reason, _ in MIX:
        if reason:
            counts[reason] += count
    return counts


def q(name: str) -> str:
    return BY_NAME[name].render(SELECTOR)


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, Server, list[dict[str, Any]]]]:
    """cors-handler (the chart's production policy) after the traffic mix, as Prometheus last scraped it."""
    workdir = Path(tmp_path_factory.mktemp("prometheus"))
    limits = {"rate_limit": {"average": 1, "burst": BURST}}
    live = merge(environment_values("production")["policy"], limits)
    docs = objects(environment_values("production", {"policy": limits, "routeSources": SOURCES,
                                                     "candidatePolicy": {**live, **CANDIDATE_CHANGES}}))  # fmt: skip
    policy = yaml.safe_load(one(docs, "ConfigMap", RELEASE)["data"]["policy.yaml"])
    candidate = candidate_args(workdir, docs)  # the Deployment's --candidate
    routes_dir = workdir / "routes"  # the teams' files: one in force, one refused from the start
    routes_dir.mkdir()
    for name, text in SOURCE_FILES.items():
        (routes_dir / name).write_text(text)
    handler = Server(workdir, policy, {"CORS_ROUTES_DIR": str(routes_dir)}, candidate)
    prometheus = Prometheus(workdir, [scrape_config(docs, f"127.0.0.1:{handler.port}")], [write_rules(workdir)])
    try:
        prometheus.wait_until(lambda: prometheus.scalar(f"up{{{SELECTOR}}}") == 1, "scraping")
        send_everything(handler, prometheus, policy, Path(candidate[1]))
        total = sum(expected_results().values())
        prometheus.wait_until(
            lambda: (
                prometheus.scalar(f"sum(cors_preflight_requests_total{{{SELECTOR}}})") == total
                and prometheus.scalar(f'sum(cors_policy_reloads_total{{{SELECTOR}, result="failure"}})') >= 1
                and prometheus.scalar(f'sum(cors_candidate_reloads_total{{{SELECTOR}, result="failure"}})') >= 1
            ),
            "scraped the traffic",
        )
        time.sleep(1.5)  # one more scrape and rule evaluation with nothing new
        yield prometheus, handler, docs
    finally:
        prometheus.stop()
        handler.stop()
    assert "Traceback" not in handler.logs()


def send_everything(handler: Server, prometheus: Prometheus, policy: dict[str, Any], candidate: Path) -> None:
    """A policy change (a successful reload), the traffic mix, then a refused reload of each file."""
    assert handler.policy_path is not None
    handler.policy_path.write_text(yaml.safe_dump({**policy, "max_age": 7200}))  # the file watcher reloads
    wait_for_reloads(handler, "cors_policy_reloads_total", "success")
    clients = (f"198.51.100.{n}" for n in itertools.count(1))  # a fresh client per request ...
    for count, result, _, headers in MIX:
        for _ in range(count):
            status = handler.request("OPTIONS", "/api/items", [*headers, ("X-Forwarded-For", next(clients))]).status
            assert status == {"allowed": 204, "rejected": 403, "invalid": 400, "not_preflight": 204}.get(result, status)
    storm = [("Origin", APP), ("Access-Control-Request-Method", "PUT"), ("X-Forwarded-For", "203.0.113.9")]
    statuses = [handler.request("OPTIONS", "/api/items", storm).status for _ in range(STORM)]  # ... but one
    assert statuses == [204] * BURST + [429] * (STORM - BURST)
    handler.policy_path.write_text(yaml.safe_dump({**policy, "max_age": -1}))
    wait_for_reloads(handler, "cors_policy_reloads_total", "failure")
    # a broken candidate is refused, counted, and the one loaded at startup stays (the counters above)
    candidate.write_text(yaml.safe_dump({**yaml.safe_load(candidate.read_text()), "max_age": -1}))
    wait_for_reloads(handler, "cors_candidate_reloads_total", "failure")


def wait_for_reloads(handler: Server, counter: str, result: str) -> None:
    key = f'{counter}{{result="{result}"}}'
    deadline = time.monotonic() + 10
    while handler.metrics().get(key, 0) < 1:
        assert time.monotonic() < deadline, f"no {result} reload: {handler.logs()[-2000:]}"
        time.sleep(0.05)


def test_requests_by_result_match_the_traffic(scraped: Any) -> None:
    prometheus, _, _ = scraped
    sent = expected_results()
    rates = prometheus.by(q("requests_by_result"), "result")
    total_rate = sum(rates.values())
    for result, count in sent.items():
        assert rates.get(result, 0) / total_rate == pytest.approx(count / sum(sent.values()), rel=1e-9), result
    rejected = prometheus.scalar(q("rejected_ratio"))
    assert rejected == pytest.approx(sent["rejected"] / sum(sent.values()), rel=1e-9)
    limited = prometheus.scalar(q("rate_limited_ratio"))
    assert limited == pytest.approx(sent["rate_limited"] / sum(sent.values()), rel=1e-9)


def test_rejections_by_reason_match_the_traffic(scraped: Any) -> None:
    prometheus, _, _ = scraped
    reasons, total = expected_reasons(), sum(expected_results().values())
    ratios = prometheus.by(q("rejection_ratio_by_reason"), "reason")
    for reason, count in reasons.items():
        assert ratios[reason] == pytest.approx(count / total, rel=1e-9), reason
    rates = prometheus.by(q("rejections_by_reason"), "reason")
    assert rates["origin_not_allowed"] / rates["header_not_allowed"] == pytest.approx(9 / 3, rel=1e-9)
    assert rates.get("private_network_not_allowed", 0) == 0


def test_cache_queries_agree_with_the_traffic(scraped: Any) -> None:
    prometheus, handler, _ = scraped
    # every allowed or rejected preflight looks the cache up; only a first sight of a key misses
    lookups = sum(c for c, result, _, _ in MIX if result in ("allowed", "rejected")) + BURST
    hit_ratio = prometheus.scalar(q("cache_hit_ratio"))
    assert hit_ratio is not None and hit_ratio >= (lookups - DISTINCT_CACHE_KEYS) / lookups - 1e-9
    assert prometheus.scalar(q("cache_entries")) == DISTINCT_CACHE_KEYS
    served = handler.metrics()
    assert prometheus.scalar(q("limiter_clients")) == served["cors_rate_limiter_clients"]
    assert 1 <= served["cors_rate_limiter_clients"] <= sum(c for c, *_ in MIX) + 1


def test_latency_quantiles_are_finite_and_plausible(scraped: Any) -> None:
    prometheus, _, _ = scraped
    quantiles = [prometheus.scalar(q(name)) for name in ("p50_latency", "p95_latency", "p99_latency")]
    for value in quantiles:
        assert value is not None and math.isfinite(value) and 0 < value < 0.1, quantiles
    assert quantiles == sorted(quantiles)


def test_policy_reload_and_version_queries(scraped: Any) -> None:
    prometheus, handler, _ = scraped
    reloads = prometheus.by(q("reloads_by_result"), "result")
    assert reloads["success"] > 0 and reloads["failure"] > 0
    assert prometheus.by(q("candidate_reloads_by_result"), "result")["failure"] > 0
    [info] = prometheus.query(q("policy_info"))
    served_version = next(k for k in handler.metrics() if k.startswith("cors_policy_info{"))
    assert f'version="{info["metric"]["version"]}"' in served_version
    assert info["metric"]["environment"] == "production"
    assert prometheus.scalar(q("policy_versions")) == 1  # the pre-reload version went stale
    assert prometheus.scalar(q("availability")) == 1


def test_candidate_queries_agree_with_the_traffic(scraped: Any) -> None:
    prometheus, handler, _ = scraped
    live_allowed = expected_results()["allowed"]
    ratio = prometheus.by(q("candidate_refused_ratio"), "route")
    # the routes no preflight reached (the teams' sources) are 0/0: NaN, which no alert threshold exceeds
    assert {route: value for route, value in ratio.items() if not math.isnan(value)} == {
        "default": pytest.approx(CANDIDATE_REFUSED / live_allowed, rel=1e-9)
    }
    pairs = {(s["metric"]["route"], s["metric"]["live"], s["metric"]["candidate"]): float(s["value"][1])
             for s in prometheus.query(q("candidate_disagreements"))}  # fmt: skip
    assert set(pairs) == {("default", "allowed", "header_not_allowed"), ("default", "origin_not_allowed", "allowed")}
    assert all(rate > 0 for rate in pairs.values())
    served = handler.metrics()
    assert (
        served['cors_candidate_decisions_total{candidate="header_not_allowed",live="allowed",route="default"}']
        == CANDIDATE_REFUSED
    )
    assert (
        served['cors_candidate_decisions_total{candidate="allowed",live="origin_not_allowed",route="default"}']
        == CANDIDATE_ALLOWED
    )


def test_route_source_queries_name_the_refused_file(scraped: Any) -> None:
    prometheus, handler, _ = scraped
    assert prometheus.scalar(q("sources_valid")) == 1
    assert prometheus.scalar(q("sources_failing")) == 1
    assert prometheus.by(q("source_state"), "source") == {"orders.yaml": 1, "broken.yaml": 0}
    served = handler.metrics()
    assert served['cors_policy_source_valid{source="broken.yaml"}'] == 0


def test_every_catalogue_query_returns_data(scraped: Any) -> None:
    prometheus, _, _ = scraped
    for query in QUERIES:
        assert prometheus.query(query.render(SELECTOR)), query.name


def test_alert_expressions_agree_with_the_traffic(scraped: Any) -> None:
    """Each rendered alert's expression returns data exactly when the traffic crosses its threshold."""
    prometheus, _, docs = scraped
    thresholds = environment_values("production")["metrics"]["prometheusRule"]
    sent = expected_results()
    total = sum(sent.values())
    expect_firing = {
        "CorsHandlerHighLatency": False,
        "CorsHandlerRateLimitingHigh": sent["rate_limited"] / total > thresholds.get("rateLimitedRatio", 0.05),
        "CorsHandlerDown": False,
        "CorsHandlerPolicyReloadFailed": True,
        "CorsHandlerRejectionRatioHigh": sent["rejected"] / total > thresholds.get("rejectedRatio", 0.25),
        "CorsHandlerCandidateWouldRefuse": True,
        "CorsHandlerCandidateReloadFailed": True,
        "CorsHandlerPolicySkew": False,  # one process: one version at a time, however many it served
        "CorsHandlerPolicySourceInvalid": True,  # broken.yaml
    }
    assert expect_firing["CorsHandlerRateLimitingHigh"] and expect_firing["CorsHandlerRejectionRatioHigh"]
    rules = one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]
    assert {rule["alert"] for rule in rules} == set(expect_firing)
    for rule in rules:
        assert bool(prometheus.query(rule["expr"])) == expect_firing[rule["alert"]], rule["alert"]
    # and Prometheus itself loaded the rules and is evaluating them
    states = {r["name"]: (r["health"], r["state"]) for g in prometheus.api("rules")["groups"] for r in g["rules"]}
    assert states == {
        "CorsHandlerHighLatency": ("ok", "inactive"),
        "CorsHandlerRateLimitingHigh": ("ok", "pending"),  # for: 10m
        "CorsHandlerDown": ("ok", "inactive"),
        "CorsHandlerPolicyReloadFailed": ("ok", "firing"),  # no for:
        "CorsHandlerRejectionRatioHigh": ("ok", "pending"),  # for: 5m
        "CorsHandlerCandidateWouldRefuse": ("ok", "pending"),  # for: 15m
        "CorsHandlerCandidateReloadFailed": ("ok", "firing"),  # no for:
        "CorsHandlerPolicySkew": ("ok", "inactive"),
        "CorsHandlerPolicySourceInvalid": ("ok", "pending"),  # for: 5m
    }
