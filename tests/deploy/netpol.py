"""Pods and label selectors of the cluster models the deployment tests build.

Which connections the rendered NetworkPolicies allow is computed by network-config-analyzer
(``nca.py``), not here; ``selects`` resolves the other selectors a cluster would (a
ServiceMonitor's Service selector, a Service's pod selector), by the Kubernetes API
reference: ``matchLabels`` AND ``matchExpressions`` (In, NotIn, Exists, DoesNotExist); the
empty selector selects everything.
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
