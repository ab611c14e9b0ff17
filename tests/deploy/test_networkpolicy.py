"""Who can reach cors-handler in a cluster: the rendered NetworkPolicies, as network-config-analyzer reads them.

Each test renders the chart, places its pods in a model cluster (namespaces with their
labels, Traefik, Prometheus, neighbours and lookalikes) and asks nca (``nca.py``) which
connections the policies allow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from .chart import CHART, ENVIRONMENTS, NAMESPACE, RELEASE, environment_values, helm, load_chart, objects, one
from .nca import Endpoint, connectivity, reaches
from .netpol import Pod, selects

# The Prometheus pod of a default kube-prometheus-stack release (named kube-prometheus-stack,
# installed in "monitoring"): the labels prometheus-operator puts on its StatefulSet's pods.
KUBE_PROMETHEUS_STACK = Pod(
    "monitoring",
    {
        "app.kubernetes.io/name": "prometheus",
        "app.kubernetes.io/instance": "kube-prometheus-stack-prometheus",
        "app.kubernetes.io/managed-by": "prometheus-operator",
        "app.kubernetes.io/version": "3.1.0",
        "operator.prometheus.io/name": "kube-prometheus-stack-prometheus",
        "operator.prometheus.io/shard": "0",
        "prometheus": "kube-prometheus-stack-prometheus",
        "controller-revision-hash": "prometheus-kube-prometheus-stack-prometheus-5d8c9b7f4",
    },
)
TRAEFIK_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "traefik"}},
}
TRAEFIK = Pod("traefik", {"app.kubernetes.io/name": "traefik", "app.kubernetes.io/instance": "traefik-traefik"})


def cors_handler_pod(docs: list[dict[str, Any]]) -> Pod:
    """A pod of the rendered Deployment, in the release namespace."""
    template = one(docs, "Deployment")["spec"]["template"]
    ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
    return Pod(NAMESPACE, template["metadata"]["labels"], ports=ports)


def scrape_targets(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Pod, int]]:
    """(ServiceMonitor, pod, container port) for every endpoint every rendered ServiceMonitor scrapes.

    As prometheus-operator resolves it: the Services its selector picks in its namespaces,
    the Service port named by the endpoint, that port's targetPort on the Service's pods.
    """
    pod = cors_handler_pod(docs)
    targets = []
    for monitor in (d for d in docs if d["kind"] == "ServiceMonitor"):
        spec = monitor["spec"]
        namespaces = spec["namespaceSelector"].get("matchNames", [monitor["metadata"]["namespace"]])
        for service in (d for d in docs if d["kind"] == "Service"):
            if service["metadata"]["namespace"] not in namespaces:
                continue
            if not selects(spec["selector"], service["metadata"].get("labels", {})):
                continue
            if not selects({"matchLabels": service["spec"]["selector"]}, pod.labels):
                continue
            for endpoint in spec["endpoints"]:
                [port] = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
                target = port.get("targetPort", port["port"])
                targets.append((monitor, pod, pod.ports[target] if isinstance(target, str) else target))
    return targets


def load_chart_defaults() -> dict[str, Any]:
    defaults: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return defaults


def with_service_monitor(environment: str, *overrides: dict[str, Any]) -> list[dict[str, Any]]:
    return objects(environment_values(environment, {"metrics": {"serviceMonitor": {"enabled": True}}}, *overrides))


HANDLER: Endpoint = (NAMESPACE, RELEASE)  # the Deployment's pods


@pytest.mark.e2e  # runs nca
@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_service_monitors_scraper_is_admitted_by_the_network_policy(environment: str, tmp_path: Path) -> None:
    docs = objects(environment_values(environment))
    if not any(d["kind"] == "ServiceMonitor" for d in docs):
        docs = with_service_monitor(environment)
    targets = scrape_targets(docs)
    assert targets, "the ServiceMonitor selects no Service port of the chart's pods"
    allowed = connectivity(tmp_path, docs, NAMESPACE, {"prometheus": KUBE_PROMETHEUS_STACK, "traefik": TRAEFIK})
    for monitor, _, port in targets:
        assert reaches(allowed, ("monitoring", "prometheus"), HANDLER, port), monitor["metadata"]["name"]
        assert reaches(allowed, ("traefik", "traefik"), HANDLER, port)


CUSTOM_SOURCES = [
    pytest.param(
        {"namespaceSelector": {"matchLabels": {"team": "observability"}},
         "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["prometheus", "vmagent"]}]}},
        Pod("metrics", {"app": "vmagent"}, {"team": "observability"}),
        [Pod("metrics", {"app": "grafana"}, {"team": "observability"}), Pod("other", {"app": "vmagent"})],
        id="namespace-labels-and-expression",
    ),
    pytest.param(
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}},
        Pod(NAMESPACE, {"app.kubernetes.io/name": "prometheus"}),
        [KUBE_PROMETHEUS_STACK],  # a podSelector alone means the release's own namespace
        id="same-namespace-prometheus",
    ),
    pytest.param(
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}},
        Pod("observability", {"anything": "goes"}),
        [KUBE_PROMETHEUS_STACK],
        id="whole-namespace",
    ),
]  # fmt: skip


@pytest.mark.e2e  # runs nca
@pytest.mark.parametrize(("source", "admitted", "refused"), CUSTOM_SOURCES)
def test_a_custom_prometheus_source_admits_that_prometheus_only(
    source: dict[str, Any], admitted: Pod, refused: list[Pod], tmp_path: Path
) -> None:
    # Helm merges maps with the chart's defaults; a default key is dropped by setting it to null.
    replacing: dict[str, Any] = {}
    for key, default in load_chart_defaults()["networkPolicy"]["prometheus"].items():
        if key not in source:
            replacing[key] = None
        else:
            labels = {label: None for label in default.get("matchLabels", {})}
            replacing[key] = {**source[key], "matchLabels": {**labels, **source[key].get("matchLabels", {})}}
    docs = objects(environment_values("production", {"networkPolicy": {"prometheus": replacing}}))
    [peer] = [
        p
        for p in one(docs, "NetworkPolicy", RELEASE)["spec"]["ingress"][0]["from"]
        if p != TRAEFIK_PEER
        and p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") != "helm-test"
    ]
    nonempty = {key: {k: v for k, v in selector.items() if v} for key, selector in peer.items()}
    assert nonempty == source  # exactly the configured peer, no default left over
    [(_, _, port)] = scrape_targets(docs)
    pods = {"admitted": admitted, **{f"refused-{i}": pod for i, pod in enumerate(refused)}}
    allowed = connectivity(tmp_path, docs, NAMESPACE, pods)
    assert reaches(allowed, (admitted.namespace, "admitted"), HANDLER, port)
    for i, stranger in enumerate(refused):
        assert not reaches(allowed, (stranger.namespace, f"refused-{i}"), HANDLER, port), stranger


@pytest.mark.e2e  # runs nca
def test_without_a_service_monitor_prometheus_is_not_admitted(tmp_path: Path) -> None:
    docs = objects(environment_values("development"))
    assert [d for d in docs if d["kind"] == "ServiceMonitor"] == []
    allowed = connectivity(tmp_path, docs, NAMESPACE, {"prometheus": KUBE_PROMETHEUS_STACK, "traefik": TRAEFIK})
    assert not reaches(allowed, ("monitoring", "prometheus"), HANDLER, 8080)
    assert reaches(allowed, ("traefik", "traefik"), HANDLER, 8080)


@pytest.mark.parametrize(
    "override",
    [
        pytest.param({"networkPolicy": {"prometheus": None}}, id="no-prometheus-source"),
        pytest.param(
            {"networkPolicy": {"prometheus": None}, "metrics": {"serviceMonitor": {"enabled": True}}},
            id="service-monitor-explicitly-on",
        ),
    ],
)
@pytest.mark.parametrize("environment", ["staging", "production"])
def test_schema_refuses_a_service_monitor_that_the_network_policy_would_block(
    environment: str, override: dict[str, Any]
) -> None:
    with pytest.raises(helm.HelmValuesError, match="prometheus"):
        load_chart().validate_schema(environment_values(environment, override))


def test_schema_accepts_no_prometheus_source_when_nothing_needs_one() -> None:
    chart = load_chart()
    chart.validate_schema(environment_values("production", {"networkPolicy": {"prometheus": None, "enabled": False}}))
    chart.validate_schema(
        environment_values("production", {"networkPolicy": {"prometheus": None},
                                          "metrics": {"serviceMonitor": {"enabled": False}}})
    )  # fmt: skip


# A cluster around the release: the pods the policies must admit, and their lookalikes.
CLUSTER = {
    "traefik": TRAEFIK,
    "traefik-dashboard": Pod("traefik", {"app.kubernetes.io/name": "traefik-dashboard"}),
    "prometheus": KUBE_PROMETHEUS_STACK,
    "grafana": Pod("monitoring", {"app.kubernetes.io/name": "grafana"}),
    "api": Pod(NAMESPACE, {"app.kubernetes.io/name": "api"}),
    "traefik-elsewhere": Pod("default", dict(TRAEFIK.labels)),
    "prometheus-elsewhere": Pod("default", dict(KUBE_PROMETHEUS_STACK.labels)),
}
TCP_8080 = "{protocols:TCP,dst_ports:8080}"


@pytest.mark.e2e  # runs nca
@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_only_traefik_prometheus_and_the_test_pod_reach_the_pods_on_8080_and_they_reach_nothing(
    environment: str, tmp_path: Path
) -> None:
    """network-config-analyzer's connectivity map of the rendered policies: who may connect to the
    cors-handler pods (Traefik; Prometheus when a ServiceMonitor scrapes them; the helm-test pod), on
    TCP 8080 only; nothing from outside the cluster; the pods connect nowhere; the test pod only to
    them and to DNS."""
    docs = objects(environment_values(environment))
    monitored = any(d["kind"] == "ServiceMonitor" for d in docs)
    handler, tester = (NAMESPACE, RELEASE), (NAMESPACE, one(docs, "Pod")["metadata"]["name"])
    allowed = connectivity(tmp_path, docs, NAMESPACE, CLUSTER)
    reaching = {(source, connection) for source, destination, connection in allowed if destination == handler}
    expected = {(("traefik", "traefik"), TCP_8080), (tester, TCP_8080)}
    if monitored:
        expected.add((("monitoring", "prometheus"), TCP_8080))
    assert reaching == expected
    assert {destination for source, destination, _ in allowed if source == handler} == set()  # no egress
    tester_reaches = {(d, c) for s, d, c in allowed if s == tester}
    assert (handler, TCP_8080) in tester_reaches
    assert {(d[0], c) for d, c in tester_reaches if d != handler} == {
        ("kube-system", "{protocols:TCP, UDP,dst_ports:53}")
    }


# Envoy Gateway's data-plane pod for a Gateway (the labels it puts on its proxies), the examples' default.
ENVOY_PROXY = Pod(
    "envoy-gateway-system",
    {"app.kubernetes.io/name": "envoy", "app.kubernetes.io/component": "proxy",
     "app.kubernetes.io/managed-by": "envoy-gateway", "gateway.envoyproxy.io/owning-gateway-name": "public"},
)  # fmt: skip


@pytest.mark.e2e  # runs nca
def test_with_the_gateway_api_the_gateways_pods_reach_the_pods_instead_of_traefik(tmp_path: Path) -> None:
    gateway = yaml.safe_load((CHART / "examples" / "gateway-api.yaml").read_text())
    docs = objects(environment_values("production", gateway))
    cluster = {**CLUSTER, "envoy": ENVOY_PROXY, "envoy-elsewhere": Pod("default", dict(ENVOY_PROXY.labels))}
    allowed = connectivity(tmp_path, docs, NAMESPACE, cluster)
    handler, tester = (NAMESPACE, RELEASE), (NAMESPACE, one(docs, "Pod")["metadata"]["name"])
    reaching = {(source, connection) for source, destination, connection in allowed if destination == handler}
    assert reaching == {
        (("envoy-gateway-system", "envoy"), TCP_8080), (("monitoring", "prometheus"), TCP_8080), (tester, TCP_8080)
    }  # fmt: skip
