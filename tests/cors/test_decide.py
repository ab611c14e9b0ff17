import re

import pytest

from cors_handler.cors.decide import (
    Allowed,
    Invalid,
    Violation,
    check_sizes,
    decide,
)
from cors_handler.cors.limits import MAX_METHOD_BYTES, MAX_ORIGIN_BYTES, MAX_REQUEST_HEADERS_BYTES
from cors_handler.cors.model import Policy

from ..conftest import make_policy

POLICY = make_policy(
    allow_origins=["https://app.example.com", "null"],
    allow_methods=["GET", "POST", "PUT", "DELETE"],
    allow_headers=["content-type", "x-request-id", "authorization"],
    routes=[
        {"name": "pna", "path_prefix": "/pna", "allow_private_network": True},
        {"name": "open", "path_prefix": "/open", "allow_methods": ["*"], "allow_headers": ["*"]},
        {"name": "open-auth", "path_prefix": "/open-auth", "allow_headers": ["*", "authorization"]},
        {
            "name": "open-creds",
            "path_prefix": "/open-creds",
            "allow_methods": ["*"],
            "allow_headers": ["*"],
            "allow_credentials": True,
        },
    ],
)
DEFAULT = POLICY.default
METHOD, HEADERS = "Access-Control-Request-Method", "Access-Control-Request-Headers"


@pytest.mark.parametrize(
    ("origin", "method", "headers", "pna", "route", "expected"),
    [
        ("https://app.example.com", "PUT", "", False, "/", "allowed"),
        ("https://app.example.com", "PUT", "Content-Type, X-Request-Id", False, "/", "allowed"),
        ("https://app.example.com", "GET", ",,content-type,,", False, "/", "allowed"),
        ("null", "GET", "", False, "/", "allowed"),
        ("https://evil.example.com", "GET", "", False, "/", "origin_not_allowed"),
        ("https://app.example.com", "PATCH", "", False, "/", "method_not_allowed"),
        ("https://app.example.com", "put", "", False, "/", "method_not_allowed"),  # case-sensitive
        ("https://app.example.com", "GET", "x-secret", False, "/", "header_not_allowed"),
        ("https://app.example.com", "GET", "", True, "/", "private_network_not_allowed"),
        ("https://app.example.com", "GET", "", True, "/pna", "allowed"),
        ("https://app.example.com", "PROPFIND", "x-anything", False, "/open", "allowed"),
        ("https://app.example.com", "GET", "authorization", False, "/open", "header_not_allowed"),
        ("https://app.example.com", "GET", "authorization, x-any", False, "/open-auth", "allowed"),
        ("https://app.example.com", "PROPFIND", "authorization, x-any", False, "/open-creds", "allowed"),
        ("https://evil.example.com", "PROPFIND", "x-any", False, "/open-creds", "origin_not_allowed"),
        ("https://app.example.com/", "GET", "", False, "/", "invalid"),
        ("app.example.com", "GET", "", False, "/", "invalid"),
        ("https://app.example.com", "", "", False, "/", "invalid"),
        ("https://app.example.com", "GE T", "", False, "/", "invalid"),
        ("https://app.example.com", "GET", "x-a, x b", False, "/", "invalid"),
        ("https://evil.example.com", "GE T", "", False, "/", "invalid"),  # malformed beats policy
    ],
    ids=[
        "allowed-method",
        "allowed-headers-any-case",
        "empty-list-items-ignored",
        "null-origin-listed",
        "origin-not-allowed",
        "method-not-allowed",
        "method-case-sensitive",
        "header-not-allowed",
        "private-network-not-allowed",
        "private-network-on-pna-route",
        "star-methods-and-headers",
        "star-headers-exclude-authorization",
        "authorization-listed-beside-star",
        "star-with-credentials-covers-authorization",
        "star-with-credentials-still-checks-the-origin",
        "origin-trailing-slash-invalid",
        "origin-without-scheme-invalid",
        "empty-method-invalid",
        "method-not-a-token-invalid",
        "header-not-a-token-invalid",
        "malformed-beats-policy",
    ],
)
def test_decision_table(origin: str, method: str, headers: str, pna: bool, route: str, expected: str) -> None:
    decision = decide(POLICY.route_for(route), origin, method, headers, pna)
    if expected == "allowed":
        assert isinstance(decision, Allowed)
    elif expected == "invalid":
        assert isinstance(decision, Invalid)
    else:
        assert isinstance(decision, Violation)
        assert decision.error_type == expected


SAFELISTED_ONLY_PUT = make_policy(
    allow_origins=["https://app.example.com"], allow_methods=["PUT"], allow_headers=["x-custom"],
    routes=[{"path_prefix": "/none", "allow_methods": []}],
)  # fmt: skip


