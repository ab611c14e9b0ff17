"""Actual responses agree with preflights on every origin: the rendered headers middleware vs the service.

A browser's preflight is answered by cors-handler; the actual response gets its
Access-Control-Allow-Origin from Traefik's headers middleware, rendered by the chart from
the same policy. If the two disagree on an origin, the preflight succeeds and the actual
request fails (or a page the policy refuses reads a simple request's response).

Traefik's side is evaluated as its source does (pkg/middlewares/headers/header.go,
isOriginAllowed): an accessControlAllowOriginList entry equal to the Origin byte for byte
(or "*"), else any accessControlAllowOriginListRegex matching anywhere in it (Go's regexp,
MatchString: RE2 semantics, unanchored unless the pattern anchors itself; google-re2 is the
same engine). The service's side is its own decision, in process, on the policy in the
rendered ConfigMap. Origins travel as UTF-8 bytes: Go reads them as UTF-8, the service as
latin-1. Real Traefik and the real service are compared on a sample in test_traefik.py.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import re2
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cors_handler.config.compile import compile_settings
from cors_handler.config.settings import load_settings
from cors_handler.cors.decide import Allowed, Violation, decide
from cors_handler.cors.model import Policy, RoutePolicy

from .chart import ENVIRONMENTS, RELEASE, environment_values, helm, objects, one

_compiled: dict[str, Any] = {}


def traefik_allows(headers: dict[str, Any], origin: str) -> bool:
    """Traefik's isOriginAllowed on the rendered middleware spec."""
    if any(item in ("*", origin) for item in headers.get("accessControlAllowOriginList", [])):
        return True
    for pattern in headers.get("accessControlAllowOriginListRegex", []):
        if pattern not in _compiled:
            _compiled[pattern] = re2.compile(pattern)
        if _compiled[pattern].search(origin) is not None:
            return True
    return False


def service_allows(route: RoutePolicy, origin: str) -> bool:
    """The service's answer to a GET preflight from ``origin`` (sent as UTF-8, read as latin-1)."""
    wire = origin.encode("utf-8").decode("latin-1")
    decision = decide(route, wire, "GET", "", False)
    if isinstance(decision, Violation):
        assert decision.error_type == "origin_not_allowed", decision  # only the origin is in question here
    return isinstance(decision, Allowed)


def rendered(values: dict[str, Any], tmp_path: Path) -> tuple[Policy, dict[str, dict[str, Any]]]:
    """The service's policy from the ConfigMap, and each route's headers middleware spec by route name."""
    docs = objects(values)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(one(docs, "ConfigMap", RELEASE)["data"]["policy.yaml"])
    policy = compile_settings(load_settings(policy_file=str(policy_file))).policy
    prefix = f"{RELEASE}-cors-"
    middlewares = {
        d["metadata"]["name"].removeprefix(prefix): d["spec"]["headers"]
        for d in docs
        if d["kind"] == "Middleware" and d["metadata"]["name"].startswith(prefix)
    }
    return policy, middlewares


def disagreements(policy: Policy, middlewares: dict[str, dict[str, Any]], origins: list[str]) -> list[str]:
    found = []
    routes = [r for r in policy.all_routes() if r.enabled]
    assert {r.name for r in routes} == set(middlewares)
    for route in routes:
        for origin in origins:
            service, traefik = service_allows(route, origin), traefik_allows(middlewares[route.name], origin)
            if service != traefik:
                found.append(f"route {route.name}: {origin!r}: service {service}, traefik {traefik}")
    return found


# ---------------------------------------------------------------- origins worth asking about

LOOPBACK_V6 = ["[::1]", "[0:0:0:0:0:0:0:1]", "[::0:1]", "[0::1]", "[0000::0001]", "[::0.0.0.1]",
               "[::ffff:0.0.0.1]", "[::2]", "[1::]", "[::]", "[0:0:0:0:0:0:0:0:1]", "[::1::]", "[::01]", "[::00001]",
               "[fe80::1]"]  # fmt: skip


