"""`cors-handler verify` against the deployment the chart describes, and against deliberately wrong ones.

Two ways in, both from the rendered chart:

- the `helm test` pod: its rendered command line (args, env, the policy file from the rendered
  ConfigMap where the pod mounts it) run as the image would run it (pod.py), against the
  release's pods on loopback;
- through the real Traefik stack (stack.py): the rendered IngressRoutes and Middlewares in front
  of the real service and a stand-in API, verify given the Traefik URL and the ConfigMap's policy.

A correct deployment agrees on every case; each wrong one (the service on another policy, no
preflight route so the API answers, an edge middleware with another origin list) is caught with
its disagreeing cases named, and only those.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..conftest import Server, run_cli
from .chart import ENVIRONMENTS, RELEASE, environment_values, objects, one
from .pod import local_pod, service_url
from .stack import Stack, start_stack
from .traefik import Backend, start_traefik

pytestmark = pytest.mark.e2e  # renders with the Helm engine and starts processes

SUMMARY = re.compile(r"^verify: (\d+) cases, (\d+) agree, (\d+) disagree, (\d+) unreachable$", re.M)
LOOPBACK_HOST = {"traefik": {"host": "127.0.0.1", "backendRoutes": {"enabled": True}}}  # verify's URL is Traefik's
PARTNER = "https://partner.example.net"
WITH_ROUTE = {"policy": {"routes": [{"name": "v2", "path_prefix": "/api/v2", "allow_origins": [PARTNER],
                                     "allow_credentials": True}]}}  # fmt: skip
DEPLOYMENTS = [
    *[pytest.param(env, {}, id=env) for env in ENVIRONMENTS],
    pytest.param("production", WITH_ROUTE, id="production-with-credentials-route"),
]
# Requests per second: below the edge's and the service's bursts (300) for every run a test makes on one stack.
RATE = "100"
DROPPED = "https://admin.example.com"  # in values-production.yaml; the wrong deployments lack it


def policy_text(docs: list[dict[str, Any]]) -> str:
    text: str = one(docs, "ConfigMap", RELEASE)["data"]["policy.yaml"]
    return text


def policy_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    policy: dict[str, Any] = yaml.safe_load(policy_text(docs))
    return policy


def without_dropped(environment: str, *overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart rendered as for ``environment``, with DROPPED missing from the top-level origins."""
    origins: list[str] = policy_of(objects(environment_values(environment, *overrides)))["allow_origins"]
    assert DROPPED in origins
    override = {"policy": {"allow_origins": [o for o in origins if o != DROPPED]}}
    return objects(environment_values(environment, *overrides, override))


class Run:
    """One `cors-handler verify` run: exit code, text output and, with --format json, the cases."""

    def __init__(self, url: str, policy_file: Path, *args: str, fmt: str = "text") -> None:
        done = run_cli("verify", "--url", url, "--policy", str(policy_file), "--format", fmt, "--rate", RATE, *args)
        self.returncode, self.output = done.returncode, done.stdout + done.stderr
        assert "Traceback" not in self.output, self.output
        self.cases: list[dict[str, Any]] = json.loads(done.stdout)["cases"] if fmt == "json" else []

    def summary(self) -> tuple[int, int, int, int]:
        [found] = SUMMARY.findall(self.output)
        cases, agree, disagree, unreachable = (int(n) for n in found)
        return cases, agree, disagree, unreachable

    def failing(self) -> list[dict[str, Any]]:
        return [c for c in self.cases if c["verdict"] != "agree"]


def caught(stack: Stack, policy_file: Path, *args: str) -> tuple[Run, Run]:
    """verify's JSON and text runs on a wrong deployment: exit 1, every failing case named in the text."""
    as_json, as_text = (Run(stack.api, policy_file, *args, fmt=fmt) for fmt in ("json", "text"))
    assert as_json.returncode == as_text.returncode == 1, as_text.output
    failing = as_json.failing()
    assert failing, as_text.output
    cases, agree, disagree, unreachable = as_text.summary()
    assert (cases, disagree + unreachable) == (len(as_json.cases), len(failing)), as_text.output
    unnamed = [c["id"] for c in failing if c["id"] not in as_text.output]
    assert unnamed == [], as_text.output
    return as_json, as_text


@pytest.fixture
def stacks(tmp_path: Path) -> Iterator[list[Stack]]:
    """Stacks started by a test, stopped after it."""
    started: list[Stack] = []
    yield started
    for stack in started:
        stack.stop()


def serve(workdir: Path, docs: list[dict[str, Any]], policy: dict[str, Any]) -> Stack:
    """Traefik from ``docs`` in front of cors-handler serving ``policy`` (whatever the ConfigMap says)."""
    handler = Server(workdir, policy, {}, [])
    backend = Backend()
    proxy = start_traefik(workdir, docs, {RELEASE: f"http://127.0.0.1:{handler.port}", "api": backend.url})
    proxy.wait_routing("/api/items")
    return Stack(handler, backend, proxy, docs)


