"""Every row of the design's Responses table, over real HTTP against `cors-handler serve`."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import Server

pytestmark = pytest.mark.e2e

POLICY = {
    "environment": "production",
    "allow_origins": ["https://app.example.com", "https://*.example.org"],
    "allow_methods": ["GET", "POST", "PUT", "DELETE"],
    "allow_headers": ["content-type", "x-request-id", "authorization"],
    "max_age": 600,
    "rate_limit": {"enabled": False},
    "routes": [
        {"name": "v2", "path_prefix": "/api/v2", "allow_origins": ["https://v2.example.net"],
         "allow_private_network": True},
        {"name": "legacy", "path_prefix": "/legacy", "enabled": False},
    ],
}  # fmt: skip
CORS_ALLOW = "access-control-allow-"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, server_mode: str) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp("table")), POLICY, {}, [])
    yield srv
    srv.stop()
    assert "Traceback" not in srv.logs()


def test_allowed_preflight(server: Server) -> None:
    r = server.preflight("https://app.example.com", "PUT", "Content-Type, X-Request-Id")
    assert r.status == 204
    assert r.body == b""
    assert r.headers["access-control-allow-origin"] == "https://app.example.com"
    assert r.headers["access-control-allow-methods"] == "GET, POST, PUT, DELETE"
    assert r.headers["access-control-allow-headers"] == "content-type, x-request-id, authorization"
    assert r.headers["access-control-max-age"] == "600"
    assert r.headers["vary"] == "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
    assert r.headers["x-cors-preflight"] == "enhanced-handler"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert r.headers["cache-control"] == "public, max-age=600"
    assert "access-control-allow-credentials" not in r.headers
    assert "content-length" not in r.headers and "transfer-encoding" not in r.headers  # a 204 has neither


def test_origin_echoed_as_received_and_wildcard_subdomains(server: Server) -> None:
    r = server.preflight("https://app.example.com:443", "GET")
    assert r.status == 204
    assert r.headers["access-control-allow-origin"] == "https://app.example.com:443"
    # Fetch's grammar (whatwg/fetch 301650c): no browser sends an upper-case origin; it is malformed
    r = server.preflight("https://App.Example.com", "GET")
    assert r.status == 400 and r.json()["error_type"] == "invalid_preflight"
    assert not any(name.startswith("access-control-allow") for name in r.headers)
    assert server.preflight("https://a.b.example.org", "GET").status == 204
    for origin in ("https://example.org", "https://evilexample.org", "http://a.example.org"):
        assert server.preflight(origin, "GET").status == 403, origin


@pytest.mark.parametrize(
    ("origin", "method", "headers", "extra", "path", "error_type"),
    [
        ("https://evil.com", "GET", None, {}, "/api/items", "origin_not_allowed"),
        ("https://app.example.com", "PATCH", None, {}, "/api/items", "method_not_allowed"),
        ("https://app.example.com", "GET", "x-secret", {}, "/api/items", "header_not_allowed"),
        ("https://app.example.com", "GET", None, {"Access-Control-Request-Private-Network": "true"}, "/api/items",
         "private_network_not_allowed"),
        ("https://app.example.com", "GET", None, {}, "/api/v2/items", "origin_not_allowed"),  # route override
    ],
    ids=[
        "origin-not-allowed", "method-not-allowed", "header-not-allowed", "private-network-not-allowed",
        "route-override-refuses-origin",
    ],
)  # fmt: skip
def test_rejected_preflight(server: Server, origin: str, method: str, headers: str | None,
                            extra: dict[str, str], path: str, error_type: str) -> None:  # fmt: skip
    r = server.preflight(origin, method, headers, path=path, extra=extra)
    assert r.status == 403
    assert r.json()["error_type"] == error_type
    assert isinstance(r.json()["message"], str)
    assert "allowed" not in r.json()  # debug is off
    assert not any(name.startswith(CORS_ALLOW) for name in r.headers)
    assert r.headers["vary"].startswith("Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
    assert r.headers["content-type"] == "application/json"


def test_private_network_allowed_on_route(server: Server) -> None:
    r = server.preflight("https://v2.example.net", "GET", path="/api/v2/x",
                         extra={"Access-Control-Request-Private-Network": "true"})  # fmt: skip
    assert r.status == 204
    assert r.headers["access-control-allow-private-network"] == "true"
    assert r.headers["vary"].endswith(", Access-Control-Request-Private-Network")


@pytest.mark.parametrize(
    "headers",
    [
        [("Origin", "https://app.example.com/"), ("Access-Control-Request-Method", "GET")],
        [("Origin", "app.example.com"), ("Access-Control-Request-Method", "GET")],
        [("Origin", "https://app.example.com"), ("Access-Control-Request-Method", "")],
        [("Origin", "https://app.example.com"), ("Access-Control-Request-Method", "GE T")],
        [("Origin", "https://app.example.com"), ("Access-Control-Request-Method", "GET"),
         ("Access-Control-Request-Headers", "x-ok, bad header")],
        [("Origin", "https://" + "a" * 520 + ".com"), ("Access-Control-Request-Method", "GET")],
        [("Origin", "https://app.example.com"), ("Access-Control-Request-Method", "GET"),
         ("Access-Control-Request-Headers", "," * 5000)],
        [("Origin", "https://app.example.com"), ("Origin", "https://evil.com"),
         ("Access-Control-Request-Method", "GET")],
    ],
    ids=["trailing-slash", "no-scheme", "empty-method", "non-token-method", "bad-header-name", "long-origin",
         "long-request-headers", "duplicate-origin"],
)  # fmt: skip
def test_malformed_preflight(server: Server, headers: list[tuple[str, str]]) -> None:
    r = server.request("OPTIONS", "/api/items", headers)
    assert r.status == 400
    assert r.json()["error_type"] == "invalid_preflight"
    assert not any(name.startswith(CORS_ALLOW) for name in r.headers)
    assert server.request("GET", "/health").status == 200


def test_request_headers_spread_over_several_lines_are_joined(server: Server) -> None:
    r = server.request("OPTIONS", "/api/items", [
        ("Origin", "https://app.example.com"), ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "content-type"), ("Access-Control-Request-Headers", "X-Request-Id"),
    ])  # fmt: skip
    assert r.status == 204
    r = server.request("OPTIONS", "/api/items", [
        ("Origin", "https://app.example.com"), ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "content-type"), ("Access-Control-Request-Headers", "x-secret"),
    ])  # fmt: skip
    assert r.status == 403
    assert r.json()["error_type"] == "header_not_allowed"


@pytest.mark.parametrize(
    ("path", "headers", "allow"),
    [
        ("/api/items", {}, "OPTIONS"),
        ("/api/items", {"Origin": "https://app.example.com"}, "OPTIONS"),
        ("/api/items", {"Access-Control-Request-Method": "GET"}, "OPTIONS"),
        ("/health", {}, "GET, HEAD, OPTIONS"),
    ],
    ids=["no-cors-headers", "origin-only", "method-only", "health"],
)
def test_options_that_is_not_a_preflight(server: Server, path: str, headers: dict[str, str], allow: str) -> None:
    r = server.request("OPTIONS", path, headers)
    assert r.status == 204
    assert r.headers["allow"] == allow
    assert not any(name.startswith("access-control-") for name in r.headers)
    assert "x-cors-preflight" not in r.headers


def test_preflight_on_an_internal_path_is_still_a_preflight(server: Server) -> None:
    assert server.preflight("https://app.example.com", "GET", path="/health").status == 204


def test_disabled_route(server: Server) -> None:
    r = server.preflight("https://app.example.com", "GET", path="/legacy/thing")
    assert r.status == 404
    assert r.json()["error_type"] == "route_disabled"
    assert server.preflight("https://app.example.com", "GET", path="/legacyx").status == 204  # segment boundary


def test_health(server: Server) -> None:
    r = server.request("GET", "/health")
    assert r.status == 200
    assert r.json() == {"status": "ok"}
    head = server.request("HEAD", "/health")
    assert head.status == 200
    assert head.body == b""


def test_ready(server: Server) -> None:
    r = server.request("GET", "/ready")
    assert r.status == 200
    assert r.json()["status"] == "ready"


def test_metrics_prometheus_and_openmetrics(server: Server) -> None:
    r = server.request("GET", "/metrics")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert b"cors_preflight_requests_total" in r.body
    om = server.request("GET", "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.body.rstrip().endswith(b"# EOF")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [("POST", "/health", "GET, HEAD"), ("DELETE", "/metrics", "GET, HEAD"), ("PUT", "/ready", "GET, HEAD"),
     ("GET", "/api/items", "OPTIONS"), ("POST", "/", "OPTIONS")],
    ids=["post-health", "delete-metrics", "put-ready", "get-preflight-path", "post-root"],
)  # fmt: skip
def test_other_methods(server: Server, method: str, path: str, allow: str) -> None:
    r = server.request(method, path, body=b"" if method in ("POST", "PUT") else None)
    assert r.status == 405
    assert r.headers["allow"] == allow
    assert r.json()["error_type"] == "http_method_not_allowed"  # not the CORS refusal method_not_allowed


def test_metrics_count_what_was_sent(server: Server) -> None:
    before = server.metrics()
    server.preflight("https://app.example.com", "GET")
    server.preflight("https://evil.com", "GET")
    server.preflight("https://evil.com", "GET")
    server.request("OPTIONS", "/api/items")
    after = server.metrics()

    def delta(key: str) -> float:
        return after.get(key, 0) - before.get(key, 0)

    assert delta('cors_preflight_requests_total{result="allowed",route="default"}') == 1
    assert delta('cors_preflight_requests_total{result="rejected",route="default"}') == 2
    assert delta('cors_preflight_rejections_total{reason="origin_not_allowed",route="default"}') == 2
    assert delta('cors_preflight_requests_total{result="not_preflight",route="default"}') == 1
    assert delta("cors_request_duration_seconds_count") == 4
    assert delta("cors_response_cache_hits_total") >= 1
