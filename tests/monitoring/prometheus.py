"""A real Prometheus server (Debian's package) on loopback, scraping like the chart's ServiceMonitor.

prometheus-operator turns the ServiceMonitor into a scrape job whose targets carry the
labels ``job`` (the Service's name), ``namespace``, ``service``, ``pod`` and
``endpoint`` (the port name). ``scrape_config`` derives the same from the rendered
ServiceMonitor and Service, with a static loopback target instead of the pod address and
a short interval for the test.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ..conftest import free_port, stop_process
from ..deploy.chart import NAMESPACE, RELEASE, one
from ..deploy.tools import tool

INTERVAL = "1s"
# The labels the chart's alerts select on (job = the Service name, the release's namespace).
SELECTOR = f'job="{RELEASE}", namespace="{NAMESPACE}"'


def scrape_config(docs: list[dict[str, Any]], target: str, pod: str = "cors-handler-0") -> dict[str, Any]:
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service", monitor["metadata"]["name"])
    [endpoint] = monitor["spec"]["endpoints"]
    [namespace] = monitor["spec"]["namespaceSelector"]["matchNames"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    name = service["metadata"]["name"]
    return {
        "job_name": f"serviceMonitor/{namespace}/{monitor['metadata']['name']}/0",
        "metrics_path": endpoint["path"],
        "scrape_interval": INTERVAL,  # the chart's interval is endpoint["interval"]; shortened for the test
        "static_configs": [{"targets": [target], "labels": {
            "namespace": namespace, "service": name, "pod": pod, "endpoint": endpoint["port"]}}],
        "relabel_configs": [{"target_label": "job", "replacement": name}],
    }  # fmt: skip


class Prometheus:
    def __init__(self, workdir: Path, scrape_configs: list[dict[str, Any]], rule_files: list[Path]) -> None:
        self.port = free_port()
        config = {
            "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": scrape_configs,
        }
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = workdir / "prometheus.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [tool("prometheus"), f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.wait_until(lambda: self.api("status/runtimeinfo") is not None, "ready")

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except OSError:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_path.read_text()}") from None
            return None
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: [{'metric': {...}, 'value': [t, 'v']}]."""
        data = self.api("query", query=expr)
        assert data is not None and data["resultType"] == "vector", (expr, data)
        result: list[dict[str, Any]] = data["result"]
        return result

    def scalar(self, expr: str) -> float | None:
        """The single value of ``expr``, or None when it returns nothing."""
        result = self.query(expr)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else None

    def by(self, expr: str, label: str) -> dict[str, float]:
        return {sample["metric"].get(label, ""): float(sample["value"][1]) for sample in self.query(expr)}

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.2)
        raise AssertionError(f"prometheus: not {what} within {timeout}s\n{self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()
