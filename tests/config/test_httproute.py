"""HTTPRoute CORS filters translated into routes (``config.httproute``): what the specification means, the API's
validation, and the rules refused where our checks are stricter."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cors_handler.config.errors import Findings
from cors_handler.config.httproute import (
    CORS_KEYS,
    FIELD_NAMES,
    MAX_AGE_DEFAULT,
    METHODS,
    GatewayRoute,
    gateway_routes,
    is_gateway_document,
)
from cors_handler.config.settings import RouteSettings
from cors_handler.cors.origins import compile_regex

from ..conftest import make_compiled
from ..e2e.gateway.conformance_cases import REFUSED_RULE_SETTING, ROUTES_FILE

CORS_ROUTE_KEYS = {"allow_origins", "allow_origin_regex", "allow_methods", "allow_headers", "expose_headers",
                   "allow_credentials", "max_age", "allow_private_network", "enabled"}  # fmt: skip


def httproute(cors: Any, *, matches: Any = None, hostnames: Any = None, name: str = "orders",
              namespace: str | None = "team-a", filters: list[Any] | None = None) -> dict[str, Any]:  # fmt: skip
    rule: dict[str, Any] = {"filters": filters if filters is not None else [{"type": "CORS", "cors": cors}]}
    if matches is not None:
        rule["matches"] = matches
    metadata = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
    spec: dict[str, Any] = {"parentRefs": [{"name": "gw"}], "rules": [rule]}
    if hostnames is not None:
        spec["hostnames"] = hostnames
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": metadata, "spec": spec}


def translate(*documents: Any) -> tuple[list[GatewayRoute], Findings]:
    out = Findings()
    return gateway_routes(list(documents), "team-a.yaml", out), out


def codes(out: Findings) -> dict[str, str]:
    return {f.setting: f.code for f in out}


def errors(out: Findings) -> dict[str, str]:
    return {f.setting: f.code for f in out if f.is_error}


WHERE = "HTTPRoute team-a/orders rules[0].filters[0].cors"


def test_conformance_routes_translate_as_the_specification_means_them() -> None:
    routes, out = translate(*yaml.safe_load_all(ROUTES_FILE.read_text()))
    by_name = {r.route["name"]: r.route for r in routes}
    first = by_name["gateway-conformance-infra/cors-multiple-origins-methods-headers/rules[0]"]
    assert first == {
        "name": "gateway-conformance-infra/cors-multiple-origins-methods-headers/rules[0]",
        "path_prefix": "/cors-1", "path_exact": False,
        "allow_origins": ["https://www.foo.com", "https://*.bar.com"], "allow_origin_regex": [],
        "allow_methods": ["GET", "OPTIONS"], "allow_headers": ["x-header-1", "x-header-2"],
        "expose_headers": ["x-header-3", "x-header-4"], "allow_credentials": True, "max_age": 3600,
        "allow_private_network": False, "enabled": True,
    }  # fmt: skip
    wildcard_methods = by_name["gateway-conformance-infra/cors-wildcard-methods/rules[0]"]
    assert (wildcard_methods["allow_methods"], wildcard_methods["max_age"]) == (["*"], MAX_AGE_DEFAULT)
    assert wildcard_methods["allow_credentials"] is False
    refused = by_name["gateway-conformance-infra/cors-wildcard-methods-headers/rules[0]"]
    assert refused["refused"] is True and refused["allow_origins"] == refused["allow_origin_regex"] == []
    assert refused["path_prefix"] == "/cors-wildcard-methods-headers"
    assert "refused" not in by_name["gateway-conformance-infra/cors-wildcard-methods-headers/rules[1]"]
    hosts = by_name["team-a/cors-hostnames/rules[0]/matches[1]"]
    assert (hosts["hosts"], hosts["path_prefix"], hosts["path_exact"]) == (
        ["api.team-a.test", "*.shop.team-a.test"], "/cors-exact", True)  # fmt: skip
    assert errors(out) == {REFUSED_RULE_SETTING: "httproute_any_origin_with_credentials"}
    assert len(routes) == 8


def test_omitted_fields_mean_what_the_specification_says() -> None:
    [route], out = translate(httproute({"allowOrigins": ["https://a.example.com"]}))
    assert route.route == {
        "name": "team-a/orders/rules[0]", "path_prefix": "/", "path_exact": False,
        "allow_origins": ["https://a.example.com"], "allow_origin_regex": [], "allow_methods": [],
        "allow_headers": [], "expose_headers": [], "allow_credentials": False, "max_age": 5,
        "allow_private_network": False, "enabled": True,
    }  # fmt: skip
    assert route.where == WHERE
    assert list(out) == []


def test_no_origin_refuses_every_preflight_with_a_warning() -> None:
    [route], out = translate(httproute({"allowMethods": ["GET"]}))
    assert route.route["refused"] is True
    assert codes(out) == {f"{WHERE}.allowOrigins": "httproute_no_origin"} and not out.has_errors


@pytest.mark.parametrize(
    ("matches", "expected"),
    [
        pytest.param(None, [("team-a/orders/rules[0]", "/", False)], id="no-matches-is-prefix-root"),
        pytest.param([{"path": {"type": "Exact", "value": "/a/"}}], [("team-a/orders/rules[0]", "/a/", True)],
                     id="one-exact-match"),
        pytest.param([{"path": {"value": "/a"}}, {"path": {"type": "PathPrefix", "value": "/b"}}],
                     [("team-a/orders/rules[0]/matches[0]", "/a", False),
                      ("team-a/orders/rules[0]/matches[1]", "/b", False)], id="several-matches-named-by-index"),
        pytest.param([{"path": {"value": "/a"}}, {"path": {"value": "/a"}, "method": "PUT"}],
                     [("team-a/orders/rules[0]/matches[0]", "/a", False)], id="same-path-twice-is-one-route"),
        pytest.param([{}], [("team-a/orders/rules[0]", "/", False)], id="match-without-path-is-prefix-root"),
    ],
)  # fmt: skip
def test_one_route_per_path_match(matches: Any, expected: list[tuple[str, str, bool]]) -> None:
    routes, _ = translate(httproute({"allowOrigins": ["https://a.example.com"]}, matches=matches))
    assert [(r.route["name"], r.route["path_prefix"], r.route["path_exact"]) for r in routes] == expected


def test_matches_on_method_headers_and_query_are_ignored_with_a_warning_naming_them() -> None:
    matches = [{"path": {"value": "/a"}, "method": "OPTIONS", "headers": [{"name": "x", "value": "y"}],
                "queryParams": [{"name": "q", "value": "1"}]}]  # fmt: skip
    [route], out = translate(httproute({"allowOrigins": ["https://a.example.com"]}, matches=matches))
    [warning] = list(out)
    assert (warning.setting, warning.code) == ("HTTPRoute team-a/orders rules[0].matches[0].method",
                                               "httproute_match_ignored")  # fmt: skip
    assert "method, headers, queryParams" in warning.message
    assert route.route["path_prefix"] == "/a" and "refused" not in route.route


def test_regular_expression_path_is_skipped_with_an_error() -> None:
    matches = [{"path": {"type": "RegularExpression", "value": "/a.*"}}, {"path": {"value": "/b"}}]
    routes, out = translate(httproute({"allowOrigins": ["https://a.example.com"]}, matches=matches))
    assert [r.route["path_prefix"] for r in routes] == ["/b"]
    assert errors(out) == {"HTTPRoute team-a/orders rules[0].matches[0].path.type": "httproute_path_regex"}


@pytest.mark.parametrize(
    "value",
    [pytest.param(v, id=i) for i, v in [("relative", "a"), ("double-slash", "/a//b"), ("dot-segment", "/a/./b"),
                                       ("dot-dot-end", "/a/.."), ("encoded-slash", "/a%2fb"), ("fragment", "/a#b"),
                                       ("space", "/a b"), ("too-long", "/" + "a" * 1024), ("not-a-string", 7)]],
)  # fmt: skip
def test_invalid_paths_are_skipped_with_an_error(value: Any) -> None:
    cors = {"allowOrigins": ["https://a.example.com"]}
    routes, out = translate(httproute(cors, matches=[{"path": {"value": value}}]))
    assert routes == []
    assert errors(out) == {"HTTPRoute team-a/orders rules[0].matches[0].path.value": "httproute_invalid"}


def test_hostnames_scope_the_routes_lower_cased() -> None:
    [route], out = translate(httproute({"allowOrigins": ["https://a.example.com"]},
                                       hostnames=["API.Example.com", "*.shop.example.com"]))  # fmt: skip
    assert route.route["hosts"] == ["api.example.com", "*.shop.example.com"]
    assert codes(out) == {"HTTPRoute team-a/orders spec.hostnames[0]": "httproute_invalid"} and not out.has_errors


@pytest.mark.parametrize("hostnames", [None, []], ids=["absent", "empty"])
def test_no_hostnames_leaves_hosts_to_the_source(hostnames: Any) -> None:
    [route], _ = translate(httproute({"allowOrigins": ["https://a.example.com"]}, hostnames=hostnames))
    assert "hosts" not in route.route


@pytest.mark.parametrize(
    "hostnames",
    [pytest.param(["a.example.com", "a..b"], id="empty-label"), pytest.param(["*"], id="bare-star"),
     pytest.param(["a.*.com"], id="inner-star"), pytest.param([f"h{i}.example.com" for i in range(17)], id="17-hosts"),
     pytest.param("a.example.com", id="not-a-list")],
)  # fmt: skip
def test_an_invalid_hostname_refuses_every_route_of_the_httproute(hostnames: Any) -> None:
    [route], out = translate(httproute({"allowOrigins": ["https://a.example.com"]}, hostnames=hostnames))
    assert route.route["refused"] is True and "hosts" not in route.route
    assert all(s.startswith("HTTPRoute team-a/orders spec.hostnames") for s in errors(out)) and out.has_errors


@pytest.mark.parametrize(
    ("cors", "setting", "code"),
    [
        pytest.param({"allowOrigins": ["*"], "allowCredentials": True}, "allowOrigins[0]",
                     "httproute_any_origin_with_credentials", id="star-with-credentials"),
        pytest.param({"allowOrigins": ["https://a.example.com", "https://*"], "allowCredentials": True},
                     "allowOrigins[1]", "httproute_any_origin_with_credentials", id="any-https-host-with-credentials"),
        pytest.param({"allowOrigins": ["http://*:8080"], "allowCredentials": True}, "allowOrigins[0]",
                     "httproute_any_origin_with_credentials", id="any-host-with-port-and-credentials"),
        pytest.param({"allowOrigins": ["https://*.com"]}, "allowOrigins[0]", "httproute_origin_refused",
                     id="wildcard-over-public-suffix"),
        pytest.param({"allowOrigins": ["https://*.github.io"]}, "allowOrigins[0]", "httproute_origin_refused",
                     id="wildcard-over-private-suffix"),
        pytest.param({"allowOrigins": ["https://-a.example.com"]}, "allowOrigins[0]", "httproute_origin_refused",
                     id="label-starting-with-hyphen"),
    ],
)  # fmt: skip
def test_stricter_than_the_specification_refuses_the_rule(cors: dict[str, Any], setting: str, code: str) -> None:
    [route], out = translate(httproute(cors))
    assert route.route["refused"] is True
    assert route.route["allow_origins"] == route.route["allow_origin_regex"] == []
    assert errors(out) == {f"{WHERE}.{setting}": code}


def _invalid(field: str, value: Any, entry: int | None, id: str) -> Any:
    cors = {"allowOrigins": ["https://a.example.com"], field: value}
    return pytest.param(cors, field if entry is None else f"{field}[{entry}]", id=id)


@pytest.mark.parametrize(
    ("cors", "setting"),
    [
        _invalid("allowOrigins", [f"https://h{i}.example.com" for i in range(65)], None, "65-origins"),
        _invalid("allowOrigins", ["https://a.example.com/"], 0, "origin-with-path"),
        _invalid("allowOrigins", ["ftp://a.example.com"], 0, "origin-other-scheme"),
        _invalid("allowOrigins", ["HTTPS://a.example.com"], 0, "origin-upper-case-scheme"),
        _invalid("allowOrigins", ["null"], 0, "null-origin"),
        _invalid("allowOrigins", ["https://a.example.com:0"], 0, "origin-port-zero"),
        _invalid("allowOrigins", ["https://a.example.com:99999"], 0, "origin-port-too-high"),
        _invalid("allowOrigins", ["https://a.*.example.com"], 0, "origin-inner-wildcard"),
        _invalid("allowOrigins", ["https://[::1]"], 0, "origin-ipv6"),
        _invalid("allowOrigins", ["https://" + "a" * 250], 0, "origin-too-long"),
        _invalid("allowOrigins", ["https://a.example.com", "*"], 1, "star-origin-not-alone"),
        _invalid("allowOrigins", ["https://a.example.com", "https://a.example.com"], 1, "duplicate-origin"),
        _invalid("allowOrigins", "https://a.example.com", None, "origins-not-a-list"),
        _invalid("allowMethods", ["get"], 0, "lower-case-method"),
        _invalid("allowMethods", ["PURGE"], 0, "method-not-in-the-enum"),
        _invalid("allowMethods", ["GET", "*"], 1, "star-method-not-alone"),
        _invalid("allowMethods", ["GET", "GET"], 1, "duplicate-method"),
        _invalid("allowMethods", [*METHODS, "*"], None, "10-methods"),
        _invalid("allowHeaders", ["x a"], 0, "header-with-space"),
        _invalid("allowHeaders", [":method"], 0, "pseudo-header"),
        _invalid("allowHeaders", ["/invalid"], 0, "header-with-slash"),
        _invalid("allowHeaders", ["x" * 257], 0, "header-too-long"),
        _invalid("allowHeaders", ["*", "x-a"], 0, "star-header-not-alone"),
        _invalid("allowHeaders", [f"x-{i}" for i in range(65)], None, "65-headers"),
        _invalid("allowHeaders", [7], None, "header-not-a-string"),
        _invalid("exposeHeaders", ["x,y"], 0, "expose-two-names-in-one"),
        _invalid("exposeHeaders", ["x-a", "x-a"], 1, "duplicate-expose"),
        _invalid("exposeHeaders", [f"x-{i}" for i in range(65)], None, "65-expose-headers"),
        _invalid("maxAge", 0, None, "max-age-zero"),
        _invalid("maxAge", -1, None, "max-age-negative"),
        _invalid("maxAge", 2**31, None, "max-age-above-int32"),
        _invalid("maxAge", "60", None, "max-age-string"),
        _invalid("maxAge", True, None, "max-age-bool"),
        _invalid("allowCredentials", "true", None, "credentials-string"),
    ],
)  # fmt: skip
def test_what_the_api_refuses_is_a_finding_naming_the_field(cors: dict[str, Any], setting: str) -> None:
    [route], out = translate(httproute(cors))
    assert f"{WHERE}.{setting}" in errors(out), list(out)
    assert route.route["refused"] is True


@pytest.mark.parametrize(
    ("filters", "setting"),
    [
        pytest.param([{"type": "CORS"}], "rules[0].filters[0].cors", id="cors-missing"),
        pytest.param([{"type": "CORS", "cors": {"allowOrigins": ["https://a.example.com"]}},
                      {"type": "CORS", "cors": {}}], "rules[0].filters[1]", id="cors-filter-repeated"),
        pytest.param([{"type": "CORS", "cors": {"allowOrigins": ["https://a.example.com"]}},
                      {"type": "RequestHeaderModifier", "cors": {}}], "rules[0].filters[1].cors",
                     id="cors-on-another-filter-type"),
        pytest.param([{"type": "CORS", "cors": {"allowOrigins": ["https://a.example.com"]}}] * 17, "rules[0].filters",
                     id="17-filters"),
    ],
)  # fmt: skip
def test_invalid_filters_refuse_the_rule(filters: list[Any], setting: str) -> None:
    [route], out = translate(httproute(None, filters=filters))
    assert f"HTTPRoute team-a/orders {setting}" in errors(out)
    assert route.route["refused"] is True


def test_expose_star_with_credentials_is_left_out() -> None:
    cors = {"allowOrigins": ["https://a.example.com"], "exposeHeaders": ["*", "x-a"], "allowCredentials": True}
    [route], out = translate(httproute(cors))
    assert route.route["expose_headers"] == ["x-a"] and "refused" not in route.route
    assert codes(out) == {f"{WHERE}.exposeHeaders[0]": "httproute_expose_wildcard"}


@pytest.mark.parametrize(
    ("origin", "matching", "not_matching"),
    [
        pytest.param("https://*", ["https://a.example", "https://x.y.z", "https://[::1]", "https://10.0.0.1"],
                     ["http://a.example", "https://a.example:8443"], id="https-any-host"),
        pytest.param("https://*:443", ["https://a.example"], ["https://a.example:444"], id="default-port-written"),
        pytest.param("http://*:8080", ["http://a.example:8080"], ["http://a.example", "https://a.example:8080"],
                     id="http-any-host-on-a-port"),
    ],
)  # fmt: skip
def test_any_host_of_one_scheme_is_a_regex_over_the_normalized_origin(
    origin: str, matching: list[str], not_matching: list[str]
) -> None:
    [route], out = translate(httproute({"allowOrigins": ["https://a.example.com", origin]}))
    assert route.route["allow_origins"] == ["https://a.example.com"]
    [regex] = [compile_regex(text) for text in route.route["allow_origin_regex"]]
    assert [o for o in matching if regex.fullmatch(o) is None] == []
    assert [o for o in not_matching if regex.fullmatch(o) is not None] == []
    assert list(out) == []


def test_other_kinds_are_ignored_and_non_objects_are_errors() -> None:
    documents = [None, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}},
                 {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway"}, "text", [1], {"routes": []},
                 {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {}}]  # fmt: skip
    routes, out = translate(*documents)
    assert routes == []
    assert codes(out) == {
        "team-a.yaml documents[1]": "kind_ignored", "team-a.yaml documents[2]": "kind_ignored",
        "team-a.yaml documents[3]": "not_kubernetes", "team-a.yaml documents[4]": "not_kubernetes",
        "team-a.yaml documents[5]": "not_kubernetes", "team-a.yaml documents[6].metadata.name": "httproute_invalid",
    }  # fmt: skip


def test_a_list_is_flattened_and_namespace_defaults() -> None:
    item = httproute({"allowOrigins": ["https://a.example.com"]}, namespace=None)
    lists = [{"apiVersion": "v1", "kind": "List", "items": [item]},
             {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRouteList", "items": [item]}]  # fmt: skip
    routes, out = translate(*lists)
    assert [r.route["name"] for r in routes] == ["default/orders/rules[0]"] * 2
    assert list(out) == []


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param(httproute({}), True, id="httproute"),
        pytest.param({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "Gateway"}, True, id="gateway"),
        pytest.param({"apiVersion": "v1", "kind": "List", "items": [httproute({})]}, True, id="list-of-httproutes"),
        pytest.param({"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Service"}]}, False,
                     id="list-of-services"),
        pytest.param({"apiVersion": "v1", "kind": "Service"}, False, id="service"),
        pytest.param({"routes": [{"path_prefix": "/a"}]}, False, id="our-route-format"),
        pytest.param({"apiVersion": "gateway.networking.k8s.io/v1"}, False, id="no-kind"),
        pytest.param("gateway.networking.k8s.io/v1", False, id="a-string"),
    ],
)  # fmt: skip
def test_is_gateway_document(doc: Any, expected: bool) -> None:
    assert is_gateway_document(doc) is expected


def test_field_names_name_cors_filter_fields() -> None:
    assert set(FIELD_NAMES) <= CORS_ROUTE_KEYS and set(FIELD_NAMES.values()) <= set(CORS_KEYS)


def test_every_route_compiles_as_a_route_of_ours() -> None:
    """The routes compile under today's route settings (the keys RouteSettings knows; hosts and refused aside)."""
    routes, _ = translate(*yaml.safe_load_all(ROUTES_FILE.read_text()))
    known = set(RouteSettings.model_fields)
    served = [{k: v for k, v in r.route.items() if k in known} for r in routes if not r.route.get("refused")]
    served = [r for r in served if not (r["allow_credentials"] and "*" in r["allow_methods"])]  # issue 28 semantics
    compiled = make_compiled(allow_origins=["https://app.example.com"], routes=served)
    assert {r.name for r in compiled.policy.table.all_routes()} >= {r["name"] for r in served}


