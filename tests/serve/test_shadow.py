"""The candidate policy's parts: merged route table, per-key verdicts, counters, log, metrics, loading."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from cors_handler.config.errors import ConfigError
from cors_handler.cors.decide import Decision, decide
from cors_handler.cors.model import Policy
from cors_handler.serve.events import Throttle, configure_logging
from cors_handler.serve.shadow import (
    DECISIONS,
    CandidateCollector,
    CandidateCounters,
    DisagreementLog,
    PairedRoutes,
    Shadow,
    load_candidate,
)

from ..conftest import FakeClock, make_policy, metric_samples, write_policy

# series that exist from the start, per route: live=allowed x 7 candidate values, and the 5 other
# live values x candidate=allowed
PRECREATED = len(DECISIONS) + len(DECISIONS) - 2

LIVE: dict[str, Any] = {
    "allow_origins": ["https://app.example.com", "https://old.example.com"],
    "allow_headers": ["content-type", "x-trace"],
    "routes": [{"name": "admin", "path_prefix": "/admin", "allow_methods": ["GET", "DELETE"]}],
}
CANDIDATE: dict[str, Any] = {
    "allow_origins": ["https://app.example.com"],  # drops old.example.com
    "allow_headers": ["content-type"],  # drops x-trace
    "routes": [
        {"name": "admin", "path_prefix": "/admin", "allow_methods": ["GET"]},  # drops DELETE
        {"name": "reports", "path_prefix": "/admin/reports", "allow_origins": ["https://reports.example.com"]},
        {"name": "legacy", "path_prefix": "/legacy", "enabled": False},
    ],
}


def live_decision(
    policy: Policy, path: str, origin: str, method: str, headers: str = "", pna: bool = False
) -> Decision:
    return decide(policy.route_for(path), origin, method, headers, pna)


def shadow(live: Policy | None = None, candidate: Policy | None = None, log: DisagreementLog | None = None) -> Shadow:
    live = live or make_policy(**LIVE)
    counters = CandidateCounters()
    counters.set_routes(r.name for r in live.all_routes())
    return Shadow(live, candidate or make_policy(**CANDIDATE), counters, DisagreementLog() if log is None else log)


def verdict(
    s: Shadow, path: str, origin: str, method: str = "GET", headers: str = "", pna: bool = False
) -> tuple[str, str, str]:
    """Judge one key like a cache miss, count one request, and return the counter's labels."""
    route = s.routes.route_for(path)
    cell = s.judge(route, origin.encode(), method.encode(), headers.encode(), pna,
                   live_decision(s.live, path, origin, method, headers, pna))  # fmt: skip
    cell[0] += 1
    [key] = [key for key, found in s.counters.cells.items() if found is cell]
    return key


@pytest.mark.parametrize(
    ("path", "origin", "method", "headers", "pna", "expected"),
    [
        ("/api", "https://app.example.com", "GET", "", False, ("default", "allowed", "allowed")),
        ("/api", "https://old.example.com", "GET", "", False, ("default", "allowed", "origin_not_allowed")),
        ("/api", "https://evil.example", "GET", "", False, ("default", "origin_not_allowed", "origin_not_allowed")),
        ("/admin/x", "https://app.example.com", "DELETE", "", False, ("admin", "allowed", "method_not_allowed")),
        ("/api", "https://app.example.com", "PUT", "x-trace", False, ("default", "allowed", "header_not_allowed")),
        ("/api", "https://app.example.com", "PUT", "", True,
         ("default", "private_network_not_allowed", "private_network_not_allowed")),
        ("/admin/reports/1", "https://app.example.com", "GET", "", False, ("admin", "allowed", "origin_not_allowed")),
        ("/admin/reports", "https://reports.example.com", "GET", "", False,
         ("admin", "origin_not_allowed", "allowed")),
        ("/legacy/a", "https://app.example.com", "GET", "", False, ("default", "allowed", "disabled")),
        ("/api", "not an origin", "GET", "", False, ("default", "invalid", "invalid")),
    ],
    ids=["agree", "origin", "both-refuse", "method", "header", "pna", "new-route-refuses", "new-route-allows",
         "disabled", "invalid"],
)  # fmt: skip
def test_each_key_gets_the_live_and_the_candidate_decision(
    path: str, origin: str, method: str, headers: str, pna: bool, expected: tuple[str, str, str]
) -> None:
    s = shadow()
    assert verdict(s, path, origin, method, headers, pna) == expected
    assert set(expected[1:]) <= set(DECISIONS)


