"""Real Traefik on loopback, configured from the chart's rendered objects.

The file-provider configuration is *derived* from the rendered IngressRoute,
TraefikService and Middleware objects (routers keep their rule, priority,
entry points and middlewares; Middleware specs are copied as they are, the
CRD and file formats being the same). The only test-side input is where each
Kubernetes Service lives on loopback.
"""

from __future__ import annotations

import copy
import http.client
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from ..conftest import free_port, merge_headers, stop_process
from .tools import tool

# The keys of a CRD service entry (LoadBalancerSpec) that Traefik's Kubernetes provider copies into
# the load balancer it builds over the Service's endpoints, with the file format's spelling.
LOAD_BALANCER_KEYS = ("passiveHealthCheck", "serversTransport")


def dynamic_config(
    docs: list[dict[str, Any]],
    service_urls: Mapping[str, str | Sequence[str]],
    secrets: dict[str, dict[str, str]] | None = None,
    allow_empty_services: bool = False,
) -> dict[str, Any]:
    """The file-provider equivalent of the chart's Traefik objects.

    Two differences between the formats: a CRD rateLimit's ``redis.secret`` names a Kubernetes
    Secret holding ``username`` and ``password``, which the file format takes inline; an
    IngressRoute's ``tls.secretName`` names a Secret holding ``tls.crt`` and ``tls.key``, which
    the file format takes as certificate files. ``secrets`` (name -> data; for TLS, the paths of
    the PEM files) stands for the Secrets the cluster would hold.

    A Service maps to one URL or to the list of its ready endpoints (the pods Traefik's
    Kubernetes provider balances over). As that provider does, a route whose Service has no
    endpoint is left out (unless ``allow_empty_services``, Traefik's ``allowEmptyServices``: an
    empty load balancer, answering 503), and so is a route whose Service entry asks for an
    active ``healthCheck`` ("healthCheck allowed only for ExternalName services").
    """
    routers: dict[str, Any] = {}
    services: dict[str, Any] = {}
    middlewares: dict[str, Any] = {}
    transports: dict[str, Any] = {}

    def kubernetes_service(target: dict[str, Any]) -> str | None:
        name, urls = target["name"], service_urls[target["name"]]
        endpoints = [urls] if isinstance(urls, str) else list(urls)
        if "healthCheck" in target or not (endpoints or allow_empty_services):
            return None
        balancer: dict[str, Any] = {"servers": [{"url": url} for url in endpoints]}
        balancer.update({key: copy.deepcopy(target[key]) for key in LOAD_BALANCER_KEYS if key in target})
        services[f"svc-{name}"] = {"loadBalancer": balancer}
        return f"svc-{name}"

    for doc in docs:
        kind, name, spec = doc["kind"], doc["metadata"]["name"], doc.get("spec", {})
        if kind == "Middleware":
            middlewares[name] = copy.deepcopy(spec)
            redis = middlewares[name].get("rateLimit", {}).get("redis")
            if redis is not None and "secret" in redis:
                redis.update((secrets or {})[redis.pop("secret")])
        elif kind == "ServersTransport":
            transports[name] = copy.deepcopy(spec)  # forwardingTimeouts: the same keys in both formats
        elif kind == "TraefikService":
            weighted = [{"name": kubernetes_service(s), "weight": s["weight"]} for s in spec["weighted"]["services"]]
            if all(entry["name"] for entry in weighted):
                services[name] = {"weighted": {"services": weighted}}
    certificates = []
    for doc in docs:
        if doc["kind"] != "IngressRoute":
            continue
        tls = copy.deepcopy(doc["spec"].get("tls"))
        if tls is not None and "secretName" in tls:
            secret = (secrets or {})[tls.pop("secretName")]
            certificates.append({"certFile": secret["tls.crt"], "keyFile": secret["tls.key"]})
        for i, route in enumerate(doc["spec"]["routes"]):
            [target] = route["services"]
            service = target["name"] if target.get("kind") == "TraefikService" else kubernetes_service(target)
            if service is None or service not in services:
                continue  # Traefik logs the error and leaves the route out
            routers[f"{doc['metadata']['name']}-{i}"] = {
                "rule": route["match"],
                "priority": route["priority"],
                "entryPoints": doc["spec"]["entryPoints"],
                "middlewares": [m["name"] for m in route.get("middlewares", [])],
                "service": service,
                **({"tls": tls} if tls is not None else {}),
            }
    http = {"routers": routers, "services": services, "middlewares": middlewares}
    config: dict[str, Any] = {"http": {**http, "serversTransports": transports} if transports else http}
    if certificates:
        config["tls"] = {"certificates": certificates}
    return config