# Hypothesis: valid filters round-trip; one invalid entry always gives a finding naming its field.
_LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_DOMAIN = st.builds(lambda a, b: f"{a}.{b}.example.com", _LABEL, _LABEL)
_ORIGIN = st.builds(lambda scheme, wildcard, host, port: f"{scheme}://{'*.' if wildcard else ''}{host}{port}",
                    st.sampled_from(["http", "https"]), st.booleans(), _DOMAIN,
                    st.sampled_from(["", ":8443", ":1", ":65535"]))  # fmt: skip
_HEADER = st.text("abcdefghijklmnopqrstuvwxyz-_0123456789!#$%&'+.^`|~", min_size=1, max_size=20)


@st.composite
def valid_filters(draw: st.DrawFn) -> dict[str, Any]:
    cors: dict[str, Any] = {"allowOrigins": draw(st.lists(_ORIGIN, min_size=1, max_size=64, unique=True))}
    credentials = draw(st.sampled_from([None, False, True]))
    if credentials is not None:
        cors["allowCredentials"] = credentials
    if not credentials and draw(st.booleans()):
        cors["allowOrigins"] = ["*"]
    for key, values in (("allowMethods", st.lists(st.sampled_from(METHODS), max_size=9, unique=True)),
                        ("allowHeaders", st.lists(_HEADER, max_size=64, unique=True)),
                        ("exposeHeaders", st.lists(_HEADER, max_size=64, unique=True))):  # fmt: skip
        if draw(st.booleans()):
            cors[key] = ["*"] if key != "exposeHeaders" and draw(st.booleans()) else draw(values)
    if draw(st.booleans()):
        cors["maxAge"] = draw(st.integers(1, 2**31 - 1))
    return cors


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_filters())
def test_valid_filters_round_trip(cors: dict[str, Any]) -> None:
    [gateway_route], out = translate(httproute(copy.deepcopy(cors)))
    route = gateway_route.route
    assert errors(out) == {} and "refused" not in route
    assert route["allow_origins"] == cors["allowOrigins"] and route["allow_origin_regex"] == []
    assert route["allow_methods"] == cors.get("allowMethods", [])
    assert route["allow_headers"] == cors.get("allowHeaders", [])
    assert route["expose_headers"] == cors.get("exposeHeaders", [])
    assert route["allow_credentials"] is bool(cors.get("allowCredentials"))
    assert route["max_age"] == cors.get("maxAge", MAX_AGE_DEFAULT)
    assert set(route) >= CORS_ROUTE_KEYS


