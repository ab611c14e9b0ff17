"""Case generation for ``verify``: what the generator means to be allowed or refused, the pipeline agrees with.

The expected answers are the pipeline's (``verify.expected_answer``); these
tests hold the generator to its own intent on random policies, so a lookalike
that is really an allowed origin (or an "allowed" host a wildcard does not
cover) fails here instead of silently testing nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cors_handler.serve.pipeline import route_path
from cors_handler.tools.cases import ALLOW, REFUSE, Case, generate, origin_samples, targets
from cors_handler.tools.verify import conclude, expected_answer

from ..conftest import make_policy

LABEL = st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=6)
PORT = st.one_of(st.none(), st.integers(1024, 65535))
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "PROPFIND"]
HEADERS = ["content-type", "authorization", "x-request-id", "x-trace"]


def _origin(scheme: str, host: str, port: int | None) -> str:
    return f"{scheme}://{host}" if port is None else f"{scheme}://{host}:{port}"


@st.composite
def route_values(draw: st.DrawFn, base: int) -> dict[str, Any]:
    """One route's settings. Exact origins and wildcards live under distinct domains, so no rule covers
    another rule's lookalikes (a policy that allows ``evilapp.example.com`` too has no lookalike to refuse)."""
    scheme = st.sampled_from(["https", "http"])
    exact = draw(st.lists(st.tuples(scheme, LABEL, PORT), max_size=3))
    wild = draw(st.lists(st.tuples(scheme, PORT), max_size=2))
    origins = [_origin(s, f"{label}.exact{base}.test", p) for s, label, p in exact]
    origins += [_origin(s, f"*.wild{base}x{i}.test", p) for i, (s, p) in enumerate(wild)]
    credentials = draw(st.booleans())
    any_method = draw(st.booleans())  # '*' methods and headers are allowed with credentials too (issue 28)
    any_header = draw(st.booleans())
    return {
        "allow_origins": origins or ["https://app.example.com"],
        "allow_methods": ["*"] if any_method else draw(st.lists(st.sampled_from(METHODS), max_size=4, unique=True)),
        "allow_headers": (["*"] if any_header else []) + draw(st.lists(st.sampled_from(HEADERS), unique=True)),
        "allow_credentials": credentials,
        "allow_private_network": draw(st.booleans()),
        "max_age": draw(st.integers(0, 86400)),
    }


@st.composite
def policies(draw: st.DrawFn) -> Any:
    top = draw(route_values(0))
    routes = [
        {"path_prefix": f"/r{i}", "enabled": draw(st.booleans()), **draw(route_values(i + 1))}
        for i in range(draw(st.integers(0, 2)))
    ]
    environment = draw(st.sampled_from(["production", "staging", "development"]))
    if environment == "development":
        for values in (top, *routes):
            values["allow_credentials"] = False  # allowed, but a lint warning in development
    return make_policy(environment=environment, dev_private_cidrs=["10.1.0.0/16"], routes=routes, **top)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies(), st.booleans())
def test_every_case_meant_to_pass_passes_and_every_case_meant_to_fail_fails(policy: Any, actual: bool) -> None:
    cases = generate(policy, actual=actual)
    assert len({c.id for c in cases}) == len(cases)
    for case in cases:
        if case.intent is None:
            continue
        conclusion = conclude(case, expected_answer(policy, case))
        assert conclusion.allowed == (case.intent == ALLOW), (case, conclusion)


CREDENTIALED = make_policy(
    allow_origins=["https://app.example.com", "https://*.example.org"],
    allow_methods=["GET", "PUT"],
    allow_headers=["content-type", "x-request-id"],
    allow_credentials=True,
    routes=[
        {"path_prefix": "/api/orders", "name": "api/orders", "allow_methods": ["PUT", "DELETE"]},
        {"path_prefix": "/legacy", "enabled": False},
        {"path_prefix": "/pna", "allow_private_network": True, "allow_credentials": False},
    ],
)


