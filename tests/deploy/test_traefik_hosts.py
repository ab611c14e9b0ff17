"""Many hosts, many teams, one release: real Traefik configured from the rendered chart in front of the service
reading the teams' files from the routes directory the chart mounts.

Three team files (the ConfigMaps the teams own, projected into the routes directory as the kubelet lays
it out; two in our route format, one a Gateway API HTTPRoute with a CORS filter) serve an exact host, two
hosts under one ``*.`` wildcard and a third host, beside the main policy's host-agnostic default. Every
route allows an origin no other route allows, so each answer shows which route gave it: every (host, path,
origin) case must be answered by the route the contract selects, through Traefik's Host rule as the chart
renders it. `cors-handler verify` (and the `helm test` pod) must agree on every host.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..conftest import Server, run_cli
from .chart import RELEASE, environment_values, objects, one
from .pod import local_pod, service_url, swap_projection, write_volume
from .stack import metric
from .traefik import Backend, Traefik, dynamic_config

pytestmark = pytest.mark.e2e  # starts traefik and cors-handler

APP = "https://app.example.com"  # the main policy's default route (values-production.yaml)
TEAM_FILES: dict[str, dict[str, Any]] = {  # ConfigMap -> its routes file, as each team writes it
    "orders-cors": {"routes": [
        {"path_prefix": "/", "allow_origins": ["https://orders.example.net"]},
        {"name": "orders-admin", "path_prefix": "/admin", "allow_origins": ["https://orders-admin.example.net"]},
    ]},
    "shops-cors": {"routes": [
        {"name": "shops", "path_prefix": "/", "allow_origins": ["https://shop.example.net"]},
        {"name": "eu-checkout", "hosts": ["eu.shops.acme.test"], "path_prefix": "/checkout",
         "allow_origins": ["https://pay.example.net"]},
    ]},
    # the reports team writes a Gateway API HTTPRoute with a CORS filter (no hostnames: its source's)
    "reports-cors": {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                     "metadata": {"name": "reports", "namespace": "reports"},
                     "spec": {"parentRefs": [{"name": "public"}], "rules": [{
                         "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
                         "filters": [{"type": "CORS", "cors": {"allowOrigins": ["https://reports.example.net"],
                                                               "allowMethods": ["GET", "PUT"]}}],
                         "backendRefs": [{"name": "reports", "port": 80}]}]}},
}  # fmt: skip
REPORTS = "reports/reports/rules[0]"  # the route an HTTPRoute rule becomes: namespace/name/rules[index]
VALUES = {
    "traefik": {"host": "127.0.0.1", "hosts": ["api.example.com"], "backendRoutes": {"enabled": True}},
    "routeSources": [
        {"name": "orders", "configMap": "orders-cors", "hosts": ["orders.acme.test"]},
        {"name": "shops", "configMap": "shops-cors", "hosts": ["*.shops.acme.test"]},
        {"name": "reports", "configMap": "reports-cors", "hosts": ["reports.acme.test"]},
    ],
}
MARKERS = [APP, "https://orders.example.net", "https://orders-admin.example.net", "https://shop.example.net",
           "https://pay.example.net", "https://reports.example.net"]  # fmt: skip
# (Host header, path) -> the origin of the route that must answer
CASES = [
    pytest.param("api.example.com", "/api/items", APP, id="main-host-default"),
    pytest.param("orders.acme.test", "/", "https://orders.example.net", id="exact-host-root"),
    pytest.param("orders.acme.test", "/admin/users", "https://orders-admin.example.net", id="exact-host-longer-prefix"),
    pytest.param("orders.acme.test", "/administrator", "https://orders.example.net", id="exact-host-segment-boundary"),
    pytest.param("ORDERS.Acme.TEST", "/admin", "https://orders-admin.example.net", id="exact-host-upper-case"),
    pytest.param("eu.shops.acme.test", "/cart", "https://shop.example.net", id="wildcard-first-host"),
    pytest.param("us.shops.acme.test", "/cart", "https://shop.example.net", id="wildcard-second-host"),
    pytest.param("eu.shops.acme.test", "/checkout/pay", "https://pay.example.net", id="wildcard-host-own-route"),
    pytest.param("us.shops.acme.test", "/checkout/pay", "https://shop.example.net", id="other-wildcard-host-not-it"),
    pytest.param("a.us.shops.acme.test", "/cart", "https://shop.example.net", id="wildcard-two-labels-deep"),
    pytest.param("reports.acme.test", "/v1/daily", "https://reports.example.net", id="third-host"),
    pytest.param("reports.acme.test", "/v2", APP, id="third-host-uncovered-path-default"),
]


def team_config_maps(only: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """The ConfigMaps the teams apply in the release's namespace (``only``: just those)."""
    return [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
             "data": {"routes.yaml": yaml.safe_dump(routes)}}
            for name, routes in TEAM_FILES.items() if only is None or name in only]  # fmt: skip