_BAD_ENTRIES = {
    "allowOrigins": st.sampled_from(["https://a.example.com/", "null", "a.example.com", "https://a_b.example.com",
                                     "https://a.example.com:0", "https://*.*.example.com", "", " https://a.example.com"]),
    "allowMethods": st.sampled_from(["get", "PURGE", "", "GET ", "*"]),
    "allowHeaders": st.sampled_from(["x a", ":authority", "", "x/y", "x" * 257, "*"]),
    "exposeHeaders": st.sampled_from(["x a", "", "x,y", "x" * 257]),
}  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_filters(), st.sampled_from(sorted(_BAD_ENTRIES)), st.data())
def test_an_invalid_entry_is_a_finding_naming_its_field(cors: dict[str, Any], key: str, data: st.DataObject) -> None:
    bad = data.draw(_BAD_ENTRIES[key])
    values = [v for v in cors.get(key, []) if v != "*"] or (["https://a.example.com"] if key == "allowOrigins" else [])
    values = values[:8]
    if bad == "*" and not values:
        values = ["GET"] if key == "allowMethods" else ["x-a"]
    values.insert(data.draw(st.integers(0, len(values))), bad)
    cors[key] = values
    [route], out = translate(httproute(cors))
    assert any(f.setting.startswith(f"{WHERE}.{key}") for f in out if f.is_error), list(out)
    assert route.route["refused"] is True


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["cors", "filters", "matches", "hostnames", "rules", "spec", "metadata"]), _JSON)
def test_hostile_documents_never_raise(where: str, value: Any) -> None:
    doc = httproute({"allowOrigins": ["https://a.example.com"]}, matches=[{"path": {"value": "/a"}}])
    rule = doc["spec"]["rules"][0]
    targets = {"cors": (rule["filters"][0], "cors"), "filters": (rule, "filters"), "matches": (rule, "matches"),
               "hostnames": (doc["spec"], "hostnames"), "rules": (doc["spec"], "rules"), "spec": (doc, "spec"),
               "metadata": (doc, "metadata")}  # fmt: skip
    parent, key = targets[where]
    parent[key] = value
    routes, _ = translate(doc)
    for gateway_route in routes:
        assert set(gateway_route.route) >= CORS_ROUTE_KEYS
        assert gateway_route.route["path_prefix"].startswith("/")


