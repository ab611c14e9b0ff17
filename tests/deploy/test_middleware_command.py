"""`cors-handler middleware` against the chart: a route in a team's file gets the Middleware the chart renders for it.

The chart renders a Traefik headers Middleware for each main-policy route
(templates/middlewares.yaml, the origin translation in _helpers.tpl); the command
prints one for each route of a route source (cors_handler/tools/middleware.py), a
second implementation of the same translation. Here the real Helm engine renders a
route as a main-policy route, the same route is written into a route source beside
the policy the chart put in its ConfigMap, and the two Middlewares must be equal:
every field of the spec, in the same order, and (with the chart's name prefix) the
name. Routes are generated: origin lists of exact origins, wildcards, ports (default,
leading zeros, none), ``*``, ``null``, inherited or the route's own, in each
environment's values with its development networks.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..conftest import run_cli, run_in_process
from .chart import ENVIRONMENTS, RELEASE, environment_values, helm, objects, one
from .test_origin_agreement import origin_patterns
from .tools import node_validator

CHART_PREFIX = f"{RELEASE}-cors-"
SOURCE = "team.yaml"


def run_command(*argv: str) -> tuple[int, str, str]:
    return run_in_process("middleware", *argv)


def chart_and_command(values: dict[str, Any], tmp_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The chart's Middlewares of the policy's routes, and the command's for the same routes in a route source."""
    docs = objects(values)
    chart = [
        d
        for d in docs
        if d["kind"] == "Middleware" and d["metadata"]["name"].startswith(CHART_PREFIX)
        and d["metadata"]["name"] != f"{CHART_PREFIX}default"
    ]  # fmt: skip
    policy = yaml.safe_load(one(docs, "ConfigMap", RELEASE)["data"]["policy.yaml"])
    routes, policy["routes"] = policy["routes"], []
    (tmp_path / "routes").mkdir(exist_ok=True)
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    (tmp_path / "routes" / SOURCE).write_text(yaml.safe_dump({"routes": routes}))
    code, out, err = run_command("--policy", str(tmp_path / "policy.yaml"), "--routes-dir", str(tmp_path / "routes"),
                                 "--source", SOURCE, "--namespace", "api", "--name-prefix", CHART_PREFIX)  # fmt: skip
    assert code == 0, err
    return chart, [d for d in yaml.safe_load_all(out) if d]


def assert_agree(chart: list[dict[str, Any]], command: list[dict[str, Any]]) -> None:
    assert [d["metadata"]["name"] for d in command] == [d["metadata"]["name"] for d in chart]
    for ours, theirs in zip(command, chart, strict=True):
        assert (ours["apiVersion"], ours["kind"]) == (theirs["apiVersion"], theirs["kind"])
        assert ours["metadata"]["namespace"] == theirs["metadata"]["namespace"]
        # the spec byte for byte: same fields, same order, same values and types
        assert yaml.safe_dump(ours["spec"], sort_keys=False) == yaml.safe_dump(theirs["spec"], sort_keys=False)


ROUTES: dict[str, Any] = {
    "policy": {
        "allow_origins": ["https://app.example.com", "https://*.tenants.example.com", "http://*.dev.example.org:8080",
                          "wss://socket.example.com:443", "app://desktop", "null"],
        "expose_headers": ["X-Request-Id"],
        "routes": [
            {"name": "v2", "path_prefix": "/api/v2", "allow_origins": ["https://partner.example.net:08443"],
             "allow_credentials": True, "allow_methods": ["GET", "PURGE"], "allow_headers": ["X-Partner"]},
            {"name": "any", "path_prefix": "/public", "allow_origins": ["*"], "expose_headers": []},
            {"name": "off", "path_prefix": "/internal", "enabled": False},
            {"name": "inherit", "path_prefix": "/api/v3", "max_age": 0},
            {"name": "everything", "path_prefix": "/all", "allow_methods": ["*"], "allow_headers": ["*"]},
        ],
    }
}  # fmt: skip


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_routes_of_a_source_get_the_chart_s_middlewares(environment: str, tmp_path: Path) -> None:
    chart, command = chart_and_command(environment_values(environment, ROUTES), tmp_path)
    assert [d["metadata"]["name"] for d in chart] == [f"{CHART_PREFIX}{n}" for n in ("v2", "any", "inherit",
                                                                                      "everything")]  # fmt: skip
    assert_agree(chart, command)
    # the comparison sees what differs between routes: not every route has the same spec
    assert len({yaml.safe_dump(d["spec"]) for d in command}) == 4