@dataclass
class Deployment:
    docs: list[dict[str, Any]]  # the rendered chart and the teams' ConfigMaps
    handler: Server
    proxy: Traefik
    backend: Backend
    routes_dir: Path

    def preflight(self, host: str, path: str, origin: str, method: str = "PUT") -> tuple[int, dict[str, str]]:
        headers = {"Host": f"{host}:{self.proxy.port}", "Origin": origin, "Access-Control-Request-Method": method}
        status, response, _ = self.proxy.request("OPTIONS", path, headers)
        return status, response


def deploy(workdir: Path, teams: list[dict[str, Any]]) -> Deployment:
    """The release as the cluster runs it: its pods' routes directory written from the projected volume."""
    rendered = objects(environment_values("production", VALUES))
    docs = [*rendered, *teams]
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "routes"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "routes"]
    routes_dir = workdir / "routes"
    write_volume(volume, docs, routes_dir)
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"CORS_ROUTES_DIR": mount["mountPath"]}
    policy = yaml.safe_load(one(rendered, "ConfigMap", RELEASE)["data"]["policy.yaml"])
    handler = Server(workdir, policy, {"CORS_ROUTES_DIR": str(routes_dir)}, [])
    backend = Backend()
    entry_points = sorted({ep for d in rendered if d["kind"] == "IngressRoute" for ep in d["spec"]["entryPoints"]})
    urls = {RELEASE: f"http://127.0.0.1:{handler.port}", "api": backend.url}
    proxy = Traefik(workdir, dynamic_config(rendered, urls), entry_points)
    proxy.wait_routing()
    return Deployment(docs, handler, proxy, backend, routes_dir)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    running = deploy(tmp_path_factory.mktemp("hosts"), team_config_maps())
    yield running
    running.proxy.stop()
    running.backend.stop()
    running.handler.stop()
    assert "Traceback" not in running.handler.logs()


def test_each_team_file_is_in_force(deployment: Deployment) -> None:
    values = deployment.handler.metrics()
    for source in ("orders.yaml", "shops.yaml", "reports.yaml"):
        assert metric(values, "cors_policy_source_valid", source=source) == 1, source


@pytest.mark.parametrize(("host", "path", "expected"), CASES)
def test_every_host_and_path_is_answered_by_its_route(
    deployment: Deployment, host: str, path: str, expected: str
) -> None:
    for origin in MARKERS:
        status, headers = deployment.preflight(host, path, origin)
        if origin == expected:
            assert (status, headers.get("access-control-allow-origin")) == (204, origin), (host, path, origin)
            assert headers["x-cors-preflight"] == "enhanced-handler"
        else:
            assert status == 403, (host, path, origin, status)
            assert "access-control-allow-origin" not in headers


@pytest.mark.parametrize(
    "host",
    ["shops.acme.test", "evil.acme.test", "orders.acme.test.evil.test", "evilshops.acme.test"],
    ids=["wildcard-apex", "unlisted-host", "listed-host-as-prefix", "look-alike-of-wildcard"],
)
def test_hosts_the_release_does_not_serve_never_reach_the_service(deployment: Deployment, host: str) -> None:
    before = deployment.handler.metrics()
    status, headers = deployment.preflight(host, "/cart", "https://shop.example.net")
    assert status == 404 and "access-control-allow-origin" not in headers  # no route of this release matches
    after = deployment.handler.metrics()
    assert metric(after, "cors_preflight_requests_total") == metric(before, "cors_preflight_requests_total")