def variants(origin: str) -> list[str]:
    """Spellings and near misses of one allowed origin or pattern."""
    scheme, _, rest = origin.partition("://")
    host, _, port = rest.partition(":")
    wildcard = host.startswith("*.")
    domain = host.removeprefix("*.")
    hosts = [f"x.{domain}", f"a.b.{domain}", f"A.B.{domain.upper()}", domain, f"-x.{domain}", f"x_y.{domain}",
             f"x..{domain}", f"x.{domain}."] if wildcard else [domain, domain.upper(), domain.title(), f"{domain}.",
             f"x.{domain}", f".{domain}"]  # fmt: skip
    hosts += [f"evil{domain}", f"{domain}.evil.net", f"{domain}evil.net", domain.replace("k", "\u212a"),
              domain.replace("s", "\u017f"), domain.replace("i", "\u0130"), domain.replace("a", "\uff41")]  # fmt: skip
    defaults = {"http": "80", "https": "443", "ws": "80", "wss": "443"}
    ports = ["", ":" + port if port else "", ":0" + (port or "1"), ":00" + (port or "22"), ":000" + (port or "333"),
             ":", ":65535", ":65536", ":99999", ":123456", ":+1", ":8080"]  # fmt: skip
    if scheme in defaults:
        ports += [":" + defaults[scheme], ":0" + defaults[scheme], ":00" + defaults[scheme], ":000" + defaults[scheme]]
    schemes = [scheme, scheme.upper(), scheme.title(), "http" if scheme != "http" else "https", scheme + "s", "ws"]
    out = {f"{s}://{h}{p}" for s in schemes for h in hosts for p in ports[:3]}
    out |= {f"{scheme}://{hosts[0]}{p}" for p in ports}
    out |= {f"{scheme}://{hosts[0]}/", f"{scheme}://u@{hosts[0]}", f"{scheme}:/{hosts[0]}", f" {scheme}://{hosts[0]}"}
    return sorted(out)


def development_origins(cidrs: list[str]) -> list[str]:
    hosts = ["localhost", "LOCALHOST", "LocalHost", "localhost.", "xlocalhost", "localhost.evil.net",
             "127.0.0.1", "127.1.2.3", "127.255.255.255", "127.0.0.01", "127.256.0.1", "127.0.0", "127.0.0.1.1",
             "0127.0.0.1", *LOOPBACK_V6]  # fmt: skip
    for cidr in cidrs:
        network = ipaddress.IPv4Network(cidr)
        first, last = network.network_address, network.broadcast_address
        hosts += [str(first), str(last), str(first - 1), str(last + 1)]
        a, b, c, d = str(last).split(".")
        hosts += [f"{a}.{b}.{c}.0{d}" if d != "0" else f"{a}.{b}.{c}.00", f"{a}.{b}.{c}.{d}9", f"{a}.{b}.{c}.{d}."]
    return [f"{scheme}://{host}{port}" for scheme in ("http", "https", "HTTPS", "ws", "file") for host in hosts
            for port in ("", ":3000", ":0", ":65535", ":65536", ":03000")]  # fmt: skip


def origins_for(values: dict[str, Any]) -> list[str]:
    policy = values["policy"]
    patterns = [
        *policy.get("allow_origins", []),
        *(o for r in policy.get("routes", []) for o in r.get("allow_origins", [])),
    ]
    out = {"null", "NULL", "Null", "", "*", "https://", "https://:443", "https://[::1", "https://a b.example.com",
           "https://example.com\x00", "https://\u212a.example.com"}  # fmt: skip
    for pattern in patterns:
        if "://" in pattern:
            out.update(variants(pattern))
    out.update(development_origins(policy.get("dev_private_cidrs", [])))
    out.update(f"http://{h}" for h in LOOPBACK_V6)
    return sorted(out)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_shipped_values_agree_on_every_origin(environment: str, tmp_path: Path) -> None:
    values = environment_values(environment)
    policy, middlewares = rendered(values, tmp_path)
    assert disagreements(policy, middlewares, origins_for(values)) == []


PER_ROUTE: dict[str, Any] = {
    "policy": {
        "allow_origins": ["https://app.example.com", "https://*.tenants.example.com", "http://*.dev.example.org:8080",
                          "wss://socket.example.com:443", "app://desktop", "null"],
        "routes": [
            {"name": "v2", "path_prefix": "/api/v2", "allow_origins": ["https://partner.example.net:8443"],
             "allow_credentials": True},
            {"name": "any", "path_prefix": "/public", "allow_origins": ["*"]},
            {"name": "off", "path_prefix": "/internal", "enabled": False},
            {"name": "inherit", "path_prefix": "/api/v3", "max_age": 0},
        ],
    }
}  # fmt: skip


@pytest.mark.parametrize("environment", ["development", "staging"])
def test_per_route_policies_wildcards_ports_and_any_agree(environment: str, tmp_path: Path) -> None:
    values = environment_values(environment, PER_ROUTE)
    policy, middlewares = rendered(values, tmp_path)
    assert set(middlewares) == {"default", "v2", "any", "inherit"}  # no middleware for a disabled route
    origins = [*origins_for(values), "https://x.y.z.tenants.example.com", "file://", "a+b-c.d://host"]
    assert disagreements(policy, middlewares, origins) == []
    # the comparison can fail: both sides allow some and refuse some on every route
    for route in (r for r in policy.all_routes() if r.enabled):
        answers = {service_allows(route, o) for o in origins}
        assert answers == {True, False}, route.name