def test_keys_with_the_same_pair_of_decisions_share_one_cell() -> None:
    s = shadow()
    for i in range(50):
        verdict(s, "/api", f"https://evil{i}.example")
    assert s.counters.cells[("default", "origin_not_allowed", "origin_not_allowed")] == [50]
    assert len(s.counters.cells) == 2 * PRECREATED + 1  # pre-created for two routes, plus this pair


prefixes = st.lists(
    st.lists(st.sampled_from(["a", "b", "ab", "v2"]), min_size=1, max_size=3).map(lambda p: "/" + "/".join(p)),
    max_size=5,
    unique=True,
)
paths = st.lists(st.sampled_from(["a", "b", "ab", "v2", "", "a.b"]), max_size=4).map(lambda p: "/" + "/".join(p))


HOSTS = ["api.acme.io", "*.acme.io", "*.b.acme.io", "x.b.acme.io"]
request_hosts = st.sampled_from([None, "api.acme.io", "x.b.acme.io", "y.b.acme.io", "b.acme.io", "other.io"])


def routes_of(prefix_list: list[str], tag: str, hosts: list[list[str]]) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = []
    for i, p in enumerate(prefix_list):
        route: dict[str, Any] = {"name": f"{tag}{i}", "path_prefix": p + ("/" if i % 2 else "")}
        if hosts[i % len(hosts)]:
            route["hosts"] = hosts[i % len(hosts)]
        routes.append(route)
    return routes


host_lists = st.lists(st.lists(st.sampled_from(HOSTS), max_size=2, unique=True), min_size=1, max_size=3)


@settings(max_examples=150, deadline=None)
@given(prefixes, prefixes, host_lists, host_lists, st.lists(st.tuples(paths, request_hosts), min_size=1, max_size=8))
def test_paired_routes_find_each_policys_own_route(
    live_prefixes: list[str],
    cand_prefixes: list[str],
    live_hosts: list[list[str]],
    cand_hosts: list[list[str]],
    requested: list[tuple[str, str | None]],
) -> None:
    live = make_policy(routes=routes_of(live_prefixes, "l", live_hosts))
    candidate = make_policy(routes=routes_of(cand_prefixes, "c", cand_hosts))
    table = PairedRoutes(live.table, candidate.table)
    twins: dict[tuple[int, int], object] = {}
    for path, host in requested:
        route = table.route_for(path, host)
        live_route, candidate_route = live.route_for(path, host), candidate.route_for(path, host)
        assert table.candidate_of[route] is candidate_route, path
        assert (route.name, route.path_prefix, route.origins) == (live_route.name, live_route.path_prefix,
                                                                  live_route.origins), path  # fmt: skip
        # one cache-key route per (live route, candidate route) pair: shared within, distinct across
        assert twins.setdefault((id(live_route), id(candidate_route)), route) is route, path
    assert len(set(map(id, twins.values()))) == len(twins)
    assert len(table.candidate_of) <= (len(live_prefixes) + 1) * (len(cand_prefixes) + 1)


def test_paired_routes_keep_the_live_route_object_for_its_first_pairing() -> None:
    live = make_policy(**LIVE)
    table = PairedRoutes(live.table, make_policy(**CANDIDATE).table)
    assert table.route_for("/admin/users") is live.route_for("/admin/users")
    assert table.route_for("/api") is live.default
    reports, legacy = table.route_for("/admin/reports/2"), table.route_for("/legacy")
    assert reports is not live.route_for("/admin/reports/2") and reports.name == "admin"
    assert legacy is not live.default and legacy.name == "default"
    assert len(table.candidate_of) == 4


