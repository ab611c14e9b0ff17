"""Who can reach cors-handler in a cluster: the rendered NetworkPolicy, evaluated as Kubernetes would."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from .chart import CHART, ENVIRONMENTS, NAMESPACE, RELEASE, environment_values, helm, load_chart, objects, one
from .netpol import Pod, admits, selects, sends

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


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_service_monitors_scraper_is_admitted_by_the_network_policy(environment: str) -> None:
    docs = objects(environment_values(environment))
    if not any(d["kind"] == "ServiceMonitor" for d in docs):
        docs = with_service_monitor(environment)
    targets = scrape_targets(docs)
    assert targets, "the ServiceMonitor selects no Service port of the chart's pods"
    for monitor, pod, port in targets:
        assert admits(docs, KUBE_PROMETHEUS_STACK, pod, port), monitor["metadata"]["name"]
        assert admits(docs, TRAEFIK, pod, port)


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


@pytest.mark.parametrize(("source", "admitted", "refused"), CUSTOM_SOURCES)
def test_a_custom_prometheus_source_admits_that_prometheus_only(
    source: dict[str, Any], admitted: Pod, refused: list[Pod]
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
    [(_, pod, port)] = scrape_targets(docs)
    assert admits(docs, admitted, pod, port)
    for stranger in refused:
        assert not admits(docs, stranger, pod, port), stranger


def test_without_a_service_monitor_prometheus_is_not_admitted() -> None:
    docs = objects(environment_values("development"))
    assert [d for d in docs if d["kind"] == "ServiceMonitor"] == []
    pod = cors_handler_pod(docs)
    assert not admits(docs, KUBE_PROMETHEUS_STACK, pod, 8080)
    assert admits(docs, TRAEFIK, pod, 8080)


def test_strangers_and_other_ports_are_refused() -> None:
    docs = objects(environment_values("production"))
    pod = cors_handler_pod(docs)
    for stranger in (
        Pod(NAMESPACE, {"app.kubernetes.io/name": "api"}),  # a neighbour in the release namespace
        Pod("monitoring", {"app.kubernetes.io/name": "grafana"}),  # Prometheus's namespace, another pod
        Pod("default", dict(KUBE_PROMETHEUS_STACK.labels)),  # Prometheus's labels, another namespace
        Pod("default", dict(TRAEFIK.labels)),
    ):
        assert not admits(docs, stranger, pod, 8080), stranger
    assert not admits(docs, KUBE_PROMETHEUS_STACK, pod, 9090)
    assert not admits(docs, TRAEFIK, pod, 8080, "UDP")


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


KUBE_DNS = Pod("kube-system", {"k8s-app": "kube-dns"}, ports={"dns": 53})


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_helm_test_pod_reaches_the_service_and_nothing_else(environment: str) -> None:
    """`helm test` runs verify in a pod that must connect to the Service's pods (its egress and their ingress
    policy), resolve the Service's name, and do nothing else."""
    docs = objects(environment_values(environment))
    tester = Pod(NAMESPACE, one(docs, "Pod")["metadata"]["labels"])
    pod = cors_handler_pod(docs)
    [port] = one(docs, "Service", RELEASE)["spec"]["ports"]
    target = pod.ports[port["targetPort"]] if isinstance(port["targetPort"], str) else port["targetPort"]
    assert sends(docs, tester, pod, target) and admits(docs, tester, pod, target)
    assert sends(docs, tester, KUBE_DNS, 53, "UDP") and sends(docs, tester, KUBE_DNS, 53, "TCP")
    assert not sends(docs, tester, Pod(NAMESPACE, {"app.kubernetes.io/name": "api"}), 8000)  # the API backend
    assert not sends(docs, tester, TRAEFIK, 8080) and not sends(docs, tester, pod, 9090)
    assert not admits(docs, TRAEFIK, tester, 8080) and not admits(docs, pod, tester, 8080)  # nothing calls it


# ---------------------------------------------------------------- the evaluator itself


def policy(spec: dict[str, Any], namespace: str = "api") -> dict[str, Any]:
    return {"kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": namespace}, "spec": spec}


