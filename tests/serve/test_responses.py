import gc
import tracemalloc
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cors_handler.cors.decide import Allowed, Violation, decide
from cors_handler.cors.model import Policy, RoutePolicy
from cors_handler.serve.pipeline import Runtime
from cors_handler.serve.responses import (
    VARY,
    AllowedAnswers,
    allowed,
    encode,
    not_preflight,
    rejected,
)

from ..conftest import make_policy


def headers(response) -> dict[str, str]:  # type: ignore[no-untyped-def]
    out: dict[str, str] = {}
    for name, value in response.headers:
        assert name.decode() not in out, f"duplicate header {name!r}"
        out[name.decode()] = value.decode()
    return out


def test_allowed_headers_exactly() -> None:
    policy = make_policy(allow_origins=["https://a.com"], max_age=600)
    h = headers(allowed(policy, policy.default, "https://A.com", Allowed("exact", "PUT", ("content-type",), False)))
    assert h == {
        "access-control-allow-origin": "https://A.com",  # echoed as received
        "access-control-allow-methods": "GET, HEAD, POST, PUT, PATCH, DELETE",
        "access-control-allow-headers": "content-type, authorization",
        "access-control-max-age": "600",
        "vary": VARY,
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "strict-origin-when-cross-origin",
        "cache-control": "public, max-age=600",
        "x-cors-preflight": "enhanced-handler",
    }


def test_exposed_headers_follow_the_allowed_headers_on_allowed_preflights_only() -> None:
    """Issue 28: Access-Control-Expose-Headers, as written, right after Access-Control-Allow-Headers; never on a 403."""
    policy = make_policy(allow_origins=["https://a.com"], allow_headers=["x-a"], expose_headers=["X-Id", "*", "etag"])
    response = allowed(policy, policy.default, "https://a.com", Allowed("exact", "PUT", ("x-a",), False))
    assert [name.decode() for name, _ in response.headers][:5] == [
        "access-control-allow-origin", "access-control-allow-methods", "access-control-allow-headers",
        "access-control-expose-headers", "access-control-max-age",
    ]  # fmt: skip
    assert headers(response)["access-control-expose-headers"] == "X-Id, *, etag"
    refused = rejected(policy, policy.default, Violation("header_not_allowed", "no", "exact", ("x-b",)))
    assert "access-control-expose-headers" not in headers(refused)


def test_star_with_credentials_echoes_the_request() -> None:
    """Issue 28: '*' methods and headers with credentials answer the requested method and names, never '*'."""
    policy = make_policy(allow_origins=["https://a.com"], allow_methods=["*"], allow_headers=["*"],
                         allow_credentials=True)  # fmt: skip
    h = headers(allowed(policy, policy.default, "https://a.com", Allowed("exact", "QUERY", ("authorization",), False)))
    assert (h["access-control-allow-methods"], h["access-control-allow-headers"]) == ("QUERY", "authorization")
    assert (h["access-control-allow-origin"], h["access-control-allow-credentials"]) == ("https://a.com", "true")
    assert "access-control-expose-headers" not in h


def test_allowed_credentials_private_network_and_wildcards() -> None:
    policy = make_policy(
        environment="development", allow_origins=["*"], allow_methods=["*"], allow_headers=["*"],
        allow_private_network=True, security_headers=False,
    )  # fmt: skip
    h = headers(allowed(policy, policy.default, "https://x.com", Allowed("any", "PROPFIND", ("x-a", "x-b"), True)))
    assert h["access-control-allow-origin"] == "*"
    assert h["access-control-allow-methods"] == "PROPFIND"
    assert h["access-control-allow-headers"] == "x-a, x-b"
    assert h["access-control-allow-private-network"] == "true"
    assert h["vary"] == VARY + ", Access-Control-Request-Private-Network"
    assert "access-control-allow-credentials" not in h
    assert "x-frame-options" not in h and "cache-control" not in h

    cred = make_policy(allow_origins=["https://a.com"], allow_credentials=True)
    h = headers(allowed(cred, cred.default, "https://a.com", Allowed("exact", "GET", (), False)))
    assert h["access-control-allow-credentials"] == "true"
    assert h["access-control-allow-origin"] == "https://a.com"