# ---------------------------------------------------------------- generated policies

LABELS = ["app", "api", "a", "b", "x-y", "under_score", "k8s", "xn--bcher-kva", "0day", "ssl"]
DOMAINS = ["example.com", "example.net", "kiosk.example.org", "corp.internal", "dev.local.test", "s.example.io"]
SCHEMES = ["https", "http", "ws", "wss", "app", "chrome-extension"]


@st.composite
def origin_patterns(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(SCHEMES))
    domain = draw(st.sampled_from(DOMAINS))
    port = draw(st.sampled_from(["", "", ":443", ":80", ":8080", ":08443", ":1", ":65535"]))
    if draw(st.booleans()):
        return f"{scheme}://*.{domain}{port}"
    labels = draw(st.lists(st.sampled_from(LABELS), max_size=2))
    host = ".".join([*labels, domain])
    if draw(st.integers(0, 9)) == 0:
        host = draw(st.sampled_from(["127.0.0.1", "192.168.1.20", "10.0.0.1"]))
    spelled = "".join(c.upper() if draw(st.integers(0, 5)) == 0 else c for c in host)
    return f"{scheme}://{spelled}{port}"


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    environment = draw(st.sampled_from(ENVIRONMENTS))
    credentials = draw(st.booleans())
    origins = draw(st.lists(origin_patterns(), min_size=1, max_size=5, unique=True))
    if draw(st.integers(0, 5)) == 0:
        origins.append("null")
    if environment != "production" and not credentials and draw(st.integers(0, 5)) == 0:
        origins.append("*")
    cidrs = draw(st.lists(st.sampled_from(["192.168.1.0/24", "10.0.0.0/8", "172.16.21.0/24", "10.1.2.3/32",
                                           "172.16.0.0/16"]), max_size=3, unique=True))  # fmt: skip
    routes = []
    for i in range(draw(st.integers(0, 2))):
        route: dict[str, Any] = {"name": f"r{i}", "path_prefix": f"/api/r{i}"}
        if draw(st.booleans()):
            route["allow_origins"] = draw(st.lists(origin_patterns(), min_size=1, max_size=3, unique=True))
        route["enabled"] = draw(st.integers(0, 4)) != 0
        routes.append(route)
    return {"policy": {"environment": environment, "allow_origins": origins, "allow_credentials": credentials,
                       "dev_private_cidrs": cidrs, "routes": routes}}  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=policies(), extra=st.lists(st.text(alphabet="aAkK\u212a.:/-_*[]01984hHtTpPsS ", max_size=30)))
def test_generated_policies_agree_on_generated_origins(
    values: dict[str, Any], extra: list[str], tmp_path: Path
) -> None:
    full = environment_values(values["policy"]["environment"], values)
    policy, middlewares = rendered(full, tmp_path)
    assert disagreements(policy, middlewares, origins_for(full) + extra) == []


# ---------------------------------------------------------------- what the middleware cannot express


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        pytest.param({"policy": {"allow_origin_regex": [r"^https://[a-z]+\.example\.com$"]}},
                     "policy.allow_origin_regex", id="regex"),
        pytest.param({"policy": {"routes": [{"name": "v2", "path_prefix": "/v2",
                                             "allow_origin_regex": [r"^https://a\.example\.com$"]}]}},
                     "policy.routes[v2].allow_origin_regex", id="route-regex"),
        pytest.param({"policy": {"allow_origins": ["https://[2001:db8::1]"]}}, "policy.allow_origins[0]", id="ipv6"),
    ],
)  # fmt: skip
def test_what_the_headers_middleware_cannot_express_is_refused_with_a_message(
    override: dict[str, Any], setting: str
) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(setting)) as refused:
        objects(environment_values("staging", override))
    assert "traefik.actualResponseHeaders=false" in str(refused.value)
    docs = objects(environment_values("staging", override, {"traefik": {"actualResponseHeaders": False}}))
    assert not [d for d in docs if d["kind"] == "Middleware" and "-cors-" in d["metadata"]["name"]]
    policy = yaml.safe_load(one(docs, "ConfigMap", RELEASE)["data"]["policy.yaml"])
    assert policy["allow_origins"] or policy["routes"]  # the service still gets the whole policy
