"""`cors-handler gateway-routes`: the preflight HTTPRoutes printed for the route sources (tools.gateway).

Run in-process (``cli.main``): the policy loaded as ``check`` loads it, the HTTPRoutes read back from the
printed YAML. The chart's rendering of the same rules, the CRD schema and the precedence are proven in
tests/deploy/test_gateway_routes.py.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from cors_handler.cors.model import RoutePolicy
from cors_handler.tools import cli
from cors_handler.tools.gateway import DEFAULT_METHODS, MAX_NAME, object_name, parse_parent_ref

from ..conftest import make_policy, run_cli

ARGS = ["--parent-ref", "public/gateway-system/https", "--service", "cors-handler", "--port", "8080"]
MAIN = """\
allow_origins: [https://app.acme.io]
route_sources:
  team-a.yaml: {hosts: [api.acme.io, "*.a.acme.io"]}
  team-b.yaml: {hosts: [b.acme.io]}
"""
TEAM_A = """\
routes:
  - {name: orders, hosts: [api.acme.io], path_prefix: /orders/, allow_methods: [GET, PURGE]}
  - {name: exact, hosts: [x.a.acme.io], path_prefix: /x/, path_exact: true}
"""
TEAM_B = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: team-b}
spec:
  rules:
    - matches: [{path: {type: PathPrefix, value: /shop}}]
      filters: [{type: CORS, cors: {allowOrigins: ["https://b.acme.io"], allowMethods: [GET, PUT]}}]
"""


@pytest.fixture(autouse=True)
def _no_cors_environment() -> Iterator[None]:
    """The caller's CORS_* variables would be settings of the command under test."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("CORS_")}
    yield
    os.environ.update(saved)


def layout(tmp_path: Path, main: str = MAIN, **files: str) -> tuple[str, str]:
    """(policy file, routes directory) holding ``files`` (team_a -> team-a.yaml)."""
    routes = tmp_path / "routes"
    routes.mkdir()
    for name, text in (files or {"team_a": TEAM_A, "team_b": TEAM_B}).items():
        (routes / f"{name.replace('_', '-')}.yaml").write_text(text)
    policy = tmp_path / "policy.yaml"
    policy.write_text(main)
    return str(policy), str(routes)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["gateway-routes", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def printed(out: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(out) if d is not None]
    assert all(d["apiVersion"] == "gateway.networking.k8s.io/v1" and d["kind"] == "HTTPRoute" for d in docs)
    return docs


def by_route(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["annotations"]["cors-handler/route"]: d for d in docs}


def test_each_route_in_force_gets_the_charts_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy, routes = layout(tmp_path)
    code, out, err = run(capsys, "--policy", policy, "--routes-dir", routes, *ARGS, "--namespace", "edge")
    assert code == 0, err
    assert "&id" not in out and "*id" not in out  # no YAML aliases: every match reads whole
    docs = by_route(printed(out))
    assert set(docs) == {"orders", "exact", "team-b/shop/rules[0]"}
    orders = docs["orders"]
    assert orders["metadata"]["name"] == "cors-handler-preflight-orders"
    assert orders["metadata"]["namespace"] == "edge"
    assert orders["metadata"]["annotations"]["cors-handler/route-source"] == "team-a.yaml"
    methods = [*DEFAULT_METHODS, "PURGE"]  # the top level's and the routes' own methods after the defaults, once each
    assert orders["spec"] == {
        "parentRefs": [{"name": "public", "namespace": "gateway-system", "sectionName": "https"}],
        "hostnames": ["api.acme.io"],
        "rules": [{
            "matches": [{"path": {"type": "PathPrefix", "value": value}, "method": "OPTIONS",
                         "headers": [{"type": "Exact", "name": "Access-Control-Request-Method", "value": m}]}
                        for value in ("/orders", "/orders/") for m in methods],
            "backendRefs": [{"name": "cors-handler", "port": 8080}],
        }],
    }  # fmt: skip
    [exact] = docs["exact"]["spec"]["rules"]
    assert {m["path"]["type"] + " " + m["path"]["value"] for m in exact["matches"]} == {"Exact /x/"}
    # an HTTPRoute without hostnames is scoped to its source's hosts, and so is its preflight rule
    assert docs["team-b/shop/rules[0]"]["spec"]["hostnames"] == ["b.acme.io"]


def test_one_source_only_and_the_regular_expression_match(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy, routes = layout(tmp_path)
    argv = ["--policy", policy, "--routes-dir", routes, *ARGS, "--source", "team-b.yaml"]
    code, out, _ = run(capsys, *argv, "--header-match", "RegularExpression", "--no-hostnames")
    assert code == 0
    [doc] = printed(out)
    assert "hostnames" not in doc["spec"] and "namespace" not in doc["metadata"]
    [rule] = doc["spec"]["rules"]
    assert rule["matches"] == [
        {"path": {"type": "PathPrefix", "value": v}, "method": "OPTIONS",
         "headers": [{"type": "RegularExpression", "name": "Access-Control-Request-Method", "value": ".+"}]}
        for v in ("/shop", "/shop/")
    ]  # fmt: skip


def test_many_hosts_are_split_sixteen_hostnames_to_an_http_route(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hosts = [f"h{i}.acme.io" for i in range(40)]
    main = f"allow_origins: [https://app.acme.io]\nroute_sources:\n  team.yaml: {{hosts: {hosts}}}\n"
    policy, routes = layout(tmp_path, main, team="routes:\n  - {name: all, path_prefix: /api}\n")
    code, out, err = run(capsys, "--policy", policy, "--routes-dir", routes, *ARGS)
    assert code == 0, err
    docs = printed(out)
    assert [d["metadata"]["name"] for d in docs] == [f"cors-handler-preflight-all-{n}" for n in (1, 2, 3)]
    assert [len(d["spec"]["hostnames"]) for d in docs] == [16, 16, 8]
    assert [h for d in docs for h in d["spec"]["hostnames"]] == hosts


@pytest.mark.parametrize(
    ("host", "code"),
    [("10.0.0.7", "gateway_hostname_invalid"), ("my_api.acme.io", "gateway_hostname_invalid")],
    ids=["ip-address", "underscore"],
)
def test_a_host_no_http_route_can_name_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], host: str, code: str
) -> None:
    main = "allow_origins: [https://app.acme.io]\n"
    team = f"routes:\n  - {{name: r, hosts: ['{host}'], path_prefix: /api}}\n"
    policy, routes = layout(tmp_path, main, team=team)
    exit_code, out, err = run(capsys, "--policy", policy, "--routes-dir", routes, *ARGS)
    assert (exit_code, out) == (2, "")
    assert "team.yaml: route r hosts: " in err and f"[{code}]" in err


def test_a_path_no_http_route_can_match_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    team = "routes:\n  - {name: r, path_prefix: '/a/../b'}\n"
    policy, routes = layout(tmp_path, "allow_origins: [https://app.acme.io]\n", team=team)
    code, out, err = run(capsys, "--policy", policy, "--routes-dir", routes, *ARGS)
    assert (code, out) == (2, "") and "[gateway_path_invalid]" in err


def test_a_source_not_in_force_prints_its_findings_and_nothing_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = "routes:\n  - {name: r, hosts: [other.example.com], path_prefix: /api}\n"  # not team-b's host
    policy, routes = layout(tmp_path, team_a=TEAM_A, team_b=bad)
    code, out, err = run(capsys, "--policy", policy, "--routes-dir", routes, *ARGS)
    assert (code, out) == (2, "")
    assert "[host_not_owned]" in err and "[route_source_not_in_force]" in err
    code, out, _ = run(capsys, "--policy", policy, "--routes-dir", routes, *ARGS, "--source", "team-a.yaml")
    assert code == 0 and len(printed(out)) == 2  # the other source alone prints


def test_a_rule_our_checks_refuse_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Refused, it answers no origin: not what the team meant, so its preflights are not routed on its strength."""
    refused = TEAM_B.replace('allowOrigins: ["https://b.acme.io"]', 'allowOrigins: ["*"], allowCredentials: true')
    policy, routes = layout(tmp_path, team_a=TEAM_A, team_b=refused)
    code, out, err = run(capsys, "--policy", policy, "--routes-dir", routes, *ARGS, "--source", "team-b.yaml")
    assert (code, out) == (2, "")
    assert re.search(r"error: team-b\.yaml:HTTPRoute team-b/shop .*allowOrigins", err)
    assert "[route_source_not_in_force]" in err


ARGUMENT_IDS = ["unknown-source", "parent-ref-parts", "parent-ref-case", "service", "namespace", "port",
                "methods-over-64", "method-token"]  # fmt: skip
PARENT_REF_IDS = ["name", "namespace", "section", "dotted", "empty", "empty-namespace", "dotted-namespace",
                  "upper-section", "leading-hyphen"]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--source", "nope.yaml"], "route_source_unknown"),
        (["--parent-ref", "a/b/c/d"], "parent_ref_invalid"),
        (["--parent-ref", "Public"], "parent_ref_invalid"),
        (["--service", "cors_handler"], "service_invalid"),
        (["--namespace=-edge"], "namespace_invalid"),
        (["--port", "0"], "out_of_range"),
        (["--methods", *(f"M{i}" for i in range(33))], "too_many_methods"),
        (["--methods", "GET PUT"], "method_invalid"),
    ],
    ids=ARGUMENT_IDS,
)
def test_arguments_are_judged_like_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: str
) -> None:
    policy, routes = layout(tmp_path)
    exit_code, out, err = run(capsys, "--policy", policy, "--routes-dir", routes, *ARGS, *argv)
    assert (exit_code, out) == (2, "") and f"[{code}]" in err


