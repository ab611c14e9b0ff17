"""Real Traefik, configured from the rendered chart, in front of a real cors-handler and a stand-in API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..conftest import Server
from .chart import RELEASE, environment_values, objects, one
from .stack import start_stack
from .traefik import Backend, Traefik, traefik_for

pytestmark = pytest.mark.e2e  # renders with the Helm engine and starts processes

APP = "https://app.example.com"  # in values-production.yaml
PARTNER = "https://partner.example.net"
OVERRIDES: dict[str, Any] = {
    "policy": {
        "rate_limit": {"enabled": False},  # isolate the edge limit
        "routes": [{"name": "v2", "path_prefix": "/api/v2", "allow_origins": [PARTNER], "allow_credentials": True}],
    },
    "traefik": {
        "backendRoutes": {"enabled": True},
        "rateLimit": {"average": 60, "period": "1m", "burst": 5, "depth": 1},
    },
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Traefik, Backend, Server]]:
    workdir = Path(tmp_path_factory.mktemp("traefik"))
    docs = objects(environment_values("production", OVERRIDES))
    policy = yaml.safe_load(one(docs, "ConfigMap", RELEASE)["data"]["policy.yaml"])  # exactly what the pods run
    handler = Server(workdir, policy, {}, [])
    backend = Backend()
    urls = {RELEASE: f"http://127.0.0.1:{handler.port}", "api": backend.url}
    with traefik_for(workdir, docs, urls) as proxy:
        proxy.wait_routing("/")
        yield proxy, backend, handler
    backend.stop()
    handler.stop()
    assert "Traceback" not in handler.logs()


client_counter = iter(range(1, 10_000))


def preflight(origin: str, method: str = "PUT", path: str = "/api/items", client: str | None = None) -> dict[str, str]:
    """Preflight headers from a fresh client address (so the edge limit does not interfere)."""
    return {"Origin": origin, "Access-Control-Request-Method": method,
            "X-Forwarded-For": client or f"198.51.100.{next(client_counter) % 250 + 1}"}  # fmt: skip


def test_preflight_is_answered_by_cors_handler_and_never_reaches_the_backend(stack: Any) -> None:
    proxy, backend, _ = stack
    backend.seen.clear()
    status, headers, _ = proxy.request("OPTIONS", "/api/items", preflight(APP))
    assert status == 204
    assert headers["x-cors-preflight"] == "enhanced-handler"
    assert headers["access-control-allow-origin"] == APP
    status, headers, _ = proxy.request("OPTIONS", "/api/items", preflight("https://evil.example.com"))
    assert status == 403 and headers["x-cors-preflight"] == "enhanced-handler"
    assert "access-control-allow-origin" not in headers
    assert backend.seen == []


def test_actual_requests_reach_the_backend_with_cors_headers_from_the_same_policy(stack: Any) -> None:
    proxy, backend, _ = stack
    backend.seen.clear()
    status, headers, body = proxy.request("GET", "/api/items", {"Origin": APP})
    assert status == 200 and b'"backend": true' in body
    assert headers["access-control-allow-origin"] == APP
    assert "Origin" in headers["vary"]
    assert headers["access-control-expose-headers"].lower() == "x-request-id"
    status, headers, _ = proxy.request("GET", "/api/items", {"Origin": "https://evil.example.com"})
    assert status == 200 and "access-control-allow-origin" not in headers
    assert [(method, path) for method, path, _ in backend.seen] == [("GET", "/api/items"), ("GET", "/api/items")]


def test_options_without_request_method_goes_to_the_backend(stack: Any) -> None:
    proxy, backend, _ = stack
    backend.seen.clear()
    status, headers, body = proxy.request("OPTIONS", "/api/items", {"Origin": APP})
    assert status == 200 and b'"method": "OPTIONS"' in body
    assert "x-cors-preflight" not in headers
    assert [(method, path) for method, path, _ in backend.seen] == [("OPTIONS", "/api/items")]


def test_method_override_headers_are_stripped(stack: Any) -> None:
    proxy, backend, _ = stack
    backend.seen.clear()
    overrides = {"X-HTTP-Method-Override": "DELETE", "X-HTTP-Method": "DELETE", "X-Method-Override": "DELETE"}
    status, _, _ = proxy.request("POST", "/api/items", {"Origin": APP, **overrides})
    assert status == 200
    [(_, _, received)] = backend.seen
    assert not {"x-http-method-override", "x-http-method", "x-method-override"} & set(received)


def test_per_route_policy_applies_to_preflights_and_actual_responses_alike(stack: Any) -> None:
    proxy, _, _ = stack
    assert proxy.request("OPTIONS", "/api/v2/orders", preflight(PARTNER))[0] == 204
    assert proxy.request("OPTIONS", "/api/items", preflight(PARTNER))[0] == 403
    assert proxy.request("OPTIONS", "/api/v20", preflight(PARTNER))[0] == 403  # segment boundary
    _, headers, _ = proxy.request("GET", "/api/v2/orders", {"Origin": PARTNER})
    assert headers["access-control-allow-origin"] == PARTNER
    assert headers["access-control-allow-credentials"] == "true"
    for path in ("/api/items", "/api/v20"):
        _, headers, _ = proxy.request("GET", path, {"Origin": PARTNER})
        assert "access-control-allow-origin" not in headers, path


def test_edge_rate_limit_answers_429_after_the_burst_per_client(stack: Any) -> None:
    proxy, _, _ = stack
    statuses = [proxy.request("OPTIONS", "/api/items", preflight(APP, client="203.0.113.7"))[0] for _ in range(8)]
    assert statuses[:5] == [204] * 5, statuses
    assert 429 in statuses[5:], statuses
    status, headers, _ = proxy.request("OPTIONS", "/api/items", preflight(APP, client="203.0.113.7"))
    assert status == 429 and "x-cors-preflight" not in headers  # Traefik answered, cors-handler never saw it
    assert proxy.request("OPTIONS", "/api/items", preflight(APP, client="203.0.113.8"))[0] == 204


def test_canary_splits_preflights_between_cors_handler_and_the_backend(tmp_path: Path) -> None:
    docs = objects(
        environment_values("production", OVERRIDES, {"traefik": {"canary": {"enabled": True, "weight": 50}}})
    )
    policy = yaml.safe_load(one(docs, "ConfigMap", RELEASE)["data"]["policy.yaml"])
    handler, backend = Server(tmp_path, policy, {}, []), Backend()
    try:
        with traefik_for(tmp_path, docs, {RELEASE: f"http://127.0.0.1:{handler.port}", "api": backend.url}) as proxy:
            proxy.wait_routing("/")
            answered = [
                proxy.request("OPTIONS", "/api/items", preflight(APP))[1].get("x-cors-preflight") for _ in range(40)
            ]
    finally:
        backend.stop()
        handler.stop()
    by_handler = answered.count("enhanced-handler")
    assert 10 <= by_handler <= 30, by_handler  # weighted round robin: about half each
    assert len([s for s in backend.seen if s[0] == "OPTIONS"]) == 40 - by_handler


SAMPLE = [APP, APP.upper(), "https://App.Example.Com", "https://app.example.com:443", "https://app.example.com:0443",
          "https://app.example.com:00443", "https://app.example.com:000443", "https://app.example.com:8443",
          "http://app.example.com", "wss://app.example.com", "https://x.app.example.com", "https://app.example.com.",
          "https://app.example.com.evil.net", "https://evilapp.example.com", "https://admin.example.com",
          PARTNER, "https://PARTNER.EXAMPLE.NET", "https://partner.example.net:443", "https://partner.example.net:444",
          "https://caf\xe9.example.com", "null", "https://app.example.com/", "https://u@app.example.com"]  # fmt: skip


def test_real_traefik_and_the_real_service_agree_on_a_sample_of_origins(stack: Any) -> None:
    """The preflight (cors-handler behind Traefik) and the actual response (Traefik's headers middleware) agree."""
    proxy, _, _ = stack
    answers = set()
    for path in ("/api/items", "/api/v2/orders"):
        for origin in SAMPLE:
            status, _, _ = proxy.request("OPTIONS", path, preflight(origin, "GET"))
            _, headers, _ = proxy.request("GET", path, {"Origin": origin})
            actual = headers.get("access-control-allow-origin")
            assert actual in (None, origin), (path, origin, actual)
            assert (status == 204) == (actual == origin), (path, origin, status, actual)
            answers.add(status == 204)
    assert answers == {True, False}


DEVELOPMENT_SAMPLE = ["http://localhost:3000", "http://LOCALHOST:3000", "https://localhost", "http://localhost.:3000",
                      "http://127.0.0.1:5173", "http://127.0.0.01:5173", "http://[::1]:8080", "http://[0:0:0:0:0:0:0:1]",
                      "http://[::0.0.0.1]:1", "http://[::2]:8080", "http://192.168.1.20:8080", "http://192.168.2.20",
                      "http://192.168.1.256", "https://a.dev.example.com", "https://dev.example.com",
                      "ws://localhost:3000", "http://localhost:65536"]  # fmt: skip


def test_real_traefik_and_the_real_service_agree_on_development_origins(tmp_path: Path) -> None:
    """Development mode's loopback and private-network origins, through real Traefik and the real service."""
    stack = start_stack(tmp_path, "development", {"traefik": {"rateLimit": {"enabled": False}}})
    try:
        answers = set()
        for origin in DEVELOPMENT_SAMPLE:
            headers = {"Origin": origin, "Access-Control-Request-Method": "GET"}
            status, _, _ = stack.proxy.request("OPTIONS", "/api/items", headers)
            _, actual, _ = stack.proxy.request("GET", "/api/items", {"Origin": origin})
            allowed = actual.get("access-control-allow-origin")
            assert allowed in (None, origin), (origin, allowed)
            assert (status == 204) == (allowed == origin), (origin, status, allowed)
            answers.add(status == 204)
        assert answers == {True, False}
    finally:
        stack.stop()
