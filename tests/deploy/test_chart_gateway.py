"""gatewayAPI.enabled: the chart's preflight HTTPRoutes, valid against the Gateway API CRD schemas, and winning.

The Gateway API has no router priority, so the HTTPRoutes win by being more specific than the API's own
routes: the same hostnames and paths as the CORS rules they serve, plus a method match (OPTIONS) and a header
match (Access-Control-Request-Method). Whether they win is decided here by ``gateway.winner``, an independent
statement of the precedence rules of httproute_types.go, over the rendered routes and typical API routes,
generated. What was not proven without a live Gateway is said in docs/deployment.md#gateway-api.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from .chart import CHART, NAMESPACE, RELEASE, environment_values, helm, objects, one, render
from .gateway import Request, winner
from .tools import node_validator

pytestmark = pytest.mark.e2e  # renders with the Helm engine and runs node

EXAMPLES = CHART / "examples"
GATEWAY = yaml.safe_load((EXAMPLES / "gateway-api.yaml").read_text())
TEAMS = yaml.safe_load((EXAMPLES / "teams.yaml").read_text())
# every values file a release starts from: the environments and the worked example's
BASES = [
    *(pytest.param(CHART / f"values-{env}.yaml", id=env) for env in ("development", "staging", "production")),
    *(pytest.param(p, id=f"pvpipe-{p.stem}") for p in sorted((EXAMPLES / "pvpipe").glob("values-*.yaml"))),
]
ROUTES = {"policy": {"routes": [
    {"name": "v2", "path_prefix": "/api/v2", "allow_methods": ["GET", "PURGE"]},
    {"name": "pay", "path_prefix": "/pay/", "hosts": ["pay.example.com"]},
]}}  # fmt: skip


def values_from(base: Path, *overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` as a release's -f file (the worked example over its environment's file), then ``overrides``."""
    environment = base.stem.removeprefix("values-")
    extra = [yaml.safe_load(base.read_text())] if base.parent != CHART else []
    return environment_values(environment, *extra, *overrides)


def http_routes(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == "HTTPRoute"]