WEB = Pod("api", {"app": "web"}, ports={"http": 8080})
EVALUATOR_CASES = [
    # (policies, source, port, protocol, admitted) from the Kubernetes NetworkPolicy reference
    pytest.param([], Pod("x", {}), 8080, "TCP", True, id="no-policy-admits-all"),
    pytest.param([policy({"podSelector": {"matchLabels": {"app": "db"}}, "ingress": []})], Pod("x", {}), 8080, "TCP",
                 True, id="policy-for-other-pods"),
    pytest.param([policy({"podSelector": {}, "policyTypes": ["Egress"]})], Pod("x", {}), 8080, "TCP", True,
                 id="egress-only-does-not-isolate"),
    pytest.param([policy({"podSelector": {}})], Pod("api", {}), 8080, "TCP", False, id="isolated-no-rules"),
    pytest.param([policy({"podSelector": {}, "ingress": [{}]})], Pod("x", {}), 1, "UDP", True, id="empty-rule"),
    pytest.param([policy({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]})], Pod("other", {}), 8080,
                 "TCP", False, id="pod-selector-alone-is-own-namespace"),
    pytest.param([policy({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]})],
                 Pod("other", {}), 8080, "TCP", True, id="empty-namespace-selector-is-every-namespace"),
    pytest.param([policy({"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"t": "a"}}, "podSelector": {"matchLabels": {"r": "x"}}}]}]})],
        Pod("n", {"r": "y"}, {"t": "a"}), 8080, "TCP", False, id="both-selectors-are-anded"),
    pytest.param([policy({"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"t": "a"}}}, {"podSelector": {"matchLabels": {"r": "x"}}}]}]})],
        Pod("n", {"r": "y"}, {"t": "a"}), 8080, "TCP", True, id="two-peers-are-ored"),
    pytest.param([policy({"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]})], Pod("x", {}), 8080,
                 "TCP", True, id="named-port"),
    pytest.param([policy({"podSelector": {}, "ingress": [{"ports": [{"port": 8000, "endPort": 8100}]}]})],
                 Pod("x", {}), 8080, "TCP", True, id="port-range"),
    pytest.param([policy({"podSelector": {}, "ingress": [{"ports": [{"port": 8080, "protocol": "UDP"}]}]})],
                 Pod("x", {}), 8080, "TCP", False, id="protocol"),
    pytest.param([policy({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]})],
                 Pod("x", {}), 8080, "TCP", False, id="ip-block-admits-no-pod"),
    pytest.param([policy({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
        {"key": "t", "operator": "NotIn", "values": ["a"]}, {"key": "z", "operator": "DoesNotExist"}]}}]}]})],
        Pod("n", {}, {"t": "b"}), 8080, "TCP", True, id="expressions"),
    pytest.param([policy({"podSelector": {}}, namespace="elsewhere")], Pod("x", {}), 8080, "TCP", True,
                 id="policy-in-another-namespace"),
]  # fmt: skip


@pytest.mark.parametrize(("policies", "source", "port", "protocol", "admitted"), EVALUATOR_CASES)
def test_the_evaluator_follows_the_kubernetes_reference(
    policies: list[dict[str, Any]], source: Pod, port: int, protocol: str, admitted: bool
) -> None:
    assert admits(policies, source, WEB, port, protocol) is admitted


EGRESS_CASES = [
    # (policies, destination, port, protocol, sent) for the source WEB
    pytest.param([policy({"podSelector": {}, "policyTypes": ["Ingress"]})], Pod("x", {}), 80, "TCP", True,
                 id="ingress-only-does-not-isolate-egress"),
    pytest.param([policy({"podSelector": {}, "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}]}]})],
                 Pod("api", {"app": "db"}), 5432, "TCP", True, id="egress-rules-alone-imply-egress"),
    pytest.param([policy({"podSelector": {}, "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}]}]})],
                 Pod("api", {"app": "cache"}), 6379, "TCP", False, id="egress-to-another-pod"),
    pytest.param([policy({"podSelector": {}, "policyTypes": ["Egress"], "egress": []})], Pod("api", {}), 80, "TCP",
                 False, id="egress-isolated-no-rules"),
    pytest.param([policy({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "http"}]}]})],
                 Pod("x", {}, ports={"http": 8080}), 8080, "TCP", True, id="egress-named-port-is-the-destinations"),
]  # fmt: skip


@pytest.mark.parametrize(("policies", "destination", "port", "protocol", "sent"), EGRESS_CASES)
def test_the_egress_evaluator_follows_the_kubernetes_reference(
    policies: list[dict[str, Any]], destination: Pod, port: int, protocol: str, sent: bool
) -> None:
    assert sends(policies, WEB, destination, port, protocol) is sent