def test_without_a_routes_directory_there_is_nothing_to_print(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy, _ = layout(tmp_path)
    code, out, err = run(capsys, "--policy", policy, *ARGS)
    assert (code, out) == (2, "") and "[routes_dir_missing]" in err


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("public", {"name": "public"}),
        ("public/gw", {"name": "public", "namespace": "gw"}),
        ("public/gw/https", {"name": "public", "namespace": "gw", "sectionName": "https"}),
        ("p.x/gw/a.b", {"name": "p.x", "namespace": "gw", "sectionName": "a.b"}),
        ("", None),
        ("public/", None),
        ("public/g.w", None),
        ("public/gw/HTTPS", None),
        ("-a", None),
    ],
    ids=PARENT_REF_IDS,
)
def test_parent_refs(text: str, ref: dict[str, str] | None) -> None:
    parsed = parse_parent_ref(text)
    assert parsed == ref if ref is not None else isinstance(parsed, str)


_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


_DEFAULT = make_policy().table.default


def _named(name: str) -> RoutePolicy:
    return dataclasses.replace(_DEFAULT, name=name)


@given(st.lists(st.text(min_size=1, max_size=300), min_size=2, max_size=2, unique=True))
def test_object_names_are_kubernetes_names_and_never_shared(names: list[str]) -> None:
    """Route names are free text (an HTTPRoute's ``ns/name/rules[0]``, a derived ``host,host/path``)."""
    made = [object_name("cors-handler", _named(n)) for n in names]
    for name in made:
        assert _SUBDOMAIN.fullmatch(name) and len(name) <= MAX_NAME - 4, name  # room for the split's "-N"
    assert made[0] != made[1]


@pytest.mark.e2e
def test_the_installed_command_prints_the_routes(tmp_path: Path) -> None:
    """The ``cors-handler`` entry point as a pipeline runs it: YAML on stdout, findings on stderr, the exit code."""
    policy, routes = layout(tmp_path)
    result = run_cli("gateway-routes", "--policy", policy, "--routes-dir", routes, *ARGS)
    assert result.returncode == 0, result.stderr
    assert len(printed(result.stdout)) == 3
    (Path(routes) / "team-b.yaml").write_text("routes: [")
    result = run_cli("gateway-routes", "--policy", policy, "--routes-dir", routes, *ARGS)
    assert (result.returncode, result.stdout) == (2, "")
    assert "team-b.yaml" in result.stderr and "[route_source_not_in_force]" in result.stderr
