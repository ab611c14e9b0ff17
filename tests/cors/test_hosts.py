"""Hosts: the Host header read, host patterns parsed, and route selection by host and path.

Selection is checked against an independent statement of the contract's rule
(``naive_route``: a scan over every route and host entry, no indexes), on
random policies, hosts and paths.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cors_handler.cors.hosts import HostPattern, parse_host_pattern, pattern_within, request_host, suffixes
from cors_handler.cors.model import RoutePolicy
from tests.conftest import make_policy


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(b"api.acme.io", "api.acme.io", id="plain"),
        pytest.param(b"API.Acme.IO:8443", "api.acme.io", id="case-and-port"),
        pytest.param(b"api.acme.io.", "api.acme.io", id="trailing-dot"),
        pytest.param(b"[::1]:8080", "[::1]", id="ipv6-with-port"),
        pytest.param(b"10.0.0.1:80", "10.0.0.1", id="ipv4-with-port"),
        pytest.param(b"", None, id="empty"),
        pytest.param(b"api.acme.io:", None, id="empty-port"),
        pytest.param(b"api.acme.io:x", None, id="port-not-digits"),
        pytest.param(b"api..acme.io", None, id="empty-label"),
        pytest.param(b"api.acme.io ", None, id="trailing-space"),
        pytest.param(b"a b", None, id="space"),
        pytest.param(b"user@api.acme.io", None, id="userinfo"),
        pytest.param(b"api.acme.io/x", None, id="path"),
        pytest.param(b"[::1", None, id="unclosed-bracket"),
        pytest.param(b"\xe4pi.acme.io", None, id="not-ascii"),
        pytest.param(b"-api.acme.io", None, id="leading-hyphen"),
        pytest.param(b"a" * 300, None, id="too-long"),
    ],
)
def test_request_host(raw: bytes, expected: str | None) -> None:
    assert request_host(raw) == expected


@given(st.binary(max_size=80))
def test_request_host_is_none_or_a_host_a_pattern_can_name(raw: bytes) -> None:
    host = request_host(raw)
    if host is not None:
        assert host == host.lower() and raw.lower().startswith(host.encode())
        if not host.startswith("["):
            assert parse_host_pattern(host) == HostPattern(host, host, None)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        pytest.param("api.acme.io", True, id="exact"),
        pytest.param("*.acme.io", True, id="wildcard"),
        pytest.param("API.acme.io", True, id="upper-case-normalized"),
        pytest.param("*.io", False, id="wildcard-over-a-tld"),
        pytest.param("*.*.acme.io", False, id="two-stars"),
        pytest.param("a*.acme.io", False, id="star-inside-a-label"),
        pytest.param("*.10.0.0", False, id="wildcard-over-an-ip"),
        pytest.param("https://api.acme.io", False, id="scheme"),
        pytest.param("api.acme.io:443", False, id="port"),
        pytest.param("", False, id="empty"),
    ],
)
def test_parse_host_pattern(text: str, ok: bool) -> None:
    assert isinstance(parse_host_pattern(text), HostPattern) == ok, parse_host_pattern(text)


def pattern(text: str) -> HostPattern:
    parsed = parse_host_pattern(text)
    assert isinstance(parsed, HostPattern)
    return parsed


@pytest.mark.parametrize(
    ("text", "owned", "within"),
    [
        pytest.param("api.acme.io", ["api.acme.io"], True, id="exact-in-exact"),
        pytest.param("api.acme.io", ["*.acme.io"], True, id="exact-under-wildcard"),
        pytest.param("acme.io", ["*.acme.io"], False, id="apex-not-under-wildcard"),
        pytest.param("*.eu.acme.io", ["*.acme.io"], True, id="narrower-wildcard"),
        pytest.param("*.acme.io", ["*.eu.acme.io"], False, id="broader-wildcard"),
        pytest.param("*.acme.io", ["api.acme.io"], False, id="wildcard-over-exact"),
        pytest.param("evilacme.io", ["*.acme.io"], False, id="dot-boundary"),
    ],
)
def test_pattern_within(text: str, owned: list[str], within: bool) -> None:
    assert pattern_within(pattern(text), tuple(map(pattern, owned))) == within


def test_suffixes_are_bounded_by_the_policy_not_the_request() -> None:
    assert suffixes("a.b.acme.io", 5) == ["b.acme.io", "acme.io", "io"]
    assert suffixes("a.b.acme.io", 2) == ["acme.io", "io"]
    assert len(suffixes("x." * 2000 + "acme.io", 3)) == 3
    assert suffixes("10.0.0.1", 4) == [] and suffixes("[::1]", 4) == []


# --- selection: the table against an independent scan -------------------------------------------------------------

HOSTS = ["api.acme.io", "*.acme.io", "*.eu.acme.io", "x.eu.acme.io", "10.0.0.1"]
REQUEST_HOSTS = [None, "api.acme.io", "x.eu.acme.io", "y.eu.acme.io", "eu.acme.io", "acme.io", "evilacme.io",
                 "10.0.0.1", "a.b.c.acme.io"]  # fmt: skip
PATHS = ["/", "/a", "/a/b", "/a/b/c", "/ab", "/a/", "//a", "/b", "a", ""]
PREFIXES = ["/", "/a", "/a/b", "/ab", "/b"]


def covers(prefix: str, path: str) -> bool:
    """A prefix covers a path on a segment boundary: /api/v2 covers /api/v2 and /api/v2/x, not /api/v20."""
    return path == prefix or path.startswith(prefix if prefix.endswith("/") else prefix + "/")


def wildcard_matches(entry: str, host: str) -> bool:
    return entry.startswith("*.") and host.endswith(entry[1:]) and not host.rpartition(".")[2].isdigit()


def naive_route(routes: list[RoutePolicy], default: RoutePolicy, path: str, host: str | None) -> RoutePolicy:
    """The contract's rule, scanned: exact host, wildcards (longer first), no host; exact path, longest prefix."""

    def best(candidates: list[RoutePolicy]) -> RoutePolicy | None:
        exact = [r for r in candidates if r.exact_path and r.path_prefix == path]
        if exact:
            return exact[0]
        covering = [r for r in candidates if not r.exact_path and covers(r.path_prefix, path)]
        return max(covering, key=lambda r: len(r.path_prefix), default=None)

    groups: list[list[RoutePolicy]] = []
    if host is not None:
        groups.append([r for r in routes if host in r.hosts])
        wild = sorted({h for r in routes for h in r.hosts if wildcard_matches(h, host)}, key=len, reverse=True)
        groups.extend([r for r in routes if w in r.hosts] for w in wild)
    groups.append([r for r in routes if not r.hosts])
    for group in groups:
        found = best(group)
        if found is not None:
            return found
    return default