def test_a_disagreeing_key_is_logged_once_with_what_an_operator_needs(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    s = shadow()
    for _ in range(3):
        verdict(s, "/api", "https://old.example.com", "PUT", "content-type")
    verdict(s, "/api", "https://app.example.com")  # agreement: no line
    [line] = [json.loads(text) for text in capsys.readouterr().err.splitlines()]
    assert line["event"] == "candidate policy decides differently"
    assert {k: line[k] for k in ("route", "candidate_route", "origin", "method", "request_headers", "live",
                                 "candidate", "private_network")} == {
        "route": "default", "candidate_route": "default", "origin": "https://old.example.com", "method": "PUT",
        "request_headers": "content-type", "live": "allowed", "candidate": "origin_not_allowed",
        "private_network": False,
    }  # fmt: skip


def test_disagreement_log_is_throttled_and_its_memory_bounded(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    clock = FakeClock(0.0)
    log = DisagreementLog(max_keys=100, throttle=Throttle(limit=5, interval=1.0, clock=clock))
    s = shadow(log=log)
    for i in range(1000):  # a random-origin flood that the candidate refuses and live allows (wildcard)
        clock.now += 0.01
        route = s.routes.route_for("/api")
        s.judge(route, b"https://h%d.example.com" % i, b"GET", b"", False,
                live_decision(s.live, "/api", "https://app.example.com", "GET"))  # fmt: skip
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) <= 5 * 11
    assert len(log) <= 100
    assert any("suppressed" in json.loads(line) for line in lines)


def test_set_routes_keeps_counts_of_remaining_routes_and_drops_the_others() -> None:
    counters = CandidateCounters()
    counters.set_routes(["default", "old"])
    counters.cell("default", "allowed", "origin_not_allowed")[0] += 4
    counters.cell("old", "allowed", "allowed")[0] += 1
    counters.set_routes(["default", "new"])
    assert counters.cells[("default", "allowed", "origin_not_allowed")] == [4]
    assert not any(route == "old" for route, _, _ in counters.cells)
    assert counters.cells[("new", "allowed", "disabled")] == [0]
    assert counters.cells[("new", "origin_not_allowed", "allowed")] == [0]  # both directions exist from the start
    assert ("new", "disabled", "allowed") not in counters.cells  # live never decides a route it disables


def scrape(collector: CandidateCollector) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    registry = CollectorRegistry()
    registry.register(collector)
    return metric_samples(registry)


def test_metric_names_and_labels() -> None:
    counters = CandidateCounters()
    counters.set_routes(["default", "admin"])
    counters.cell("admin", "allowed", "method_not_allowed")[0] += 3
    counters.reloads["failure"] += 1
    s = scrape(CandidateCollector(counters, lambda: "abc123def456"))
    decisions = s["cors_candidate_decisions_total"]
    assert decisions[(("candidate", "method_not_allowed"), ("live", "allowed"), ("route", "admin"))] == 3
    assert len(decisions) == 2 * PRECREATED
    assert s["cors_candidate_info"] == {(("version", "abc123def456"),): 1}
    assert s["cors_candidate_reloads_total"][(("result", "failure"),)] == 1
    assert scrape(CandidateCollector(counters, lambda: None)) == {}


def test_candidate_is_compiled_like_the_live_policy_with_the_same_flags_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("CORS_")]:
        monkeypatch.delenv(key)
    same = load_candidate(write_policy(tmp_path, LIVE, "same.yaml"), {})
    assert same.version == make_policy(**LIVE).version  # a candidate equal to the live policy has its version
    path = write_policy(tmp_path, CANDIDATE, "candidate.yaml")
    monkeypatch.setenv("CORS_MAX_AGE", "600")
    policy = load_candidate(path, {"policy_file": write_policy(tmp_path, LIVE, "live.yaml"), "environment": "staging"})
    assert policy.environment == "staging" and policy.default.max_age == 600
    assert [r.name for r in policy.routes] == ["admin", "reports", "legacy"]  # as configured


