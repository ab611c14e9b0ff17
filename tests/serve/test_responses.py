import orjson
import pytest

from cors_handler.cors.decide import Allowed, Violation
from cors_handler.serve.responses import (
    VARY,
    allowed,
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