@pytest.mark.parametrize(
    ("case_id", "intent"),
    [
        pytest.param("api/orders exact https://app.example.com PUT credentials", ALLOW, id="exact-each-method"),
        pytest.param("api/orders exact https://app.example.com DELETE credentials", ALLOW, id="exact-second-method"),
        pytest.param("api/orders exact https://app.example.com PATCH credentials", REFUSE, id="refused-method"),
        pytest.param(
            "api/orders exact https://app.example.com PUT headers=content-type,x-request-id credentials",
            ALLOW,
            id="headers-together",
        ),
        pytest.param(
            "api/orders exact https://app.example.com PUT headers=x-verify-refused credentials",
            REFUSE,
            id="refused-header",
        ),
        pytest.param("api/orders exact https://app.example.com PUT", ALLOW, id="other-credentials-mode"),
        pytest.param("api/orders exact https://app.example.com PUT credentials pna", REFUSE, id="pna-off"),
        pytest.param("default wildcard https://one.example.org GET credentials", ALLOW, id="wildcard-one-label"),
        pytest.param("default wildcard https://two.levels.example.org GET credentials", ALLOW, id="wildcard-labels"),
        pytest.param("default wildcard-apex https://example.org GET credentials", REFUSE, id="wildcard-apex"),
        pytest.param("default wildcard-prefix https://evilexample.org GET credentials", REFUSE, id="wildcard-prefix"),
        pytest.param("default exact-prefix https://evilapp.example.com GET credentials", REFUSE, id="evil-prefix"),
        pytest.param("default exact-suffix https://app.example.com.evil.test GET credentials", REFUSE, id="suffix"),
        pytest.param("default exact-scheme http://app.example.com GET credentials", REFUSE, id="http-for-https"),
        pytest.param("default exact-port https://app.example.com:8443 GET credentials", REFUSE, id="other-port"),
        pytest.param("default exact-uppercase https://APP.EXAMPLE.COM GET credentials", None, id="upper-case"),
        pytest.param("default null null GET credentials", REFUSE, id="null"),
        pytest.param("/legacy exact https://app.example.com GET credentials", REFUSE, id="disabled-route"),
        pytest.param("/pna exact https://app.example.com GET pna", ALLOW, id="pna-on"),
    ],
)
def test_the_issue_s_cases_are_generated_with_stable_readable_ids(case_id: str, intent: str | None) -> None:
    cases = {c.id: c for c in generate(CREDENTIALED)}
    assert case_id in cases, sorted(cases)
    assert cases[case_id].intent == intent


@pytest.mark.parametrize(
    ("credentials", "intent", "wire"),
    [
        pytest.param(False, REFUSE, "authorization", id="without-credentials-star-never-covers-it"),
        pytest.param(True, ALLOW, "authorization, x-verify-any", id="with-credentials-star-covers-it"),
    ],
)
def test_star_headers_ask_authorization_as_the_credentials_decide(credentials: bool, intent: str, wire: str) -> None:
    """Issue 28: '*' headers cover authorization with credentials (echoed), never without; verify asks it both ways."""
    policy = make_policy(allow_origins=["https://app.example.com"], allow_methods=["*"], allow_headers=["*"],
                         allow_credentials=credentials)  # fmt: skip
    asked = [c for c in generate(policy) if "authorization" in (c.request_headers or "")]
    assert [(c.request_headers, c.credentials, c.intent) for c in asked] == [(wire, credentials, intent)]
    assert conclude(asked[0], expected_answer(policy, asked[0])).allowed == (intent == ALLOW)


def test_a_disabled_route_gets_one_case_and_actual_gets_a_get_per_origin() -> None:
    cases = generate(CREDENTIALED, actual=True)
    assert [c.id for c in cases if c.route == "/legacy"] == ["/legacy exact https://app.example.com GET credentials"]
    gets = [c for c in cases if c.actual and c.route == "default"]
    assert {c.origin for c in gets} == {s.origin for s in origin_samples(CREDENTIALED.default.origins)} - {
        "https://APP.EXAMPLE.COM",
        "https://ONE.EXAMPLE.ORG",
    }
    assert all(c.method == "GET" and c.credentials and c.id.endswith(" GET actual") for c in gets)


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        pytest.param(
            (),
            [("default", "/"), ("api/orders", "/api/orders"), ("/legacy", "/legacy"), ("/pna", "/pna")],
            id="each-route-on-its-prefix",
        ),
        pytest.param(("/api/orders/7", "/x"), [("api/orders", "/api/orders/7"), ("default", "/x")], id="given-paths"),
        pytest.param(("/x", "/x"), [("default", "/x")], id="repeated-path-once"),
        pytest.param(("/api/orders?x=1", "/%61pi/orders/7", "/api/orders#x"),
                     [("api/orders", "/api/orders?x=1"), ("api/orders", "/%61pi/orders/7"),
                      ("api/orders", "/api/orders#x")], id="targets-routed-as-serve-routes-them"),
    ],
)  # fmt: skip
def test_targets(paths: tuple[str, ...], expected: list[tuple[str, str]]) -> None:
    assert [(route.name, path) for route, path, _ in targets(CREDENTIALED, paths)] == expected


def test_a_route_prefix_is_asked_percent_encoded_where_a_target_needs_it() -> None:
    policy = make_policy(allow_origins=["https://app.example.com"],
                         routes=[{"name": "odd", "path_prefix": "/caf\u00e9%"}])  # fmt: skip
    [(route, target, _)] = [found for found in targets(policy) if found[0].name == "odd"]
    assert target == "/caf%C3%A9%25" and route_path(target.encode()) == route.path_prefix