def test_rejected_has_no_allow_headers_and_debug_lists_policy() -> None:
    policy = make_policy(allow_origins=["https://a.com"])
    r = rejected(policy, policy.default, Violation("origin_not_allowed", "Origin is not allowed", None))
    h = headers(r)
    assert r.status == 403 and not any(k.startswith("access-control-allow") for k in h)
    assert h["vary"] == VARY and h["content-type"] == "application/json"
    assert orjson.loads(r.body) == {"error_type": "origin_not_allowed", "message": "Origin is not allowed"}

    debug = make_policy(allow_origins=["https://a.com"], debug=True)
    body = orjson.loads(rejected(debug, debug.default, Violation("origin_not_allowed", "no", None)).body)
    assert body["allowed"] == {
        "origins": ["https://a.com"],
        "methods": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
        "headers": ["content-type", "authorization"],
    }


def test_responses_are_immutable() -> None:
    policy = make_policy(allow_origins=["https://a.com"])
    response = not_preflight(policy, "OPTIONS")
    assert isinstance(response.headers, tuple) and all(isinstance(h, tuple) for h in response.headers)
    with pytest.raises(AttributeError):
        response.headers.append((b"x", b"y"))  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        response.status = 200  # type: ignore[misc]


# -- allowed answers: the route's fixed text shared, the encoding unchanged (issue 27) --

LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
TOKEN = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=10).map(lambda t: "x" + t)
METHOD = st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "PROPFIND", "X-CUSTOM"])


@st.composite
def route_settings(draw: st.DrawFn) -> dict[str, Any]:
    """One route's CORS keys: every shape an allowed answer can take (echoed or listed methods and headers)."""
    credentials = draw(st.booleans())
    origins = ["*"] if not credentials and draw(st.booleans()) else ["https://*.example.com", "https://app.example.org"]
    return {
        "allow_origins": origins,
        "allow_methods": draw(st.sampled_from([["*"], ["GET", "PUT"], ["DELETE"]])),
        "allow_headers": draw(st.sampled_from([["*"], ["content-type", "x-a"], [], ["*", "authorization"]])),
        "expose_headers": draw(st.sampled_from([[], ["x-id"], ["X-Id", "etag"]] + ([] if credentials else [["*"]]))),
        "allow_credentials": credentials,
        "max_age": draw(st.integers(0, 100_000)),
        "allow_private_network": draw(st.booleans()),
    }


def reference_encoding(policy: Policy, route: RoutePolicy, origin: str, decision: Allowed) -> bytes:
    """The answers table, written out field by field as the encoder did before the fixed text was shared."""
    fields = [("access-control-allow-origin", "*" if route.origins.allow_any and not route.allow_credentials
                                                 else origin)]  # fmt: skip
    fields.append(("access-control-allow-methods", decision.method if route.any_method else ", ".join(route.methods)))
    listed = ", ".join(decision.request_headers if route.any_header else route.headers)
    if listed:
        fields.append(("access-control-allow-headers", listed))
    if route.expose_headers:
        fields.append(("access-control-expose-headers", ", ".join(route.expose_headers)))
    fields.append(("access-control-max-age", str(route.max_age)))
    if route.allow_credentials:
        fields.append(("access-control-allow-credentials", "true"))
    if decision.private_network:
        fields.append(("access-control-allow-private-network", "true"))
    fields.append(("vary", VARY + (", Access-Control-Request-Private-Network" if route.allow_private_network else "")))
    if policy.security_headers:
        fields += [("x-content-type-options", "nosniff"), ("x-frame-options", "DENY"),
                   ("referrer-policy", "strict-origin-when-cross-origin"),
                   ("cache-control", f"public, max-age={route.max_age}")]  # fmt: skip
    fields.append(("x-cors-preflight", "enhanced-handler"))
    lines = "".join(f"{name}: {value}\r\n" for name, value in fields)
    return f"HTTP/1.1 204 No Content\r\n{lines}\r\n".encode("latin-1")


