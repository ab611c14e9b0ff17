"""Prometheus metrics kept as plain numbers on the hot path, exposed at scrape time.

prometheus-client's labelled ``.labels(...).inc()`` costs a lock and a dict
lookup per call; a request here costs less than that. So the request path
increments plain ints in dicts keyed by (route, result), and a Collector
turns them into metric families only when /metrics is scraped. Label values
come from configuration (route names) and fixed sets (results, reasons),
never from the request: the series count is bounded by the policy.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..cors.decide import REJECTION_REASONS
from .responses import RESULTS

# Seconds; from 50 microseconds (a cache hit) to a second (something is wrong).
DURATION_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
RELOAD_RESULTS = ("success", "failure")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Values read from the live runtime at scrape time."""

    cache_hits: int
    cache_misses: int
    cache_entries: int
    limiter_clients: int
    environment: str
    version: str
    sources: tuple[tuple[str, bool], ...] = ()  # each route source and whether its current file is in force


class Metrics:
    """The service's counters; every method is O(1) and allocation-free on the hot path."""

    def __init__(self, routes: Iterable[str]) -> None:
        self.requests: dict[tuple[str, str], int] = {}
        self.rejections: dict[tuple[str, str], int] = {}
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.reloads = dict.fromkeys(RELOAD_RESULTS, 0)
        # Hits and misses of caches replaced by reloads, so the counters never go down.
        self.retired_hits = 0
        self.retired_misses = 0
        self.fast_path = 0  # responses the protocol fast path wrote (a subset of the requests counted)
        self.set_routes(routes)

    def set_routes(self, routes: Iterable[str]) -> None:
        """Pre-create every (route, label) series at zero; drop series of removed routes."""
        names = list(routes)
        self.requests = {(r, res): self.requests.get((r, res), 0) for r in names for res in RESULTS}
        self.rejections = {(r, why): self.rejections.get((r, why), 0) for r in names for why in REJECTION_REASONS}

    def record(self, route: str, result: str, reason: str, seconds: float) -> None:
        """One answered request: its (route, result) count, its rejection reason, its duration."""
        key = (route, result)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        if reason and result == "rejected":
            rkey = (route, reason)
            self.rejections[rkey] = self.rejections.get(rkey, 0) + 1
        self.buckets[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.duration_sum += seconds

    def retire_cache(self, hits: int, misses: int) -> None:
        self.retired_hits += hits
        self.retired_misses += misses


class CorsCollector(Collector):
    """Builds the design's metric families from Metrics and a runtime snapshot."""

    def __init__(self, metrics: Metrics, snapshot: Callable[[], Snapshot]) -> None:
        self._m = metrics
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        m, snap = self._m, self._snapshot()
        requests = CounterMetricFamily(
            "cors_preflight_requests", "OPTIONS requests answered, by route and result", labels=["route", "result"]
        )
        for (route, result), value in m.requests.items():
            requests.add_metric([route, result], value)
        yield requests
        rejections = CounterMetricFamily(
            "cors_preflight_rejections", "Rejected preflights, by route and reason", labels=["route", "reason"]
        )
        for (route, reason), value in m.rejections.items():
            rejections.add_metric([route, reason], value)
        yield rejections
        cumulative, running = [], 0
        for bound, count in zip((*map(str, DURATION_BUCKETS), "+Inf"), m.buckets, strict=True):
            running += count
            cumulative.append((bound, running))
        yield HistogramMetricFamily(
            "cors_request_duration_seconds",
            "Time to answer an OPTIONS request inside the service",
            buckets=cumulative,
            sum_value=m.duration_sum,
        )
        yield GaugeMetricFamily("cors_response_cache_entries", "Cached preflight responses", value=snap.cache_entries)
        yield CounterMetricFamily(
            "cors_response_cache_hits", "Preflights answered from the cache", value=m.retired_hits + snap.cache_hits
        )
        yield CounterMetricFamily(
            "cors_response_cache_misses",
            "Preflights evaluated against the policy",
            value=m.retired_misses + snap.cache_misses,
        )
        yield GaugeMetricFamily(
            "cors_rate_limiter_clients", "Clients tracked by the rate limiter", value=snap.limiter_clients
        )
        yield CounterMetricFamily(
            "cors_fast_path_responses", "OPTIONS requests answered by the protocol fast path", value=m.fast_path
        )
        reloads = CounterMetricFamily("cors_policy_reloads", "Policy reloads, by result", labels=["result"])
        for result, value in m.reloads.items():
            reloads.add_metric([result], value)
        yield reloads
        info = InfoMetricFamily("cors_policy", "The policy in force", labels=["environment", "version"])
        info.add_metric([snap.environment, snap.version], {})
        yield info
        sources = GaugeMetricFamily(
            "cors_policy_source_valid",
            "1 when the route source's current file is in force, 0 when it failed (last good or refused)",
            labels=["source"],
        )
        for source, valid in snap.sources:  # bounded by the routes directory (config.sources.MAX_SOURCES)
            sources.add_metric([source], 1 if valid else 0)
        yield sources


def build_registry(metrics: Metrics, snapshot: Callable[[], Snapshot]) -> CollectorRegistry:
    """A registry of our own (not the global one): several apps can live in one process (tests)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(CorsCollector(metrics, snapshot))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