def validate(custom: list[dict[str, Any]]) -> list[dict[str, Any]]:
    done = subprocess.run(node_validator(), input=json.dumps(custom), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    results: list[dict[str, Any]] = json.loads(done.stdout)
    assert len(results) == len(custom)
    return results


@pytest.mark.parametrize("header_match", ["Exact", "RegularExpression"])
@pytest.mark.parametrize("base", BASES)
def test_every_values_file_with_the_gateway_api_renders_valid_http_routes(base: Path, header_match: str) -> None:
    override = {"gatewayAPI": {"headerMatch": header_match}}
    docs = objects(values_from(base, GATEWAY, TEAMS, ROUTES, override))
    routes = http_routes(docs)
    assert routes and not [d for d in docs if d["apiVersion"].startswith("traefik.io/")]
    assert [r for r in validate(routes) if r["error"] is not None] == []
    for route in routes:  # what the CRD's CEL rules say and the npm schema cannot check
        rules = route["spec"]["rules"]
        assert all(gateway_accepts_path(m["path"]["value"]) for rule in rules for m in rule["matches"])
        assert sum(len(rule["matches"]) for rule in rules) <= 128, route["metadata"]["name"]
        assert len({json.dumps(m, sort_keys=True) for rule in rules for m in rule["matches"]}) == sum(
            len(rule["matches"]) for rule in rules
        )


def gateway_accepts_path(value: str) -> bool:
    """HTTPPathMatch's CEL rules for Exact and PathPrefix (httproute_types.go), which the npm schema does not run."""
    forbidden = ("//", "/./", "/../", "%2f", "%2F", "#")
    return (value.startswith("/") and not any(f in value for f in forbidden) and not value.endswith(("/..", "/."))
            and re.fullmatch(r"(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+", value) is not None)  # fmt: skip


@pytest.mark.parametrize(
    "path",
    ["/a//b", "/a/./b", "/a/../b", "/a%2Fb", "/a%2fb", "/a/..", "/a/.", "/caf\u00e9"],
    ids=[
        "double-slash",
        "dot-segment",
        "dot-dot-segment",
        "encoded-slash",
        "encoded-slash-lower-case",
        "trailing-dot-dot",
        "trailing-dot",
        "non-ascii",
    ],
)
def test_a_path_an_http_route_cannot_match_is_refused_naming_the_route(path: str) -> None:
    assert not gateway_accepts_path(path)
    route = {"policy": {"routes": [{"name": "odd", "path_prefix": path}]}}
    with pytest.raises(helm.HelmRenderError, match=r"policy.routes\[0\].path_prefix"):
        render(environment_values("production", GATEWAY, route))
    render(environment_values("production", route))  # the Traefik rule takes it as it is


def test_the_crd_validator_catches_a_broken_http_route() -> None:
    route = http_routes(objects(environment_values("production", GATEWAY)))[0]
    route["spec"]["rules"][0]["matches"][0]["headers"][0]["type"] = "Prefix"
    route["spec"]["hostnames"] = ["API.example.com"]
    [result] = validate([route])
    assert "type must be equal to one of the allowed values" in result["error"]
    assert "hostnames/0 must match pattern" in result["error"]


def covered(routes: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """(hostname, path type, path, requested method) for every match of the rendered routes."""
    out = set()
    for route in routes:
        for rule in route["spec"]["rules"]:
            assert rule["backendRefs"] == [{"name": RELEASE, "port": 8080}]
            for match in rule["matches"]:
                assert match["method"] == "OPTIONS"
                [header] = match["headers"]
                assert header["name"] == "Access-Control-Request-Method"
                for host in route["spec"].get("hostnames", [""]):
                    out.add((host, match["path"]["type"], match["path"]["value"], header["value"]))
    return out


def test_many_hosts_and_routes_are_split_within_the_api_limits_and_none_is_lost() -> None:
    hosts = [f"h{i}.example.com" for i in range(40)]
    routes = [{"name": f"r{i}", "path_prefix": f"/r{i}"} for i in range(30)]
    docs = objects(
        environment_values("production", GATEWAY, {"traefik": {"hosts": hosts}, "policy": {"routes": routes}})
    )
    rendered = http_routes(docs)
    for route in rendered:
        spec = route["spec"]
        assert len(spec["hostnames"]) <= 16 and len(spec["rules"]) <= 16
        assert all(len(rule["matches"]) <= 64 for rule in spec["rules"])
        assert sum(len(rule["matches"]) for rule in spec["rules"]) <= 128
    assert len({r["metadata"]["name"] for r in rendered}) == len(rendered)
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    paths = ["/", *(f"/r{i}" for i in range(30)), *(f"/r{i}/" for i in range(30))]  # each also with its slash
    expected = {(h, "PathPrefix", p, m) for h in ["api.example.com", *hosts] for p in paths for m in methods}
    assert covered(rendered) == expected
    assert [r for r in validate(rendered) if r["error"] is not None] == []


def test_the_network_policy_admits_the_gateways_pods_instead_of_traefiks() -> None:
    docs = objects(environment_values("production", GATEWAY))
    [rule] = one(docs, "NetworkPolicy", RELEASE)["spec"]["ingress"]
    proxy = rule["from"][0]
    assert proxy["podSelector"] == GATEWAY["networkPolicy"]["gateway"]["podSelector"]
    assert proxy["namespaceSelector"] == GATEWAY["networkPolicy"]["gateway"]["namespaceSelector"]


def test_parent_refs_are_required_and_ip_hosts_refused() -> None:
    with pytest.raises(helm.HelmValuesError, match="parentRefs"):
        objects(environment_values("production", {"gatewayAPI": {"enabled": True}}))
    with pytest.raises(helm.HelmRenderError, match="IP address"):
        render(environment_values("development", GATEWAY, {"traefik": {"host": "127.0.0.1"}}))


# ---------------------------------------------------------------- precedence, as httproute_types.go states it

APP = "https://app.example.com"


MODES = [  # (gatewayAPI.headerMatch, gatewayAPI.hostnames)
    pytest.param(("Exact", True), id="exact-methods-named-hosts"),
    pytest.param(("RegularExpression", True), id="any-method-named-hosts"),
    pytest.param(("Exact", False), id="exact-methods-listener-hosts"),
]


@pytest.fixture(scope="module", params=MODES)
def rendered(request: pytest.FixtureRequest) -> tuple[bool, list[dict[str, Any]]]:
    """(whether the routes name their hostnames, the chart's HTTPRoutes) for the teams' values."""
    header_match, hostnames = request.param
    mode = {"gatewayAPI": {"headerMatch": header_match, "hostnames": hostnames}}
    return hostnames, http_routes(objects(environment_values("production", GATEWAY, TEAMS, ROUTES, mode)))


def ours(name: str | None) -> bool:
    return name is not None and name.startswith(f"{NAMESPACE}/{RELEASE}-preflight")


def http_route(
    name: str, rules: list[dict[str, Any]], hostnames: list[str] | None = None, age: int = 0
) -> dict[str, Any]:
    """A team's HTTPRoute; ``age`` in days before ours (older routes win ties)."""
    metadata = {"name": name, "namespace": "team", "creationTimestamp": f"2020-01-{28 - age:02d}T00:00:00Z"}
    spec: dict[str, Any] = {"parentRefs": GATEWAY["gatewayAPI"]["parentRefs"], "rules": rules}
    if hostnames is not None:
        spec["hostnames"] = hostnames
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": metadata, "spec": spec}


def preflight(host: str, path: str, method: str = "PUT") -> Request:
    return Request(host, path, "OPTIONS", {"Origin": APP, "Access-Control-Request-Method": method})


def stamped(rendered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ours, created last: every tie the age decides goes to the team routes."""
    return [{**r, "metadata": {**r["metadata"], "creationTimestamp": "2030-01-01T00:00:00Z"}} for r in rendered]


# Request hosts: exact ones, and names under each wildcard (one and two labels deep).
HOSTS = ["api.example.com", "a.api.example.com", "b.c.api.example.com", "orders.example.com", "billing.example.com",
         "x.billing.example.com", "pay.example.com"]  # fmt: skip
PATHS = ["/", "/items", "/api", "/api/v2", "/api/v2/items", "/pay", "/pay/1", "/orders/7"]
# Path matches of typical API routes that are no more specific than the CORS rule covering the request: the
# declared paths themselves (ties broken by our method and header matches), shorter ones, unrelated ones.
TEAM_PATHS = [
    {"type": "PathPrefix", "value": "/"},
    {"type": "PathPrefix", "value": "/api/v2"},
    {"type": "PathPrefix", "value": "/api/v2/"},
    {"type": "PathPrefix", "value": "/unrelated"},
    {"type": "Exact", "value": "/unrelated/x"},
]


PAY_PATHS = [{"type": "PathPrefix", "value": "/pay"}, {"type": "PathPrefix", "value": "/pay/"}]  # on its host


@st.composite
def team_matches(draw: st.DrawFn, on_pay: bool) -> dict[str, Any]:
    match: dict[str, Any] = {"path": draw(st.sampled_from(TEAM_PATHS + (PAY_PATHS if on_pay else [])))}
    method = draw(st.sampled_from([None, "GET", "POST", "PUT", "DELETE", "OPTIONS"]))
    if method is not None:
        match["method"] = method
    names = draw(st.lists(st.sampled_from(["x-version", "x-tenant", "authorization"]), max_size=2, unique=True))
    if method != "OPTIONS" or not names:  # OPTIONS with a header match would tie ours: see the limits below
        match["headers"] = [{"type": "Exact", "name": n, "value": "v"} for n in names]
    if draw(st.booleans()):
        match["queryParams"] = [{"type": "Exact", "name": "page", "value": "1"}]
    return {k: v for k, v in match.items() if v != []}


# The hostnames of typical API routes: the ones the chart's routes name too (gatewayAPI.hostnames true), or none,
# the listener's (false). The guarantee holds for these: docs/deployment.md says why it needs them.
NAMED = [["api.example.com"], ["*.api.example.com"], ["orders.example.com"],
         ["billing.example.com", "*.billing.example.com"], ["pay.example.com"]]  # fmt: skip


@st.composite
def team_routes(draw: st.DrawFn, named: bool) -> list[dict[str, Any]]:
    routes = []
    for i in range(draw(st.integers(1, 4))):
        hostnames = draw(st.sampled_from(NAMED)) if named else None
        # the pay route declares /pay on pay.example.com only (or on every host, without hostnames)
        on_pay = hostnames in (None, ["pay.example.com"])
        rules = [{"matches": draw(st.lists(team_matches(on_pay), min_size=1, max_size=3))}
                 for _ in range(draw(st.integers(1, 3)))]  # fmt: skip
        routes.append(http_route(f"api-{i}", rules, hostnames, age=draw(st.integers(0, 20))))
    return routes


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_the_preflight_rules_win_every_preflight_on_a_declared_path(
    rendered: tuple[bool, list[dict[str, Any]]], data: st.DataObject
) -> None:
    named, chart = rendered
    routes = [*data.draw(team_routes(named)), *stamped(chart)]
    for host in HOSTS:
        for path in PATHS:
            for method in ("GET", "PUT", "DELETE", "OPTIONS", "PATCH"):
                found = winner(routes, preflight(host, path, method))
                assert found is not None and ours(found.route), (host, path, method, found)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_requests_that_are_not_preflights_go_where_they_went_before(
    rendered: tuple[bool, list[dict[str, Any]]], data: st.DataObject
) -> None:
    """Adding the chart's routes changes no answer but the preflights': no request is taken (or left without a
    route: a more specific hostname with no matching rule is a 404 where a Gateway keeps one virtual host each)."""
    named, chart = rendered
    teams = data.draw(team_routes(named))
    for host in HOSTS:
        for path in PATHS:
            for request in (Request(host, path, "GET"), Request(host, path, "OPTIONS", {"Origin": APP}),
                            Request(host, path, "PUT", {"Access-Control-Request-Method": "PUT"})):  # fmt: skip
                assert winner([*teams, *stamped(chart)], request) == winner(teams, request), request


def test_hostnames_the_api_routes_do_not_name_leave_their_requests_without_a_route() -> None:
    """Why gatewayAPI.hostnames must follow the API's routes: with one virtual host per hostname, the chart's
    api.example.com takes every request for that host from an API route that names none, and only preflights
    match its rules (the rest would be 404s); without hostnames it takes only the preflights."""
    api = http_route("api", [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}])
    get = Request("api.example.com", "/items", "GET")
    for hostnames, expected in ((True, None), (False, "team/api")):
        chart = http_routes(
            objects(environment_values("production", GATEWAY, {"gatewayAPI": {"hostnames": hostnames}}))
        )
        found = winner([api, *stamped(chart)], get)
        assert (found.route if found else None) == expected, hostnames
        assert ours(winner([api, *stamped(chart)], preflight("api.example.com", "/items")).route)  # type: ignore[union-attr]


def test_a_method_the_exact_matches_do_not_name_is_left_to_the_api_routes() -> None:
    """With Exact matches, a preflight for a method neither gatewayAPI.methods nor the policy names goes to the
    API's route; with the RegularExpression match every method reaches cors-handler (where the Gateway supports it)."""
    catch_all = http_route("api", [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}], ["api.example.com"])
    for header_match, reaches_us in (("Exact", False), ("RegularExpression", True)):
        values = environment_values("production", GATEWAY, {"gatewayAPI": {"headerMatch": header_match}})
        routes = [catch_all, *stamped(http_routes(objects(values)))]
        assert ours(winner(routes, preflight("api.example.com", "/x", "PUT")).route)  # type: ignore[union-attr]
        assert ours(winner(routes, preflight("api.example.com", "/x", "PROPFIND")).route) == reaches_us  # type: ignore[union-attr]


LIMITS = [
    pytest.param(http_route("api", [{"matches": [{"path": {"type": "PathPrefix", "value": "/api/v3"}}]}],
                            ["api.example.com"]),
                 "/api/v3/items", "/api/v3", False, id="longer-prefix"),
    pytest.param(http_route("api", [{"matches": [{"path": {"type": "Exact", "value": "/items"}}]}],
                            ["api.example.com"]),
                 "/items", "/items", True, id="exact-path"),
    pytest.param(http_route("api", [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}],
                            ["a.api.example.com"]), "/", None, False, id="more-specific-hostname"),
]  # fmt: skip


@pytest.mark.parametrize(("team", "path", "declare", "exact"), LIMITS)
def test_what_the_preflight_rules_cannot_beat_until_the_policy_declares_it(
    team: dict[str, Any], path: str, declare: str | None, exact: bool
) -> None:
    """The limits docs/deployment.md states: an API route with a longer prefix, an Exact path or a more specific
    hostname takes the preflights, until the policy declares that path (a route inheriting the top level) or
    names that host exactly."""
    host = "a.api.example.com" if declare is None else "api.example.com"
    base = {"traefik": {"host": "", "hosts": ["*.api.example.com"]}} if declare is None else {}
    before = [team, *stamped(http_routes(objects(environment_values("production", GATEWAY, base))))]
    assert not ours(winner(before, preflight(host, path)).route)  # type: ignore[union-attr]
    if declare is None:
        fix: dict[str, Any] = {"traefik": {"host": "", "hosts": ["*.api.example.com", host]}}
    else:
        fix = {"policy": {"routes": [{"name": "mirror", "path_prefix": declare, "path_exact": exact}]}}
    after = [team, *stamped(http_routes(objects(environment_values("production", GATEWAY, base, fix))))]
    assert ours(winner(after, preflight(host, path)).route)  # type: ignore[union-attr]


def test_an_api_route_matching_options_and_a_header_ties_and_the_older_route_wins() -> None:
    """Same path, OPTIONS and one header match: a tie on every match criterion, so the older route wins."""
    rule = {"matches": [{"path": {"type": "PathPrefix", "value": "/"}, "method": "OPTIONS",
                         "headers": [{"type": "Exact", "name": "Origin", "value": APP}]}]}  # fmt: skip
    rendered = http_routes(objects(environment_values("production", GATEWAY)))
    assert not ours(
        winner(
            [http_route("api", [rule], ["api.example.com"], age=1), *stamped(rendered)],
            preflight("api.example.com", "/"),
        ).route
    )  # type: ignore[union-attr]
