"""Render the Helm chart with the real Helm engine (helm-python-sdk), per environment."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "cors-handler"
ENVIRONMENTS = ("development", "staging", "production")
RELEASE, NAMESPACE = "cors-handler", "api"

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is a test dependency: pip install -e '.[test]'")


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's values merge: maps merge key by key, anything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# The one value every install must add to an environment file: where the image was pushed.
IMAGE = {"image": {"repository": "registry.example.com/platform/cors-handler"}}


def shipped_values(environment: str) -> dict[str, Any]:
    """The environment's values file exactly as shipped."""
    values: dict[str, Any] = yaml.safe_load((CHART / f"values-{environment}.yaml").read_text())
    return values


def environment_values(environment: str, *overrides: dict[str, Any]) -> dict[str, Any]:
    """The environment's values file plus ``IMAGE``, with ``overrides`` merged on top (as several -f files)."""
    values = merge(shipped_values(environment), IMAGE)
    for override in overrides:
        values = merge(values, override)
    return values


def load_chart() -> Any:
    return helm.Chart.load(str(CHART))


def render(values: dict[str, Any], release: str = RELEASE) -> dict[str, str]:
    """Template path -> rendered text, exactly as `helm template` would produce."""
    rendered: dict[str, str] = load_chart().render(values, name=release, namespace=NAMESPACE)
    return rendered


def objects(values: dict[str, Any], release: str = RELEASE) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders (test hooks included)."""
    docs: list[dict[str, Any]] = []
    for path, text in sorted(render(values, release).items()):
        if path.endswith(".yaml"):
            docs += [doc for doc in yaml.safe_load_all(text) if doc]
    return docs


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name or ''}: {len(found)} objects"
    return found[0]
