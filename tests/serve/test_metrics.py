from cors_handler.serve.metrics import DURATION_BUCKETS, Metrics, Snapshot, build_registry

from ..conftest import metric_samples


def scrape(metrics: Metrics, snap: Snapshot) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    return metric_samples(build_registry(metrics, lambda: snap))


SNAP = Snapshot(cache_hits=7, cache_misses=3, cache_entries=3, limiter_clients=2, environment="production",
                version="abc123")  # fmt: skip


def test_design_metric_names_and_labels() -> None:
    m = Metrics(["default", "v2"])
    m.record("default", "allowed", "", 0.00003)
    m.record("v2", "rejected", "origin_not_allowed", 0.002)
    m.reloads["failure"] += 1
    s = scrape(m, SNAP)
    assert s["cors_preflight_requests_total"][(("result", "allowed"), ("route", "default"))] == 1
    assert s["cors_preflight_requests_total"][(("result", "rejected"), ("route", "v2"))] == 1
    assert len(s["cors_preflight_requests_total"]) == 2 * 6  # every series exists from the start
    assert s["cors_preflight_rejections_total"][(("reason", "origin_not_allowed"), ("route", "v2"))] == 1
    assert s["cors_request_duration_seconds_bucket"][(("le", "5e-05"),)] == 1
    assert s["cors_request_duration_seconds_bucket"][(("le", "0.0025"),)] == 2
    assert s["cors_request_duration_seconds_count"][()] == 2
    assert min(DURATION_BUCKETS) == 0.00005
    assert s["cors_response_cache_entries"][()] == 3
    assert s["cors_response_cache_hits_total"][()] == 7
    assert s["cors_response_cache_misses_total"][()] == 3
    assert s["cors_rate_limiter_clients"][()] == 2
    assert s["cors_policy_reloads_total"][(("result", "failure"),)] == 1
    assert s["cors_policy_info"][(("environment", "production"), ("version", "abc123"))] == 1
    assert "process_resident_memory_bytes" in s


def test_retired_cache_counts_keep_counters_monotonic() -> None:
    m = Metrics(["default"])
    m.retire_cache(100, 20)
    s = scrape(m, SNAP)
    assert s["cors_response_cache_hits_total"][()] == 107
    assert s["cors_response_cache_misses_total"][()] == 23


def test_set_routes_drops_removed_routes_keeps_counts() -> None:
    m = Metrics(["default", "old"])
    m.record("default", "allowed", "", 0.0001)
    m.set_routes(["default", "new"])
    assert m.requests[("default", "allowed")] == 1
    assert not any(route == "old" for route, _ in m.requests)
    assert ("new", "rejected") in m.requests