@pytest.mark.parametrize(
    ("content", "settings_named"),
    [
        (" \n", ["policy_file"]),
        ("allow_origins: [https://a.example, 'ftp//x']\nallow_methods: ['B AD']\nmax_age: -1\n",
         ["allow_origins[1]", "allow_methods[0]", "max_age"]),
        ("allow_orgins: [https://a.example]\n", ["allow_orgins"]),
        ("candidate_policy_file: x.yaml\n", ["policy_file"]),
    ],
    ids=["empty", "every-error", "unknown-key", "nested-candidate"],
)  # fmt: skip
def test_an_invalid_candidate_reports_every_error_with_its_setting(
    tmp_path: Path, content: str, settings_named: list[str]
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_candidate(write_policy(tmp_path, content, "candidate.yaml"), {})
    assert [e.setting for e in raised.value.errors] == settings_named, raised.value.errors


PATHS = ["/", "/api", "/admin", "/admin/users", "/admin/reports", "/admin/reports/1", "/admin/reportsX", "/legacy/a"]
ORIGINS = ["https://app.example.com", "https://APP.example.com:443", "https://old.example.com",
           "https://reports.example.com", "https://evil.example", "null", "app.example.com"]  # fmt: skip
METHODS = ["GET", "PUT", "DELETE", "PURGE", "B@D"]
REQUEST_HEADERS = [None, "content-type", "x-trace", "Content-Type, X-Trace", "authorization", "bad header"]
requests = st.tuples(st.sampled_from(PATHS), st.sampled_from(ORIGINS), st.sampled_from(METHODS),
                     st.sampled_from(REQUEST_HEADERS), st.booleans())  # fmt: skip
candidate_routes = st.lists(
    st.sampled_from([{"name": "admin", "path_prefix": "/admin", "allow_methods": ["GET"]},
                     {"name": "reports", "path_prefix": "/admin/reports", "allow_origins": ["https://reports.example.com"]},
                     {"name": "legacy", "path_prefix": "/legacy", "enabled": False},
                     {"name": "root", "path_prefix": "/", "allow_headers": ["x-trace"]}]),
    unique_by=lambda r: r["name"],
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(candidate_routes, st.lists(requests, min_size=1, max_size=40))
def test_runtime_with_a_candidate_answers_as_without_and_counts_what_each_policy_decides(
    routes: list[dict[str, Any]], sent: list[tuple[str, str, str, str | None, bool]]
) -> None:
    from cors_handler.serve.pipeline import Runtime
    from cors_handler.serve.shadow import DISABLED, CandidateSlot, decision_label

    live, candidate = make_policy(**LIVE), make_policy(**{**CANDIDATE, "routes": routes})
    slot = CandidateSlot("candidate.yaml", candidate)
    plain, shadowed = Runtime(live), Runtime(live, candidate=slot)
    expected: dict[tuple[str, str, str], int] = {}
    for path, origin, method, request_headers, pna in sent:
        headers = [(b"origin", origin.encode()), (b"access-control-request-method", method.encode())]
        if request_headers is not None:
            headers.append((b"access-control-request-headers", request_headers.encode()))
        if pna:
            headers.append((b"access-control-request-private-network", b"true"))
        want, got = plain.answer(path, headers, None)[1], shadowed.answer(path, headers, None)[1]
        assert (got.status, got.headers, got.body) == (want.status, want.headers, want.body)
        again = shadowed.answer(path, headers, None)[1]  # a repeat: answered from the cache, counted again
        assert (again.status, again.headers, again.body) == (want.status, want.headers, want.body)
        times = 2
        live_route, candidate_route = live.route_for(path), candidate.route_for(path)
        if not live_route.enabled:
            continue
        live_label = decision_label(decide(live_route, origin, method, request_headers or "", pna))
        candidate_label = (decision_label(decide(candidate_route, origin, method, request_headers or "", pna))
                           if candidate_route.enabled else DISABLED)  # fmt: skip
        key = (live_route.name, live_label, candidate_label)
        expected[key] = expected.get(key, 0) + times
    counted = {key: cell[0] for key, cell in slot.counters.cells.items() if cell[0]}
    assert counted == expected