def test_a_cors_filter_on_a_backend_is_ignored_with_a_warning() -> None:
    doc = httproute(None, filters=[])
    doc["spec"]["rules"][0]["backendRefs"] = [{"name": "svc", "port": 80, "filters": [
        {"type": "CORS", "cors": {"allowOrigins": ["https://a.example.com"]}}]}]  # fmt: skip
    routes, out = translate(doc)
    assert routes == []
    assert codes(out) == {"HTTPRoute team-a/orders rules[0].backendRefs[0].filters": "httproute_backend_cors_ignored"}


def test_routes_of_one_rule_share_no_list() -> None:
    matches = [{"path": {"value": "/a"}}, {"path": {"value": "/b"}}]
    doc = httproute({"allowOrigins": ["https://a.example.com"]}, matches=matches, hostnames=["a.example.com"])
    first, second = (r.route for r in translate(doc)[0])
    first["allow_origins"].append("https://evil.example")
    first["hosts"].append("evil.example")
    assert second["allow_origins"] == ["https://a.example.com"] and second["hosts"] == ["a.example.com"]


def test_null_fields_are_unset_as_the_api_prunes_them() -> None:
    cors = {"allowOrigins": ["https://a.example.com"], "allowCredentials": None, "maxAge": None, "allowMethods": None}
    doc = httproute(cors, matches=[{"path": {"type": None, "value": None}}], namespace=None)
    doc["metadata"]["namespace"] = None
    [route], out = translate(doc)
    assert list(out) == []
    assert (route.route["name"], route.route["path_prefix"], route.route["path_exact"]) == ("default/orders/rules[0]",
                                                                                           "/", False)  # fmt: skip
    assert (route.route["allow_credentials"], route.route["max_age"], route.route["allow_methods"]) == (False, 5, [])
