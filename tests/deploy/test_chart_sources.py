"""Many hosts, many teams in the chart: route sources as the routes directory, their hosts in every route.

One release serves every team: each route source is a ConfigMap the team owns, mounted with the others
as the routes directory (one projected volume, each ConfigMap optional), named in the main policy's
``route_sources`` with the hosts it may serve, and those hosts join the preflight route's Host rule.
Everything here is rendered by the real Helm engine; names that would give two sources one file are
refused both by values.schema.json (what JSON Schema can say) and by the templates (what it cannot).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .chart import CHART, NAMESPACE, RELEASE, environment_values, helm, load_chart, objects, one, render

pytestmark = pytest.mark.e2e  # renders with the Helm engine

TEAMS = {
    "routeSources": [
        {"name": "orders", "hosts": ["orders.acme.test"]},
        {"name": "billing", "configMap": "billing-cors", "key": "cors.json", "hosts": ["*.billing.acme.test"]},
        {"name": "search", "configMap": "search-team", "key": "routes.yml",
         "hosts": ["search.acme.test", "*.s.acme.test"]},
    ]
}  # fmt: skip


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def policy_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    policy: dict[str, Any] = yaml.safe_load(one(docs, "ConfigMap", RELEASE)["data"]["policy.yaml"])
    return policy


def preflight_rule(docs: list[dict[str, Any]]) -> str:
    rule: str = one(docs, "IngressRoute", RELEASE)["spec"]["routes"][0]["match"]
    return rule


def test_each_source_is_one_optional_file_of_the_routes_directory_the_service_is_pointed_at() -> None:
    docs = objects(environment_values("production", TEAMS))
    spec = pod_spec(docs)
    [container] = spec["containers"]
    [routes_dir] = [e["value"] for e in container["env"] if e["name"] == "CORS_ROUTES_DIR"]
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == routes_dir]
    assert mount["readOnly"] is True
    [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    projected = [(s["configMap"]["name"], s["configMap"]["optional"], s["configMap"]["items"])
                 for s in volume["projected"]["sources"]]  # fmt: skip
    assert projected == [
        ("orders", True, [{"key": "routes.yaml", "path": "orders.yaml"}]),
        ("billing-cors", True, [{"key": "cors.json", "path": "billing.json"}]),
        ("search-team", True, [{"key": "routes.yml", "path": "search.yml"}]),
    ]
    # the policy directory is another mount: the routes directory is never inside a ConfigMap volume
    assert not any(routes_dir.startswith(m["mountPath"].rstrip("/") + "/") for m in container["volumeMounts"])


def test_the_main_policy_names_each_file_with_the_hosts_it_may_serve() -> None:
    policy = policy_of(objects(environment_values("production", TEAMS)))
    assert policy["route_sources"] == {
        "orders.yaml": {"hosts": ["orders.acme.test"]},
        "billing.json": {"hosts": ["*.billing.acme.test"]},
        "search.yml": {"hosts": ["search.acme.test", "*.s.acme.test"]},
    }
    files = {i["path"] for v in pod_spec(objects(environment_values("production", TEAMS)))["volumes"]
             if "projected" in v for s in v["projected"]["sources"] for i in s["configMap"]["items"]}  # fmt: skip
    assert files == set(policy["route_sources"])


def test_without_sources_nothing_changes() -> None:
    docs = objects(environment_values("production"))
    [container] = pod_spec(docs)["containers"]
    assert "env" not in container and [m["name"] for m in container["volumeMounts"]] == ["policy"]
    assert "route_sources" not in policy_of(docs)
    assert preflight_rule(docs).endswith("&& Host(`api.example.com`)")


def test_adding_a_team_rolls_the_pods_with_the_new_route_sources() -> None:
    """The sources are part of the policy file, so `helm upgrade` with a new entry is a policy change."""

    def checksum(*overrides: dict[str, Any]) -> str:
        pod = one(objects(environment_values("production", *overrides)), "Deployment")["spec"]["template"]
        return str(pod["metadata"]["annotations"]["checksum/policy"])

    one_team = {"routeSources": TEAMS["routeSources"][:1]}
    assert len({checksum(), checksum(one_team), checksum(TEAMS)}) == 3


def test_the_preflight_route_matches_every_host_of_every_source_and_traefik_host() -> None:
    values = environment_values("production", TEAMS, {"traefik": {"hosts": ["api2.example.com", "*.edge.example.com"]}})
    rule = preflight_rule(objects(values))
    assert rule.startswith("Method(`OPTIONS`) && HeaderRegexp(`Access-Control-Request-Method`, `.+`) && (")
    hosts = ["api.example.com", "api2.example.com", "*.edge.example.com", "orders.acme.test",
             "*.billing.acme.test", "search.acme.test", "*.s.acme.test"]  # fmt: skip
    assert host_matchers(rule) == hosts


def test_a_route_with_hosts_adds_them_and_its_backend_route_keeps_to_them() -> None:
    route = {"name": "pay", "path_prefix": "/pay", "hosts": ["pay.example.com"]}
    values = environment_values(
        "production", {"policy": {"routes": [route]}, "traefik": {"backendRoutes": {"enabled": True}}}
    )
    docs = objects(values)
    assert host_matchers(preflight_rule(docs)) == ["api.example.com", "pay.example.com"]
    backend = {r["match"] for r in one(docs, "IngressRoute", f"{RELEASE}-backend")["spec"]["routes"]}
    assert backend == {
        "PathPrefix(`/`) && Host(`api.example.com`)",
        "(Path(`/pay`) || PathPrefix(`/pay/`)) && Host(`pay.example.com`)",
    }


def host_matchers(rule: str) -> list[str]:
    """The hosts a rendered rule names, wildcards written back as ``*.suffix``."""
    out = []
    for kind, value in re.findall(r"(HostRegexp|Host)\(`([^`]*)`\)", rule):
        if kind == "Host":
            out.append(value)
        else:
            match = re.fullmatch(r"\^\(\?:\[a-z0-9_-\]\+\\\.\)\+(.+)\$", value)
            assert match, value
            out.append("*." + match[1].replace("\\.", "."))
    return out


# ---------------------------------------------------------------- the rule against the contract, generated

LABELS = st.sampled_from(["a", "b", "api", "x-1", "0"])


@st.composite
def host_patterns(draw: st.DrawFn) -> str:
    labels = draw(st.lists(LABELS, min_size=1, max_size=3))
    name = ".".join([*labels, "test"])
    return f"*.{name}" if draw(st.booleans()) else name


def contract_allows(patterns: list[str], host: str) -> bool:
    """design.md: exact names, or ``*.`` with one or more labels before the suffix, never the apex; the
    Host header lower-cased and its port dropped first (here by the caller)."""
    host = host.lower()
    for pattern in patterns:
        if pattern.startswith("*."):
            suffix = pattern[1:]
            if host.endswith(suffix) and len(host) > len(suffix) and not host[: -len(suffix)].endswith("."):
                return True
        elif host == pattern:
            return True
    return False


def traefik_matches(rule: str, host: str) -> bool:
    """Traefik's Host (case-insensitive equality) and HostRegexp (on the lower-cased host) for a rule that
    ORs them; the real binary is checked against the same hosts in tests/deploy/test_traefik_hosts.py."""
    host = host.lower()
    for kind, value in re.findall(r"(HostRegexp|Host)\(`([^`]*)`\)", rule):
        if (kind == "Host" and value.lower() == host) or (kind == "HostRegexp" and re.search(value, host)):
            return True
    return False


def probes(patterns: list[str]) -> list[str]:
    """Hosts near each pattern: itself, one and two labels under it, its apex, a look-alike, upper case."""
    out = []
    for pattern in patterns:
        name = pattern.removeprefix("*.")
        out += [name, f"z.{name}", f"y.z.{name}", f"evil{name}", f"{name}.evil", name.upper(), f"Z.{name.upper()}"]
        out += [name.split(".", 1)[1]] if "." in name else []
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    main=st.lists(host_patterns(), max_size=2, unique=True),
    sources=st.lists(st.lists(host_patterns(), min_size=1, max_size=3, unique=True), min_size=1, max_size=3),
)
def test_generated_hosts_are_matched_exactly_as_the_contract_says(main: list[str], sources: list[list[str]]) -> None:
    values = environment_values("development", {
        "traefik": {"host": "", "hosts": main},
        "routeSources": [{"name": f"team-{i}", "hosts": hosts} for i, hosts in enumerate(sources)],
    })  # fmt: skip
    rule = preflight_rule(objects(values))
    patterns = [*main, *(h for hosts in sources for h in hosts)]
    assert host_matchers(rule) == list(dict.fromkeys(patterns))
    for host in probes(patterns):
        assert traefik_matches(rule, host) == contract_allows(patterns, host), (host, rule)


# ---------------------------------------------------------------- refused: by the schema, by the templates


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"name": "Orders", "hosts": ["a.example.com"]}, "name"),
        ({"name": ".hidden", "hosts": ["a.example.com"]}, "name"),
        ({"name": "..data", "hosts": ["a.example.com"]}, "name"),
        ({"name": "orders.yaml", "hosts": ["a.example.com"]}, "name"),
        ({"name": "a/b", "hosts": ["a.example.com"]}, "name"),
        ({"name": "orders", "key": "routes.txt", "hosts": ["a.example.com"]}, "key"),
        ({"name": "orders", "key": "../routes.yaml", "hosts": ["a.example.com"]}, "key"),
        ({"name": "orders"}, "hosts"),
        ({"name": "orders", "hosts": []}, "hosts"),
        ({"name": "orders", "hosts": ["a.example.com`) || Host(`b.example.com"]}, "hosts"),
        ({"name": "orders", "hosts": ["*"]}, "hosts"),
        ({"name": "orders", "hosts": ["https://a.example.com"]}, "hosts"),
        ({"name": "orders", "hosts": ["a.example.com"], "configmap": "typo"}, "configmap"),
    ],
    ids=[
        "upper-case-name",
        "hidden-file-name",
        "configmap-data-link-name",
        "name-with-extension",
        "name-with-slash",
        "key-not-yaml-or-json",
        "key-with-path",
        "no-hosts",
        "empty-hosts",
        "host-ending-the-traefik-rule",
        "host-star-alone",
        "host-as-url",
        "misspelled-key",
    ],
)
def test_the_schema_refuses_sources_the_service_could_not_tell_apart(source: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=message):
        load_chart().validate_schema(environment_values("production", {"routeSources": [source]}))


def test_the_schema_refuses_the_same_source_twice() -> None:
    twice = {"routeSources": [TEAMS["routeSources"][0]] * 2}
    with pytest.raises(helm.HelmValuesError, match="routeSources"):
        load_chart().validate_schema(environment_values("production", twice))


def test_two_sources_with_one_name_are_refused_at_render_naming_both() -> None:
    """Same name, other ConfigMaps and keys: JSON Schema cannot compare items by one key, the template does."""
    same = {"routeSources": [
        {"name": "orders", "hosts": ["orders.acme.test"]},
        {"name": "orders", "configMap": "orders-v2", "key": "routes.json", "hosts": ["orders2.acme.test"]},
    ]}  # fmt: skip
    with pytest.raises(
        helm.HelmRenderError, match=r"routeSources\[0\] and routeSources\[1\] are both named \"orders\""
    ):
        render(environment_values("production", same))


@pytest.fixture(scope="module")
def chart_without_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The chart as `helm install --skip-schema-validation` renders it: the templates' own checks only."""
    copy = tmp_path_factory.mktemp("chart") / "cors-handler"
    shutil.copytree(CHART, copy)
    (copy / "values.schema.json").unlink()
    return helm.Chart.load(str(copy))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"name": ".hidden", "hosts": ["a.example.com"]}, "must be a DNS label"),
        ({"name": "..data", "hosts": ["a.example.com"]}, "must be a DNS label"),
        ({"name": "Orders", "hosts": ["a.example.com"]}, "must be a DNS label"),
        ({"name": "orders", "key": "routes", "hosts": ["a.example.com"]}, "reads [*].yaml"),
        ({"name": "orders", "hosts": []}, "hosts is required"),
        ({"name": "orders", "hosts": ["a.example.com`) || PathPrefix(`/"]}, "is not a host name"),
    ],
    ids=[
        "hidden-file-name",
        "configmap-data-link-name",
        "upper-case-name",
        "key-without-extension",
        "no-hosts",
        "host-ending-the-traefik-rule",
    ],
)
def test_the_templates_refuse_them_too_without_the_schema(
    chart_without_schema: Any, source: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        chart_without_schema.render(
            environment_values("production", {"routeSources": [source]}), name=RELEASE, namespace=NAMESPACE
        )


@pytest.mark.parametrize(
    "traefik",
    [{"host": ""}, {"host": "", "hosts": []}],
    ids=["empty-host", "empty-host-and-hosts"],
)
def test_production_needs_some_host_and_a_source_or_traefik_hosts_is_enough(traefik: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError, match="host"):
        load_chart().validate_schema(environment_values("production", {"traefik": traefik}))
    load_chart().validate_schema(
        environment_values("production", {"traefik": {**traefik, "hosts": ["api.example.com"]}})
    )
    load_chart().validate_schema(environment_values("production", {"traefik": traefik}, TEAMS))


def test_notes_list_each_source_with_its_configmap_and_hosts() -> None:
    notes = render(environment_values("production", TEAMS))["cors-handler/templates/NOTES.txt"]
    assert "billing.json  <- ConfigMap billing-cors, key cors.json; may serve *.billing.acme.test" in notes
    assert f"ConfigMaps in {NAMESPACE}" in notes
    assert "WARNING" not in notes
    only_sources = render(environment_values("development", {"traefik": {"host": ""}}, TEAMS))
    assert "WARNING" not in only_sources["cors-handler/templates/NOTES.txt"]


def test_the_values_table_documents_route_sources_and_hosts() -> None:
    readme = (CHART / "README.md").read_text()
    for key in ("routeSources", "traefik.hosts", "gatewayAPI.enabled", "gatewayAPI.headerMatch"):
        assert f"`{key}`" in readme, key
    assert Path(CHART / "values.yaml").read_text().count("routeSources: []") == 1


def test_the_helm_test_pod_reads_the_route_sources_the_pods_read() -> None:
    """verify asks each team's routes on their own hosts only if it loads the same routes directory."""
    docs = objects(environment_values("production", TEAMS))
    deployment, test_pod = pod_spec(docs), one(docs, "Pod")["spec"]
    [server], [verify] = deployment["containers"], test_pod["containers"]
    assert verify["env"] == server["env"]
    [mounted] = [m for m in verify["volumeMounts"] if m["name"] == "routes"]
    assert mounted in server["volumeMounts"]
    assert [v for v in test_pod["volumes"] if v["name"] == "routes"] == [
        v for v in deployment["volumes"] if v["name"] == "routes"
    ]
    assert "env" not in one(objects(environment_values("production")), "Pod")["spec"]["containers"][0]


def test_the_candidate_policy_gets_the_same_route_sources() -> None:
    """The candidate reads the same routes directory: without route_sources each file could serve any host, and a
    refused one would fail closed everywhere (tests/monitoring/test_prometheus.py saw it refuse every preflight)."""
    live = environment_values("production")["policy"]
    docs = objects(environment_values("production", TEAMS, {"candidatePolicy": {**live, "max_age": 60}}))
    data = one(docs, "ConfigMap", RELEASE)["data"]
    candidate, policy = yaml.safe_load(data["candidate.yaml"]), yaml.safe_load(data["policy.yaml"])
    assert candidate["route_sources"] == policy["route_sources"] and candidate["max_age"] == 60