@pytest.mark.parametrize(
    ("origin", "method", "headers", "path", "expected"),
    [
        pytest.param("https://app.example.com", "GET", "x-custom", "/", "allowed", id="get-not-listed"),
        pytest.param("https://app.example.com", "HEAD", "", "/", "allowed", id="head-not-listed"),
        pytest.param("https://app.example.com", "POST", "x-custom", "/", "allowed", id="post-not-listed"),
        pytest.param("https://app.example.com", "POST", "", "/none", "allowed", id="post-empty-list"),
        pytest.param("https://app.example.com", "PUT", "", "/", "allowed", id="put-listed"),
        pytest.param("https://app.example.com", "DELETE", "", "/", "method_not_allowed", id="delete-not-listed"),
        pytest.param("https://app.example.com", "get", "", "/", "method_not_allowed", id="lower-case-get"),
        pytest.param("https://evil.example.com", "GET", "", "/", "origin_not_allowed", id="origin-still-checked"),
        pytest.param("https://app.example.com", "POST", "x-other", "/", "header_not_allowed", id="headers-still"),
        pytest.param("https://app.example.com", "PUT", "", "/none", "method_not_allowed", id="put-empty-list"),
    ],
)
def test_safelisted_methods_pass_the_method_check(origin: str, method: str, headers: str, path: str,
                                                  expected: str) -> None:  # fmt: skip
    """Issue 17 item 9: with allow_methods [PUT], a GET/POST preflight (custom headers) was refused."""
    decision = decide(SAFELISTED_ONLY_PUT.route_for(path), origin, method, headers, False)
    got = "allowed" if isinstance(decision, Allowed) else getattr(decision, "error_type", "invalid")
    assert got == expected


ANY_ORIGIN = make_policy(environment="development", allow_origins=["*"])


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        pytest.param(ANY_ORIGIN, "any origin (*)", id="star-covers-null"),
        pytest.param(make_policy(allow_origins=["https://a.example", "null"]), "exact null", id="listed"),
        pytest.param(make_policy(allow_origins=["https://a.example"]), None, id="not-listed"),
        pytest.param(make_policy(environment="dev", allow_origins=["https://*.example.com"]), None, id="wildcard"),
    ],
)
def test_null_origin(policy: Policy, expected: str | None) -> None:
    """Issue 17 item 9: with allow_origins ['*'], Origin: null (sandboxed iframes, file: pages) was refused."""
    decision = decide(policy.default, "null", "GET", "", False)
    assert (decision.rule if isinstance(decision, Allowed) else None) == expected


def test_every_refused_header_is_named() -> None:
    """Issue 17 item 10: `X-Foo, Content-Type, x-bar` named only x-bar."""
    decision = decide(DEFAULT, "https://app.example.com", "GET", "X-Foo, Content-Type, x-bar", False)
    assert isinstance(decision, Violation) and decision.error_type == "header_not_allowed"
    assert decision.refused == ("x-bar", "x-foo")
    assert decision.message == "Request headers x-bar, x-foo are not allowed"
    one = decide(DEFAULT, "https://app.example.com", "GET", "x-bar", False)
    assert isinstance(one, Violation) and one.message == "Request header x-bar is not allowed"


def test_order_origin_before_method_before_headers() -> None:
    d = decide(DEFAULT, "https://evil.com", "PATCH", "x-secret", True)
    assert isinstance(d, Violation) and d.error_type == "origin_not_allowed"
    d = decide(DEFAULT, "https://app.example.com", "PATCH", "x-secret", True)
    assert isinstance(d, Violation) and d.error_type == "method_not_allowed"
    assert d.rule == "exact https://app.example.com"


def test_allowed_carries_normalized_request_headers_and_rule() -> None:
    d = decide(DEFAULT, "https://app.example.com:443", "GET", "X-Request-Id,content-type", False)
    assert d == Allowed("exact https://app.example.com", "GET", ("content-type", "x-request-id"), False)


def assert_limit_fired(found: Invalid | None, header: str, limit: int) -> None:
    """``found`` is the refusal of ``header`` over ``limit`` bytes: it names both, so a log says which fired."""
    assert isinstance(found, Invalid), found
    assert found.message.startswith(f"{header} "), found.message
    assert re.search(rf"\b{limit} bytes\b", found.message), found.message


def test_size_limits() -> None:
    ok = b"https://app.example.com"
    assert check_sizes(ok, b"GET", b"content-type") is None
    assert_limit_fired(check_sizes(b"h" * (MAX_ORIGIN_BYTES + 1), b"GET", b""), "Origin", MAX_ORIGIN_BYTES)
    assert_limit_fired(check_sizes(ok, b"G" * (MAX_METHOD_BYTES + 1), b""), METHOD, MAX_METHOD_BYTES)
    assert_limit_fired(
        check_sizes(ok, b"GET", b"," * (MAX_REQUEST_HEADERS_BYTES + 1)), HEADERS, MAX_REQUEST_HEADERS_BYTES
    )
    assert check_sizes(ok, b"GET", b"," * MAX_REQUEST_HEADERS_BYTES) is None
    # each limit is inclusive: a value of exactly the limit passes
    assert check_sizes(b"h" * MAX_ORIGIN_BYTES, b"G" * MAX_METHOD_BYTES, b"," * MAX_REQUEST_HEADERS_BYTES) is None
    # several over at once: the first checked (Origin, then the method) is the one named
    too_long = (b"h" * (MAX_ORIGIN_BYTES + 1), b"G" * (MAX_METHOD_BYTES + 1), b"," * (MAX_REQUEST_HEADERS_BYTES + 1))
    assert_limit_fired(check_sizes(*too_long), "Origin", MAX_ORIGIN_BYTES)
    assert_limit_fired(check_sizes(ok, *too_long[1:]), METHOD, MAX_METHOD_BYTES)
