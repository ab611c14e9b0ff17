"""Headless Chromium, a page server and a Traefik + cors-handler + demo API stack, on loopback.

Origins: Chromium maps ``*.pvpipe.test`` to 127.0.0.1 (``--host-resolver-rules``), so one
page server on one port serves several origins (``http://app.pvpipe.test:P``,
``http://evil.pvpipe.test:P``, ``http://localhost:P`` ...) and the API lives at
``http://api.pvpipe.test:T`` (Traefik's port): every fetch is cross-origin, and the
pvpipe.test origins are same-site with the API, so a credentialed fetch carries the
API's cookie as it would on a real pvpipe deployment. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from ..conftest import Server
from ..deploy.chart import RELEASE, environment_values, objects, one
from ..deploy.traefik import Backend, Traefik, start_traefik

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP *.pvpipe.test 127.0.0.1",
]  # fmt: skip

# The page's only code: one fetch, reported as data the test can assert on.
PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>cors-handler browser test</title></head>
<body><script>
window.callApi = async (url, init) => {
  try {
    const response = await fetch(url, init);
    return {status: response.status, requestId: response.headers.get("x-request-id"),
            body: await response.json()};
  } catch (error) {
    return {error: String(error)};
  }
};
</script></body></html>
"""


class PageServer:
    """Serves the test page at every path, for every Host (each host name is an origin)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(PAGE)))
                self.end_headers()
                self.wfile.write(PAGE)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def origin(self, host: str) -> str:
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


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

    @property
    def api(self) -> str:
        return f"http://api.pvpipe.test:{self.proxy.port}"

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


def start_stack(workdir: Path, environment: str, *overrides: dict[str, Any]) -> Stack:
    """Render the chart for ``environment`` and start what it describes, on loopback."""
    docs = objects(environment_values(environment, {"traefik": {"backendRoutes": {"enabled": True}}}, *overrides))
    policy = yaml.safe_load(one(docs, "ConfigMap", RELEASE)["data"]["policy.yaml"])
    handler = Server(workdir, policy, {}, [])
    backend = Backend()
    proxy = start_traefik(workdir, docs, {RELEASE: f"http://127.0.0.1:{handler.port}", "api": backend.url})
    proxy.wait_routing("/api/items")
    return Stack(handler, backend, proxy)
