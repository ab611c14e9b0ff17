"""What a first install behind real Traefik needs: TLS on the routes, and the client address behind a load balancer.

- ``traefik.tls`` renders the IngressRoutes' ``spec.tls``; real Traefik, configured from them
  (the Secret's certificate as files), answers preflights over HTTPS with that certificate,
  and only over HTTPS.
- Behind a load balancer, Traefik's TCP peer is the load balancer: both rate limits must read
  the client from X-Forwarded-For, the edge at ``traefik.rateLimit.depth`` N and the service
  at N + 1 (Traefik appends its peer). Real Traefik trusting the "load balancer" (127.0.0.1,
  as tests/deploy/traefik.py configures its entry points) keeps its X-Forwarded-For; with the
  chart's pair, two clients behind it have a bucket each at each layer; the chart refuses
  pairs that do not agree.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..conftest import Server
from .chart import RELEASE, environment_values, helm, objects, one, render
from .stack import metric
from .tools import node_validator
from .traefik import Backend, Traefik, start_traefik

APP = "https://app.example.com"  # in values-production.yaml
HOST = "api.pvpipe.test"
SECRET = "api-pvpipe-test-tls"
BURST = 5


def https_preflight(port: int, cafile: Path) -> tuple[int, dict[str, str]]:
    """A preflight over TLS to 127.0.0.1:port, SNI and Host ``HOST``, verified against ``cafile`` only."""
    context = ssl.create_default_context(cafile=str(cafile))
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=HOST) as tls:
        request = (f"OPTIONS /api/items HTTP/1.1\r\nHost: {HOST}\r\nOrigin: {APP}\r\n"
                   "Access-Control-Request-Method: PUT\r\nConnection: close\r\n\r\n")  # fmt: skip
        tls.sendall(request.encode())
        response = http.client.HTTPResponse(tls)  # type: ignore[arg-type]
        response.begin()
        return response.status, {k.lower(): v for k, v in response.getheaders()}


@pytest.mark.e2e
def test_traefik_tls_values_serve_preflights_over_https_with_the_secrets_certificate(tmp_path: Path) -> None:
    crt, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={HOST}",
         "-addext", f"subjectAltName=DNS:{HOST}", "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    values = {"traefik": {"host": HOST, "tls": {"secretName": SECRET}}, "policy": {"rate_limit": {"enabled": False}}}
    docs = objects(environment_values("production", values))
    route = one(docs, "IngressRoute", RELEASE)
    assert route["spec"]["tls"] == {"secretName": SECRET}
    done = subprocess.run(node_validator(), input=json.dumps([route]), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and json.loads(done.stdout)[0]["error"] is None, done.stdout + done.stderr  # the CRD

    policy = yaml.safe_load(one(docs, "ConfigMap", RELEASE)["data"]["policy.yaml"])
    handler, backend = Server(tmp_path, policy, {}, []), Backend()
    proxy = start_traefik(tmp_path, docs, {RELEASE: f"http://127.0.0.1:{handler.port}", "api": backend.url},
                          {SECRET: {"tls.crt": str(crt), "tls.key": str(key)}})  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while True:  # until the file provider has loaded the routers (404 before)
            try:
                status, headers = https_preflight(proxy.port, crt)
            except (OSError, ssl.SSLError):
                status, headers = 0, {}
            if status not in (0, 404) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status == 204, (status, proxy.log_path.read_text())
        assert headers["access-control-allow-origin"] == APP
        assert headers["x-cors-preflight"] == "enhanced-handler"
        plain = proxy.request("OPTIONS", "/api/items", {"Origin": APP, "Access-Control-Request-Method": "PUT"})
        assert plain[0] == 404  # the route is TLS only
    finally:
        proxy.stop()
        backend.stop()
        handler.stop()


def limited_through(proxy: Traefik, client: str) -> list[int]:
    """BURST + 1 preflights from ``client`` behind the load balancer (its X-Forwarded-For)."""
    headers = {"Origin": APP, "Access-Control-Request-Method": "PUT", "X-Forwarded-For": client}
    return [proxy.request("OPTIONS", "/api/items", headers)[0] for _ in range(BURST + 1)]


@pytest.mark.e2e
@pytest.mark.parametrize("layer", ["edge", "service"])
def test_behind_a_load_balancer_each_limit_keeps_a_bucket_per_client(layer: str, tmp_path: Path) -> None:
    """One proxy in front of Traefik: edge depth 1, service depth 2; ``layer`` has the small burst."""
    edge_burst, service_burst = (BURST, 1000) if layer == "edge" else (1000, BURST)
    values = {
        "policy": {"rate_limit": {"average": 1, "period": 60, "burst": service_burst, "depth": 2}},
        "traefik": {"rateLimit": {"average": 1, "period": "1m", "burst": edge_burst, "depth": 1}},
    }
    routing = {"traefik": {"host": HOST, "backendRoutes": {"enabled": True}}}  # a GET route for wait_routing
    docs = objects(environment_values("production", values, routing))
    policy = yaml.safe_load(one(docs, "ConfigMap", RELEASE)["data"]["policy.yaml"])
    handler, backend = Server(tmp_path, policy, {}, []), Backend()
    proxy = start_traefik(tmp_path, docs, {RELEASE: f"http://127.0.0.1:{handler.port}", "api": backend.url})
    try:
        proxy.wait_routing("/")
        assert limited_through(proxy, "203.0.113.10") == [204] * BURST + [429]
        assert limited_through(proxy, "203.0.113.11") == [204] * BURST + [429]  # another client: its own bucket
        limited = metric(handler.metrics(), "cors_preflight_requests_total", result="rate_limited")
        assert limited == (2 if layer == "service" else 0)  # the layer with the small burst answered the 429s
    finally:
        proxy.stop()
        backend.stop()
        handler.stop()


@pytest.mark.parametrize(("edge", "service"), [(0, 0), (0, 2), (1, 1), (2, 1)], ids=["0-0", "0-2", "1-1", "2-1"])
def test_the_chart_refuses_limits_that_read_different_clients(edge: int, service: int) -> None:
    values = {"traefik": {"rateLimit": {"depth": edge}}, "policy": {"rate_limit": {"depth": service}}}
    with pytest.raises(helm.HelmRenderError, match=re.escape(f"set policy.rate_limit.depth to {edge + 1}")):
        objects(environment_values("production", values))


def test_exempt_clients_need_the_same_address_in_the_service_and_the_tcp_peer(tmp_path: Path) -> None:
    exempt = {"traefik": {"rateLimit": {"exemptClients": ["203.0.113.7/32"]}}}
    with pytest.raises(helm.HelmRenderError, match=re.escape("not in policy.rate_limit.excluded_ips")):
        objects(environment_values("production", exempt))
    both: dict[str, Any] = {**exempt, "policy": {"rate_limit": {"excluded_ips": ["203.0.113.7/32"]}}}
    behind = {"traefik": {"rateLimit": {"depth": 1}}, "policy": {"rate_limit": {"depth": 2}}}
    with pytest.raises(helm.HelmRenderError, match=re.escape("exemptClients needs traefik.rateLimit.depth 0")):
        objects(environment_values("production", both, behind))
    routes = one(objects(environment_values("production", both)), "IngressRoute", RELEASE)["spec"]["routes"]
    assert [r["priority"] for r in routes] == [150, 151]
    assert routes[1]["match"] == routes[0]["match"] + " && (ClientIP(`203.0.113.7/32`))"
    assert f"{RELEASE}-ratelimit" not in [m["name"] for m in routes[1]["middlewares"]]
    notes = render(environment_values("production", both))["cors-handler/templates/NOTES.txt"]
    assert "203.0.113.7/32 skip the edge rate limit" in notes  # the release says so, every upgrade
    assert (
        "skip the edge rate limit" not in render(environment_values("production"))["cors-handler/templates/NOTES.txt"]
    )
    wide = {"traefik": {"rateLimit": {"exemptClients": ["203.0.113.0/24"]}},
            "policy": {"rate_limit": {"excluded_ips": ["203.0.113.0/24"]}}}  # fmt: skip
    with pytest.raises(helm.HelmValuesError, match="exemptClients"):
        objects(environment_values("production", wide))  # production: single addresses only
    objects(environment_values("staging", wide))


DEPLOYMENT = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"


def test_the_deployment_page_says_where_to_get_helm_and_which_helm_the_suite_renders_with() -> None:
    text = DEPLOYMENT.read_text()
    assert "https://helm.sh/docs/intro/install/" in text
    assert f"Helm {helm.helm_sdk_version()}" in text  # the engine helm-python-sdk wraps: what is tested


def test_the_deployment_page_says_cross_namespace_middlewares_need_allow_cross_namespace() -> None:
    """Attaching the release's `<release>-cors-<route>` middlewares to another namespace's IngressRoute."""
    text = DEPLOYMENT.read_text()
    assert "attach the `<release>-cors-<route>` middlewares" in text
    assert "--providers.kubernetescrd.allowCrossNamespace=true" in text
    assert "providers.kubernetesCRD.allowCrossNamespace: true" in text
