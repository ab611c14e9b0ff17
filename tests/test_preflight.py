import pytest

from cors_handler.preflight import (
    MAX_ORIGIN_BYTES,
    MAX_REQUEST_HEADERS_BYTES,
    Allowed,
    Invalid,
    Violation,
    check_sizes,
    decide,
)

from .conftest import make_policy

POLICY = make_policy(
    allow_origins=["https://app.example.com", "null"],
    allow_methods=["GET", "POST", "PUT", "DELETE"],
    allow_headers=["content-type", "x-request-id", "authorization"],
    routes=[
        {"name": "pna", "path_prefix": "/pna", "allow_private_network": True},
        {"name": "open", "path_prefix": "/open", "allow_methods": ["*"], "allow_headers": ["*"]},
        {"name": "open-auth", "path_prefix": "/open-auth", "allow_headers": ["*", "authorization"]},
    ],
)
DEFAULT = POLICY.default


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
        ("https://app.example.com/", "GET", "", False, "/", "invalid"),
        ("app.example.com", "GET", "", False, "/", "invalid"),
        ("https://app.example.com", "", "", False, "/", "invalid"),
        ("https://app.example.com", "GE T", "", False, "/", "invalid"),
        ("https://app.example.com", "GET", "x-a, x b", False, "/", "invalid"),
        ("https://evil.example.com", "GE T", "", False, "/", "invalid"),  # malformed beats policy
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


def test_order_origin_before_method_before_headers() -> None:
    d = decide(DEFAULT, "https://evil.com", "PATCH", "x-secret", True)
    assert isinstance(d, Violation) and d.error_type == "origin_not_allowed"
    d = decide(DEFAULT, "https://app.example.com", "PATCH", "x-secret", True)
    assert isinstance(d, Violation) and d.error_type == "method_not_allowed"
    assert d.rule == "exact https://app.example.com"


def test_allowed_carries_normalized_request_headers_and_rule() -> None:
    d = decide(DEFAULT, "https://APP.example.com:443", "GET", "X-Request-Id,content-type", False)
    assert d == Allowed("exact https://app.example.com", "GET", ("content-type", "x-request-id"), False)


def test_size_limits() -> None:
    ok = b"https://app.example.com"
    assert check_sizes(ok, b"GET", b"content-type") is None
    assert check_sizes(b"h" * (MAX_ORIGIN_BYTES + 1), b"GET", b"") is not None
    assert check_sizes(ok, b"G" * 65, b"") is not None
    assert check_sizes(ok, b"GET", b"," * (MAX_REQUEST_HEADERS_BYTES + 1)) is not None
    assert check_sizes(ok, b"GET", b"," * MAX_REQUEST_HEADERS_BYTES) is None
