"""What a cluster would admit: NetworkPolicy and label-selector semantics, evaluated as Kubernetes does.

There is no cluster in the test environment, so the rendered NetworkPolicy objects are
evaluated here by the rules of the Kubernetes API reference (networking.k8s.io/v1):

- a pod is isolated for ingress when a policy in its namespace selects it and has
  ``Ingress`` in ``policyTypes`` (absent ``policyTypes`` means Ingress); a pod no policy
  isolates admits everything;
- an isolated pod admits a connection when some rule of some policy selecting it admits
  both the peer and the port; the rules of all policies are OR-ed;
- a rule with no ``from`` admits every peer, with no ``ports`` every port; a peer with only
  ``podSelector`` means pods of the policy's own namespace, with only ``namespaceSelector``
  every pod in the selected namespaces, with both the selected pods in the selected
  namespaces; ``ipBlock`` peers are for addresses outside the cluster and admit no pod here;
- a port is a number or a container port name of the destination pod, protocol TCP unless
  given, ``endPort`` makes a range;
- egress is the mirror image: a pod is isolated for egress by a policy with ``Egress`` in
  ``policyTypes`` (or, without ``policyTypes``, with egress rules); ``to`` peers and ports name the
  destination; a connection needs the source's egress and the destination's ingress to admit it;
- a label selector ANDs ``matchLabels`` and ``matchExpressions`` (In, NotIn, Exists,
  DoesNotExist); the empty selector selects everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pod:
    """A pod as a NetworkPolicy sees it: its labels, its namespace's labels, its named ports."""

    namespace: str
    labels: dict[str, str]
    namespace_labels: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)  # container port name -> number

    def __post_init__(self) -> None:
        # Kubernetes sets this label on every namespace (1.22+); policies commonly select on it.
        self.namespace_labels.setdefault("kubernetes.io/metadata.name", self.namespace)


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels AND matchExpressions) against ``labels``; ``{}`` selects all."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown label selector operator {operator!r}")
    return True


def peer_admits(peer: dict[str, Any], policy_namespace: str, source: Pod) -> bool:
    if "ipBlock" in peer:
        return False
    namespace_selector, pod_selector = peer.get("namespaceSelector"), peer.get("podSelector")
    if namespace_selector is None and pod_selector is None:
        raise ValueError(f"a NetworkPolicyPeer needs a selector or an ipBlock: {peer}")
    if namespace_selector is None:
        in_namespace = source.namespace == policy_namespace
    else:
        in_namespace = selects(namespace_selector, source.namespace_labels)
    return in_namespace and (pod_selector is None or selects(pod_selector, source.labels))


def port_admits(port: dict[str, Any], destination: Pod, number: int, protocol: str) -> bool:
    if port.get("protocol", "TCP") != protocol:
        return False
    if "port" not in port:
        return True  # every port of this protocol
    wanted = port["port"]
    if isinstance(wanted, str):
        return destination.ports.get(wanted) == number
    return bool(wanted <= number <= port.get("endPort", wanted))


def isolates(policy: dict[str, Any], pod: Pod, direction: str = "Ingress") -> bool:
    """Whether ``policy`` isolates ``pod`` for ``direction`` ("Ingress" or "Egress"). Absent ``policyTypes``
    means Ingress, plus Egress when the policy has egress rules."""
    spec = policy["spec"]
    default = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]
    return (
        policy["metadata"]["namespace"] == pod.namespace
        and selects(spec["podSelector"], pod.labels)
        and direction in spec.get("policyTypes", default)
    )


def _rules_admit(
    policies: list[dict[str, Any]], direction: str, pod: Pod, peer: Pod, destination: Pod, number: int, protocol: str
) -> bool:
    """Whether the ``direction`` rules of the policies isolating ``pod`` admit ``peer`` (to ``destination``)."""
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    relevant = [p for p in policies if p["kind"] == "NetworkPolicy" and isolates(p, pod, direction)]
    if not relevant:
        return True
    for policy in relevant:
        namespace = policy["metadata"]["namespace"]
        for rule in policy["spec"].get(rules_key) or []:
            peers, ports = rule.get(peers_key), rule.get("ports")
            peer_ok = not peers or any(peer_admits(p, namespace, peer) for p in peers)
            port_ok = not ports or any(port_admits(port, destination, number, protocol) for port in ports)
            if peer_ok and port_ok:
                return True
    return False


def admits(policies: list[dict[str, Any]], source: Pod, destination: Pod, number: int, protocol: str = "TCP") -> bool:
    """Whether ``destination``'s ingress policies let ``source`` open a connection to it on ``number``."""
    return _rules_admit(policies, "Ingress", destination, source, destination, number, protocol)


def sends(policies: list[dict[str, Any]], source: Pod, destination: Pod, number: int, protocol: str = "TCP") -> bool:
    """Whether ``source``'s egress policies let it open a connection to ``destination`` on ``number``."""
    return _rules_admit(policies, "Egress", source, destination, destination, number, protocol)