class Traefik:
    """A traefik process with one entry point per name the chart uses, on loopback."""

    def __init__(
        self, workdir: Path, dynamic: dict[str, Any], entry_points: list[str], host: str = "127.0.0.1"
    ) -> None:
        self.port = free_port()
        self.host = host  # what request() sends as Host: the routes' Host(`...`), when they have one
        self.dynamic_file = workdir / "dynamic.yaml"
        self.dynamic_file.write_text(yaml.safe_dump(dynamic))
        dynamic_file = self.dynamic_file
        self.log_path = workdir / "traefik.log"
        self.access_log_path = workdir / f"access-{self.port}.json"
        args = [tool("traefik"), "--global.checkNewVersion=false", "--global.sendAnonymousUsage=false",
                f"--providers.file.filename={dynamic_file}", "--log.level=ERROR", "--ping=false",
                "--accessLog=true", "--accessLog.format=json", f"--accessLog.filePath={self.access_log_path}",
                "--accessLog.fields.headers.defaultMode=drop"]  # fmt: skip
        for name in entry_points:
            args += [f"--entryPoints.{name}.address=127.0.0.1:{self.port}",
                     f"--entryPoints.{name}.forwardedHeaders.trustedIPs=127.0.0.1/32"]  # fmt: skip
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_routing(self, path: str = "/", timeout: float = 15.0) -> None:
        """Until a GET on ``path`` is routed (Traefik answers 404 until the file provider loads)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"traefik exited: {self.log_path.read_text()}")
            try:
                if self.request("GET", path)[0] != 404:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"traefik not routing in {timeout}s: {self.log_path.read_text()}")

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = dict(headers or {})
        if not any(name.lower() == "host" for name in headers):
            headers["Host"] = f"{self.host}:{self.port}"
        try:
            conn.request(method, path, headers=headers)
            response = conn.getresponse()
            return response.status, merge_headers(response.getheaders()), response.read()
        finally:
            conn.close()

    def reconfigure(self, dynamic: dict[str, Any]) -> None:
        """Replace the dynamic configuration (atomically, as a provider update): Traefik applies it on its own."""
        staged = self.dynamic_file.with_suffix(".next")
        staged.write_text(yaml.safe_dump(dynamic))
        staged.replace(self.dynamic_file)

    def access_log(self) -> list[dict[str, Any]]:
        """Every request Traefik has logged so far (one JSON object a line), in order."""
        if not self.access_log_path.exists():
            return []
        return [json.loads(line) for line in self.access_log_path.read_text().splitlines() if line]

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


class Backend:
    """A stand-in API: answers every method with 200 JSON and records what reached it.

    The JSON reports the method and the Cookie header it received, and the response
    carries ``X-Request-Id`` (the request's own, echoed) so that a page can show it
    reads an exposed header.
    """

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))  # drain a PUT/PATCH body
                cookie = self.headers.get("Cookie")
                body = json.dumps({"backend": True, "method": self.command, "cookie": cookie}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Request-Id", self.headers.get("X-Request-Id") or "backend-generated")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_traefik(
    workdir: Path,
    docs: list[dict[str, Any]],
    service_urls: Mapping[str, str | Sequence[str]],
    secrets: dict[str, dict[str, str]] | None = None,
) -> Traefik:
    """Traefik serving the rendered ``docs``, with every entry point they name."""
    routes = [d for d in docs if d["kind"] == "IngressRoute"]
    entry_points = sorted({ep for d in routes for ep in d["spec"]["entryPoints"]})
    hosts = {host for d in routes for r in d["spec"]["routes"] for host in re.findall(r"Host\(`([^`]+)`\)", r["match"])}
    if len(hosts) > 1:
        raise ValueError(f"the rendered routes name several hosts: {sorted(hosts)}")
    return Traefik(workdir, dynamic_config(docs, service_urls, secrets), entry_points, *hosts)


@contextmanager
def traefik_for(workdir: Path, docs: list[dict[str, Any]], service_urls: dict[str, str]) -> Iterator[Traefik]:
    proxy = start_traefik(workdir, docs, service_urls)
    try:
        yield proxy
    finally:
        proxy.stop()