@st.composite
def routes(draw: st.DrawFn, environment: str) -> dict[str, Any]:
    route: dict[str, Any] = {"name": "r", "path_prefix": "/api/r"}
    credentials = draw(st.sampled_from([None, False, True]))
    if credentials is not None:
        route["allow_credentials"] = credentials
    if draw(st.integers(0, 3)):
        origins = draw(st.lists(origin_patterns(), min_size=1, max_size=4, unique=True))
        extra = draw(st.sampled_from([[], [], ["null"], ["*"], ["null", "*"]]))
        origins += [] if credentials and "*" in extra else extra
        route["allow_origins"] = draw(st.permutations(origins))
    wildcards = [] if credentials else [["*"], ["*", "authorization"]]  # the service refuses '*' with credentials
    if draw(st.booleans()):
        route["allow_methods"] = draw(st.sampled_from([["GET"], ["PUT", "DELETE", "PURGE"], [], *wildcards[:1]]))
    if draw(st.booleans()):
        route["allow_headers"] = draw(st.sampled_from([["Content-Type", "X-Request-Id"], [], *wildcards]))
    if draw(st.booleans()):
        route["expose_headers"] = draw(st.sampled_from([[], ["X-Total-Count", "ETag"], *wildcards[:1]]))
    if draw(st.booleans()):
        route["max_age"] = draw(st.sampled_from([0, 1, 600, 86400]))
    if draw(st.integers(0, 4)) == 0:
        route["name"] = "r-" + draw(st.sampled_from(["a", "x9", "long-" * 6 + "name"]))
    return route


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    environment = draw(st.sampled_from(ENVIRONMENTS))
    cidrs = draw(st.lists(st.sampled_from(["192.168.1.0/24", "10.0.0.0/8", "172.16.21.0/24", "10.1.2.3/32",
                                           "172.16.0.0/16"]), max_size=3, unique=True))  # fmt: skip
    policy: dict[str, Any] = {"environment": environment, "dev_private_cidrs": cidrs,
                              "routes": [draw(routes(environment))]}  # fmt: skip
    if draw(st.booleans()):
        policy["allow_origins"] = draw(st.lists(origin_patterns(), min_size=1, max_size=3, unique=True))
    if draw(st.booleans()):
        policy["expose_headers"] = draw(st.sampled_from([[], ["X-Request-Id"]]))
    return {"policy": policy}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=policies())
def test_generated_routes_agree_with_the_chart(values: dict[str, Any], tmp_path: Path) -> None:
    chart, command = chart_and_command(environment_values(values["policy"]["environment"], values), tmp_path)
    assert len(chart) == 1
    assert_agree(chart, command)


@pytest.mark.parametrize(
    ("route", "chart_setting", "command_setting"),
    [
        pytest.param({"allow_origin_regex": [r"^https://a\.example\.com$"]}, "policy.routes[v2].allow_origin_regex",
                     f"{SOURCE}:routes[0].allow_origin_regex", id="regex"),
        pytest.param({"allow_origins": ["https://app.example.com", "https://[2001:db8::1]:8443"]},
                     "policy.routes[v2].allow_origins[1]", f"{SOURCE}:routes[0].allow_origins[1]", id="ipv6"),
    ],
)  # fmt: skip
def test_what_the_chart_refuses_the_command_refuses(
    route: dict[str, Any], chart_setting: str, command_setting: str, tmp_path: Path
) -> None:
    route = {"name": "v2", "path_prefix": "/v2", **route}
    with pytest.raises(helm.HelmRenderError, match=re.escape(chart_setting)):
        objects(environment_values("staging", {"policy": {"routes": [route]}}))
    policy = yaml.safe_load(
        one(objects(environment_values("staging", {"traefik": {"actualResponseHeaders": False}})), "ConfigMap",
            RELEASE)["data"]["policy.yaml"]
    )  # fmt: skip
    (tmp_path / "routes").mkdir()
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    (tmp_path / "routes" / SOURCE).write_text(yaml.safe_dump({"routes": [route]}))
    code, out, err = run_command("--policy", str(tmp_path / "policy.yaml"), "--routes-dir", str(tmp_path / "routes"),
                                 "--source", SOURCE)  # fmt: skip
    assert (code, out) == (2, "")
    assert f"error: {command_setting}: " in err and "middleware_untranslatable" in err


@pytest.mark.e2e
def test_the_real_command_prints_middlewares_traefik_s_crd_schema_accepts(tmp_path: Path) -> None:
    """The command as a team runs it; its objects against Traefik's Middleware CRD schema, names as Kubernetes wants."""
    values = environment_values("staging", ROUTES)
    policy = yaml.safe_load(one(objects(values), "ConfigMap", RELEASE)["data"]["policy.yaml"])
    routes, policy["routes"] = policy["routes"], []
    routes += [{"name": "Orders API: v1/éà\n", "path_prefix": "/orders"}, {"path_prefix": "/api.v4/x"}]
    (tmp_path / "routes").mkdir()
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    (tmp_path / "routes" / SOURCE).write_text(yaml.safe_dump({"routes": routes}))
    done = run_cli("middleware", "--policy", str(tmp_path / "policy.yaml"), "--routes-dir", str(tmp_path / "routes"),
                   "--source", SOURCE, "--namespace", "team-a")  # fmt: skip
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert len(docs) == 6 and "off: disabled" in done.stderr
    for doc in docs:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", doc["metadata"]["name"]), doc["metadata"]["name"]
    assert {d["metadata"]["annotations"]["cors-handler/route"] for d in docs} >= {"Orders API: v1/éà\n", "/api.v4/x"}
    checked = subprocess.run(node_validator(), input=json.dumps(docs), capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    results = json.loads(checked.stdout)
    assert len(results) == len(docs) and [r for r in results if r["error"] is not None] == []