def test_verify_agrees_on_every_host_through_traefik(deployment: Deployment, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(one(deployment.docs, "ConfigMap", RELEASE)["data"]["policy.yaml"])
    done = run_cli("verify", "--url", f"http://127.0.0.1:{deployment.proxy.port}", "--policy", str(policy),
                   "--routes-dir", str(deployment.routes_dir), "--format", "json", "--rate", "100")  # fmt: skip
    report = json.loads(done.stdout)
    assert done.returncode == 0, [c for c in report["cases"] if c["verdict"] != "agree"]
    routes = {case["route"] for case in report["cases"]}
    assert {"default", "orders-admin", "shops", "eu-checkout", REPORTS} <= routes, routes
    assert "OPTIONS" not in {method for method, _, _ in deployment.backend.seen}


def test_the_helm_test_pod_reads_the_same_route_sources_and_agrees(deployment: Deployment, tmp_path: Path) -> None:
    pod = one(deployment.docs, "Pod")
    docs = deployment.docs
    local = local_pod(pod, docs, tmp_path, {service_url(docs, RELEASE): f"http://127.0.0.1:{deployment.handler.port}"})
    assert local.env["CORS_ROUTES_DIR"].startswith(str(tmp_path))
    assert sorted(p.name for p in Path(local.env["CORS_ROUTES_DIR"]).iterdir() if not p.name.startswith("..")) == [
        "orders.yaml", "reports.yaml", "shops.yaml"
    ]  # fmt: skip
    done = local.run()
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    [summary] = re.findall(r"^verify: (\d+) cases, (\d+) agree, 0 disagree, 0 unreachable$", output, re.M)
    assert int(summary[0]) == int(summary[1]) > 0, output
    before = deployment.handler.metrics()
    assert all(
        metric(before, "cors_preflight_requests_total", route=name) > 0
        for name in ("orders-admin", "shops", "eu-checkout", REPORTS)
    ), "a team's route was never asked"


def test_a_team_configmap_that_does_not_exist_yet_blocks_no_pod_and_opens_nothing(tmp_path: Path) -> None:
    """reports-cors is not applied yet: the optional projection leaves its file out, the pods start and are
    ready, the other teams are served, and reports.acme.test is refused, never answered by the default route."""
    running = deploy(tmp_path, team_config_maps(only=("orders-cors", "shops-cors")))
    try:
        assert sorted(p.name for p in running.routes_dir.iterdir() if not p.name.startswith("..")) == [
            "orders.yaml", "shops.yaml"
        ]  # fmt: skip
        assert running.handler.request("GET", "/ready").status == 200
        assert metric(running.handler.metrics(), "cors_policy_source_valid", source="reports.yaml") == 0
        assert running.preflight("eu.shops.acme.test", "/checkout", "https://pay.example.net")[0] == 204
        for origin in MARKERS:
            status, headers = running.preflight("reports.acme.test", "/v1/daily", origin)
            assert status == 403 and "access-control-allow-origin" not in headers, origin
    finally:
        running.proxy.stop()
        running.backend.stop()
        running.handler.stop()


def test_a_team_updates_its_configmap_and_another_breaks_its_own_without_a_restart(tmp_path: Path) -> None:
    """The kubelet swaps ``..data`` to a new generation holding both teams' new files: the shops team's change
    goes live, the orders team's broken file is refused and its last good version keeps answering."""
    running = deploy(tmp_path, team_config_maps())
    try:
        files = {p.name: p.read_text() for p in running.routes_dir.iterdir() if not p.name.startswith("..")}
        shops = yaml.safe_load(files["shops.yaml"])
        shops["routes"][0]["allow_origins"].append("https://new-shop.example.net")
        files["shops.yaml"] = yaml.safe_dump(shops)
        files["orders.yaml"] = "routes:\n  - path_prefix: /\n    allow_origins: [https://orders.example.net/]\n"
        swap_projection(running.routes_dir, files)
        deadline = time.monotonic() + 15
        while running.preflight("us.shops.acme.test", "/cart", "https://new-shop.example.net")[0] != 204:
            assert time.monotonic() < deadline, running.handler.logs()[-3000:]
            time.sleep(0.1)
        values = running.handler.metrics()
        assert metric(values, "cors_policy_source_valid", source="orders.yaml") == 0
        assert metric(values, "cors_policy_source_valid", source="shops.yaml") == 1
        assert running.preflight("orders.acme.test", "/admin", "https://orders-admin.example.net")[0] == 204
        assert running.preflight("orders.acme.test", "/", "https://orders.example.net")[0] == 204
        assert running.handler.proc.poll() is None  # no restart
    finally:
        running.proxy.stop()
        running.backend.stop()
        running.handler.stop()
