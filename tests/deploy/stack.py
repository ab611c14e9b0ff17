"""The chart's request path on loopback: real Traefik (from the rendered objects) -> cors-handler | demo API.

Used by the browser suite and the monitoring tests: the API is reached through Traefik
at ``http://api.pvpipe.test:<port>`` (browsers map the name to 127.0.0.1; the chart is
rendered with ``traefik.host: api.pvpipe.test``, so a request must carry that Host, as
``Traefik.request`` does by default); cors-handler's counters are read from its /metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..conftest import Server
from .chart import RELEASE, environment_values, objects, one
from .traefik import Backend, Traefik, start_traefik

HOST = "api.pvpipe.test"  # the API's host name in every stack (Chromium resolves *.pvpipe.test to 127.0.0.1)


def metric(values: dict[str, float], name: str, **labels: str) -> float:
    """The sum of ``name`` over the exposed series whose labels include ``labels``."""
    total = 0.0
    for key, value in values.items():
        series, _, label_text = key.partition("{")
        if series != name:
            continue
        pairs = dict(item.split("=", 1) for item in label_text.rstrip("}").split(",") if item)
        if all(pairs.get(k) == f'"{v}"' for k, v in labels.items()):
            total += value
    return total


@dataclass
class Stack:
    """Traefik (rendered chart objects) -> cors-handler (the ConfigMap's policy) | demo API."""

    handler: Server
    backend: Backend
    proxy: Traefik
    docs: list[dict[str, Any]]  # the rendered chart objects

    @property
    def api(self) -> str:
        return f"http://{self.proxy.host}:{self.proxy.port}"

    def count(self, name: str, **labels: str) -> float:
        return metric(self.handler.metrics(), name, **labels)

    def preflights(self, **labels: str) -> float:
        return self.count("cors_preflight_requests_total", **labels)

    def rejections(self, reason: str, route: str = "default") -> float:
        return self.count("cors_preflight_rejections_total", reason=reason, route=route)

    def stop(self) -> None:
        self.proxy.stop()
        self.backend.stop()
        self.handler.stop()
        assert "Traceback" not in self.handler.logs()


def candidate_args(workdir: Path, docs: list[dict[str, Any]]) -> list[str]:
    """The Deployment's --candidate, pointed at a copy of the ConfigMap key it mounts (none without one)."""
    args: list[str] = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    if "--candidate" not in args:
        return []
    mounted = Path(args[args.index("--candidate") + 1])
    path = workdir / mounted.name
    path.write_text(one(docs, "ConfigMap", RELEASE)["data"][mounted.name])
    return ["--candidate", str(path)]


def start_stack(workdir: Path, environment: str, *overrides: dict[str, Any]) -> Stack:
    """Render the chart for ``environment`` and start what it describes, on loopback."""
    base = {"traefik": {"backendRoutes": {"enabled": True}, "host": HOST}}
    docs = objects(environment_values(environment, base, *overrides))
    data = one(docs, "ConfigMap", RELEASE)["data"]
    policy = yaml.safe_load(data["policy.yaml"])
    handler = Server(workdir, policy, {}, candidate_args(workdir, docs))
    backend = Backend()
    proxy = start_traefik(workdir, docs, {RELEASE: f"http://127.0.0.1:{handler.port}", "api": backend.url})
    proxy.wait_routing("/api/items")
    return Stack(handler, backend, proxy, docs)