@settings(max_examples=150, deadline=None)
@given(
    top=route_settings(),
    routed=route_settings(),
    security=st.booleans(),
    requests=st.lists(
        st.tuples(st.sampled_from(["/", "/r/x"]), LABEL, METHOD, st.lists(TOKEN | st.just("authorization"),
                  max_size=3), st.booleans()),
        min_size=1, max_size=6,
    ),
)  # fmt: skip
def test_allowed_answers_encode_as_the_answers_table_says(
    top: dict[str, Any], routed: dict[str, Any], security: bool,
    requests: list[tuple[str, str, str, list[str], bool]],
) -> None:  # fmt: skip
    """Every allowed answer the pipeline caches, byte for byte against a straightforward encoder.

    Several requests per policy, on two routes, so later answers are built from
    fixed text an earlier one left (``AllowedAnswers``) and must still be their own.
    """
    any_origin = "*" in top["allow_origins"] or "*" in routed["allow_origins"]
    environment = "development" if any_origin else "production"
    route = {"name": "r", "path_prefix": "/r", **routed}
    policy = make_policy(**top, environment=environment, security_headers=security, routes=[route],
                         rate_limit={"enabled": False})  # fmt: skip
    runtime = Runtime(policy)
    for path, label, method, names, private_network in requests:
        origin = f"https://{label}.example.com"
        headers = [(b"origin", origin.encode()), (b"access-control-request-method", method.encode())]
        if names:
            headers.append((b"access-control-request-headers", ",".join(names).encode()))
        if private_network:
            headers.append((b"access-control-request-private-network", b"true"))
        route, response = runtime.answer(path, headers, None)
        decision = decide(route, origin, method, ",".join(names), private_network)
        if not isinstance(decision, Allowed):
            assert response.status != 204
            continue
        assert encode(response) == reference_encoding(policy, route, origin, decision)
        assert encode(allowed(policy, route, origin, decision)) == encode(response)  # the one-off builder agrees
        lines = reference_encoding(policy, route, origin, decision).split(b"\r\n")[1:-2]
        assert response.headers == tuple(tuple(line.split(b": ", 1)) for line in lines)  # what the ASGI app sends


@pytest.mark.parametrize(
    "echoed",
    [
        pytest.param(("authorization",), id="authorization-echoed-with-credentials"),
        pytest.param(("content-type", "x-a", "x-b"), id="three-echoed"),
        pytest.param((), id="none-asked-no-allow-headers-field"),
    ],
)
def test_echoed_header_lists_are_the_answers_own(echoed: tuple[str, ...]) -> None:
    """With '*' headers the list asked for is echoed, whatever it holds (authorization with credentials too)."""
    policy = make_policy(allow_origins=["https://*.example.com"], allow_headers=["*"], allow_credentials=True)
    route = policy.default
    answers = AllowedAnswers(policy)
    decision = Allowed("wildcard", "PUT", echoed, False)
    first = answers.answer(route, b"https://a.example.com", b"PUT", decision)
    other = answers.answer(route, b"https://b.example.com", b"PUT", Allowed("wildcard", "PUT", ("x-z",), False))
    fields = dict(first.headers)
    assert fields.get(b"access-control-allow-headers") == (", ".join(echoed).encode() if echoed else None)
    assert fields[b"access-control-allow-credentials"] == b"true"
    assert dict(other.headers)[b"access-control-allow-headers"] == b"x-z"
    assert encode(first) == reference_encoding(policy, route, "https://a.example.com", decision)


def test_a_cached_allowed_answer_costs_little_more_than_its_key() -> None:
    """What each answer retains beside its key, by tracemalloc: its origin is the key's, its fixed text shared.

    The bound is relative to the key (the 5-tuple and the origin bytes it holds), so
    it does not move with the interpreter's object sizes; before the fixed text was
    shared an answer retained about 12 times its key.
    """
    policy = make_policy(allow_origins=["https://*.example.com"])
    runtime = Runtime(policy)
    runtime.compute(policy.default, b"https://warm.example.com", b"PUT", b"", False)  # the route's fixed text
    count = 2000
    gc.collect()
    gc.disable()  # a collection during a measurement would free earlier tests' garbage and hide what was allocated
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        keys = [(policy.default, b"https://s%09d.example.com" % i, b"PUT", b"", False) for i in range(count)]
        per_key = (tracemalloc.get_traced_memory()[0] - before) / count
        before = tracemalloc.get_traced_memory()[0]
        answers = [runtime.compute(*key) for key in keys]
        per_answer = (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()
        gc.enable()
    assert all(answer.status == 204 for answer in answers)
    assert per_answer <= 1.5 * per_key, (per_answer, per_key)
    # what the bound stands on: the origin echoed is the key's own bytes, the text around it one object per route
    assert answers[0].lines[1] is keys[0][1]
    assert answers[0].lines[0] is answers[-1].lines[0] and answers[0].lines[2] is answers[-1].lines[2]