route_specs = st.lists(
    st.tuples(st.lists(st.sampled_from(HOSTS), max_size=2, unique=True), st.sampled_from(PREFIXES), st.booleans()),
    max_size=8,
    unique_by=lambda spec: (spec[1], spec[2]),  # one route per (path, exactness): no conflicts to resolve
)


@settings(max_examples=300, deadline=None)
@given(route_specs, st.lists(st.tuples(st.sampled_from(PATHS), st.sampled_from(REQUEST_HOSTS)), min_size=1))
def test_route_for_agrees_with_a_scan_of_every_route(
    specs: list[tuple[list[str], str, bool]], requests: list[tuple[str, str | None]]
) -> None:
    routes: list[dict[str, Any]] = []
    for i, (hosts, prefix, exact) in enumerate(specs):
        route: dict[str, Any] = {"name": f"r{i}", "path_prefix": prefix, "path_exact": exact}
        if hosts:
            route["hosts"] = hosts
        routes.append(route)
    policy = make_policy(routes=routes)
    compiled = list(policy.routes)
    for path, host in requests:
        assert policy.route_for(path, host) is naive_route(compiled, policy.default, path, host), (path, host)


def test_a_deep_path_costs_what_the_policy_allows() -> None:
    policy = make_policy(routes=[{"name": "a", "path_prefix": "/a"}])
    assert policy.route_for("/a" + "/x" * 4000).name == "a"
    assert policy.route_for("/" * 4000).name == "default"


def test_the_host_memo_is_bounded_under_random_hosts() -> None:
    from cors_handler.cors.limits import HOST_MEMO_SIZE

    policy = make_policy(routes=[{"name": "w", "hosts": ["*.acme.io"], "path_prefix": "/"}])
    table = policy.table
    for i in range(3 * HOST_MEMO_SIZE):
        assert table.route_for("/", f"r{i}.acme.io").name == "w"
        assert table.route_for("/", f"r{i}.other.io").name == "default"
        assert len(table._by_host) <= HOST_MEMO_SIZE
    assert not make_policy().table.hosted and table.hosted