# ---------------------------------------------------------------- the helm test pod


POD_RUNS = [
    *[pytest.param(env, False, id=f"{env}-release") for env in ENVIRONMENTS],
    pytest.param("production", True, id="production-another-max-age"),
]


@pytest.mark.parametrize(("environment", "another_policy"), POD_RUNS)
def test_the_helm_test_pod_passes_on_the_release_and_fails_on_another_policy(
    environment: str, another_policy: bool, tmp_path: Path
) -> None:
    docs = objects(environment_values(environment))
    policy = policy_of(docs)  # what the release's pods serve: the ConfigMap's policy
    if another_policy:
        policy["max_age"] //= 2
    server = Server(tmp_path, policy, {}, [])
    try:
        local = local_pod(
            one(docs, "Pod"), docs, tmp_path, {service_url(docs, RELEASE): f"http://127.0.0.1:{server.port}"}
        )
        done = local.run()
    finally:
        server.stop()
    output = done.stdout + done.stderr
    assert done.returncode == (1 if another_policy else 0), output
    cases, agree, _, unreachable = (int(n) for n in SUMMARY.findall(output)[0])
    assert cases > 0 and unreachable == 0, output
    assert (agree < cases) is another_policy, output
    assert ("Access-Control-Max-Age is" in output) is another_policy, output  # what differs, named


# ---------------------------------------------------------------- through Traefik


@pytest.mark.parametrize(("environment", "override"), DEPLOYMENTS)
def test_every_case_agrees_through_traefik(environment: str, override: dict[str, Any], tmp_path: Path,
                                           stacks: list[Stack]) -> None:  # fmt: skip
    stack = start_stack(tmp_path, environment, override, LOOPBACK_HOST)
    stacks.append(stack)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy_text(stack.docs))
    run = Run(stack.api, policy_file, "--actual", fmt="json")
    assert run.returncode == 0, run.failing()
    assert run.cases and run.failing() == []
    assert {c["route"] for c in run.cases} == {r.get("name", r["path_prefix"]) for r in override.get("policy", {})
                                               .get("routes", [])} | {"default"}  # fmt: skip
    assert "OPTIONS" not in {method for method, _, _ in stack.backend.seen}  # every preflight reached cors-handler


def test_a_service_on_another_policy_is_caught_through_traefik(tmp_path: Path, stacks: list[Stack]) -> None:
    docs = objects(environment_values("production", WITH_ROUTE, LOOPBACK_HOST))
    stack = serve(tmp_path, docs, policy_of(without_dropped("production", WITH_ROUTE, LOOPBACK_HOST)))
    stacks.append(stack)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy_text(docs))
    as_json, _ = caught(stack, policy_file)
    for case in as_json.failing():  # the dropped origin's cases, none other
        assert case["origin"].lower().startswith(DROPPED) and case["route"] == "default", case
    assert any(c["origin"] == DROPPED for c in as_json.failing())


def test_a_missing_preflight_route_is_caught_through_traefik(tmp_path: Path, stacks: list[Stack]) -> None:
    """No priority-150 route: the API's route takes the preflights (its CORS headers middleware answers them
    itself, as Traefik's headers middleware does), without X-CORS-Preflight."""
    stack = start_stack(tmp_path, "production", LOOPBACK_HOST, {"traefik": {"ingressRoute": {"enabled": False}}})
    stacks.append(stack)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy_text(stack.docs))
    as_json, _ = caught(stack, policy_file)
    assert len(as_json.failing()) == len(as_json.cases)  # every case: cors-handler never answered
    for case in as_json.failing():
        assert "x-cors-preflight" in " ".join(case["reasons"]).lower(), case
    assert stack.preflights() == 0


def test_an_edge_middleware_with_other_origins_is_caught_with_actual(tmp_path: Path, stacks: list[Stack]) -> None:
    """The service has the release's policy; Traefik's actual-response middleware was rendered without DROPPED."""
    docs = objects(environment_values("production", WITH_ROUTE, LOOPBACK_HOST))
    name = f"{RELEASE}-cors-default"
    stale = one(without_dropped("production", WITH_ROUTE, LOOPBACK_HOST), "Middleware", name)
    assert stale != one(docs, "Middleware", name)
    edge = [stale if d["kind"] == "Middleware" and d["metadata"]["name"] == name else d for d in docs]
    stack = serve(tmp_path, edge, policy_of(docs))
    stacks.append(stack)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy_text(docs))
    as_json, _ = caught(stack, policy_file, "--actual")
    for case in as_json.failing():  # the actual GETs of the dropped origin (every preflight agrees)
        assert "actual" in case["id"].split() and case["method"] == "GET", case
        assert case["origin"].lower().startswith(DROPPED) and case["route"] == "default", case
    assert any(c["origin"] == DROPPED for c in as_json.failing())