def test_two_paths_on_one_route_are_told_apart_by_path() -> None:
    cases = generate(CREDENTIALED, ["/a", "/b"])
    assert len({c.id for c in cases}) == len(cases)
    assert {c.path for c in cases} == {"/a", "/b"}
    assert all(c.id.endswith(f" {c.path}") for c in cases)


def test_development_asks_loopback_and_each_private_network() -> None:
    policy = make_policy(
        environment="development",
        allow_origins=["https://app.example.com"],
        dev_private_cidrs=["10.1.0.0/16", "192.168.7.0/24"],
    )
    origins: dict[str, str | None] = {}
    for case in generate(policy):
        origins.setdefault(case.origin, case.intent)
    for origin in (
        "http://localhost:3000",
        "http://127.0.0.1:8080",
        "http://[::1]:5173",
        "http://10.1.0.1",
        "http://192.168.7.1",
    ):
        assert origins[origin] == ALLOW
    assert origins["http://localhost.evil.test:3000"] == REFUSE


def test_any_origin_leaves_lookalikes_to_the_pipeline() -> None:
    policy = make_policy(environment="staging", allow_origins=["*", "https://app.example.com"])
    by_origin: dict[str, Case] = {}
    for case in generate(policy):
        by_origin.setdefault(case.origin, case)  # its first case: an allowed method, no extras
    assert by_origin["https://any-origin.verify.test"].intent == ALLOW
    assert by_origin["null"].intent is None and by_origin["https://evilapp.example.com"].intent is None


def test_case_headers_are_what_a_browser_sends() -> None:
    case = Case("x", "default", "/", "https://a.test", "PUT", "content-type", False, True, ALLOW)
    assert case.headers() == [
        (b"origin", b"https://a.test"),
        (b"access-control-request-method", b"PUT"),
        (b"access-control-request-headers", b"content-type"),
        (b"access-control-request-private-network", b"true"),
    ]


def test_a_regex_only_route_gets_null_and_no_allowed_case() -> None:
    """A regex has no canonical member: nothing can be asked as allowed (docs/operations.md says so)."""
    policy = make_policy(allow_origins=[], allow_origin_regex=[r"https://[a-z]+\.example\.com"])
    assert [(c.origin, c.intent) for c in generate(policy)] == [("null", REFUSE)]


def test_a_repeated_path_keeps_plain_ids() -> None:
    assert [c.id for c in generate(CREDENTIALED, ["/x", "/x"])] == [c.id for c in generate(CREDENTIALED, ["/x"])]


HOSTED = make_policy(
    allow_origins=["https://app.example.com"],
    routes=[
        {"name": "orders", "hosts": ["orders.acme.io"], "path_prefix": "/"},
        {"name": "regional", "hosts": ["*.acme.io"], "path_prefix": "/reports"},
        {"name": "exact", "hosts": ["orders.acme.io"], "path_prefix": "/reports", "path_exact": True},
        {"name": "anywhere", "path_prefix": "/reports"},
    ],
)


def test_a_route_on_hosts_is_asked_on_a_host_that_reaches_it_and_its_cases_send_that_host() -> None:
    found = {route.name: (target, host) for route, target, host in targets(HOSTED)}
    assert found["orders"] == ("/", "orders.acme.io")
    assert found["regional"] == ("/reports", "cors-verify.acme.io")
    assert found["anywhere"] == ("/reports", None)
    assert found["exact"] == ("/reports", "orders.acme.io")
    assert found["default"] == ("/", None)
    for case in generate(HOSTED):
        assert (b"host" in dict(case.headers())) == (case.host is not None), case.id
        route = HOSTED.route_for(route_path(case.path.encode()), case.host)
        assert route.name == case.route, case.id


def test_a_route_on_several_hosts_is_asked_on_every_host_that_reaches_it() -> None:
    policy = make_policy(
        allow_origins=["https://app.example.com"],
        routes=[
            {"name": "shared", "hosts": ["a.acme.io", "*.b.acme.io", "c.acme.io"], "path_prefix": "/api"},
            # takes c.acme.io/api from shared: an exact path comes first
            {"name": "c-own", "hosts": ["c.acme.io"], "path_prefix": "/api", "path_exact": True},
        ],
    )
    hosts = [host for route, _, host in targets(policy) if route.name == "shared"]
    assert hosts == ["a.acme.io", "cors-verify.b.acme.io"]
    shared = [case for case in generate(policy) if case.route == "shared"]
    assert {case.host for case in shared} == {"a.acme.io", "cors-verify.b.acme.io"}
    further = [case for case in shared if case.host == "cors-verify.b.acme.io"]
    assert len(further) == 1 and further[0].intent == ALLOW and further[0].id.endswith(" @cors-verify.b.acme.io")
    assert len(shared) > 5  # the first host gets every case
