"""The edge rate limit across Traefik replicas: per Traefik by default, one limit for all with Redis.

Two real Traefik processes are configured from the same rendered chart, in front of one
real cors-handler; with ``traefik.rateLimit.redis`` they share a real ``redis-server``
(Debian's redis-server package, password-protected as a cluster's would be).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..conftest import Server, free_port, stop_process
from .chart import RELEASE, environment_values, objects, one
from .tools import node_validator
from .traefik import Traefik, start_traefik

pytestmark = pytest.mark.e2e  # renders with the Helm engine and starts processes

APP = "https://app.example.com"  # in values-production.yaml
SECRET = "cors-handler-redis"  # the Secret the user creates: keys username and password
BURST = 5


class Redis:
    """A redis-server on loopback with a password, nothing persisted."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed; scripts/test.sh installs it (Debian package redis-server)")
        self.port, self.password = free_port(), secrets.token_hex(16)
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--requirepass", self.password, "--dir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while self.command("PING") != "PONG":
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def command(self, *args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), "--no-auth-warning", "-a", self.password, *args],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
        return done.stdout.strip()

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    server = Redis(Path(tmp_path_factory.mktemp("redis")))
    yield server
    server.stop()


def edge_values(redis: Redis | None) -> dict[str, Any]:
    """Production, the service's own limit off (to see the edge's), a burst of 5 and one token a minute."""
    limit: dict[str, Any] = {"average": 1, "period": "1m", "burst": BURST, "depth": 1}
    if redis is not None:
        limit["redis"] = {"endpoints": [f"127.0.0.1:{redis.port}"], "secret": SECRET}
    traefik = {"rateLimit": limit, "backendRoutes": {"enabled": True}}  # a GET route: wait_routing needs one
    return environment_values("production", {"policy": {"rate_limit": {"enabled": False}}, "traefik": traefik})


def two_traefiks(workdir: Path, docs: list[dict[str, Any]], redis: Redis | None) -> tuple[Server, list[Traefik]]:
    policy = yaml.safe_load(one(docs, "ConfigMap", RELEASE)["data"]["policy.yaml"])
    handler = Server(workdir, policy, {}, [])
    cluster_secrets = {SECRET: {"username": "default", "password": redis.password}} if redis else {}
    proxies = []
    for name in ("a", "b"):
        (workdir / name).mkdir()
        urls = {RELEASE: f"http://127.0.0.1:{handler.port}", "api": f"http://127.0.0.1:{handler.port}"}
        proxies.append(start_traefik(workdir / name, docs, urls, cluster_secrets))
    for proxy in proxies:
        proxy.wait_routing("/")
    return handler, proxies


def preflight(proxy: Traefik, client: str) -> int:
    headers = {"Origin": APP, "Access-Control-Request-Method": "PUT", "X-Forwarded-For": client}
    return proxy.request("OPTIONS", "/api/items", headers)[0]


def test_the_chart_renders_the_redis_store_only_when_endpoints_are_set(redis: Redis) -> None:
    plain = one(objects(edge_values(None)), "Middleware", f"{RELEASE}-ratelimit")["spec"]["rateLimit"]
    assert "redis" not in plain
    shared = one(objects(edge_values(redis)), "Middleware", f"{RELEASE}-ratelimit")
    assert shared["spec"]["rateLimit"]["redis"] == {"endpoints": [f"127.0.0.1:{redis.port}"], "secret": SECRET}
    done = subprocess.run(node_validator(), input=json.dumps([shared]), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and json.loads(done.stdout)[0]["error"] is None, done.stdout + done.stderr


def test_without_redis_each_traefik_has_its_own_buckets(tmp_path: Path) -> None:
    handler, (a, b) = two_traefiks(tmp_path, objects(edge_values(None)), None)
    try:
        assert [preflight(a, "203.0.113.10") for _ in range(BURST)] == [204] * BURST
        assert preflight(a, "203.0.113.10") == 429
        assert [preflight(b, "203.0.113.10") for _ in range(BURST)] == [204] * BURST  # a fresh bucket
    finally:
        for proxy in (a, b):
            proxy.stop()
        handler.stop()


def test_with_redis_a_clients_burst_is_spent_across_both_traefiks(tmp_path: Path, redis: Redis) -> None:
    handler, (a, b) = two_traefiks(tmp_path, objects(edge_values(redis)), redis)
    try:
        statuses = [preflight(proxy, "203.0.113.20") for proxy in (a, b, a, b, a, b, a, b)]
        assert statuses[:BURST] == [204] * BURST, statuses
        assert statuses[BURST:] == [429] * (8 - BURST), statuses  # one token a minute: no refill in between
        assert preflight(b, "203.0.113.21") == 204  # still one bucket per client
        assert preflight(a, "203.0.113.21") == 204
        assert redis.command("DBSIZE") not in ("", "0")  # the buckets live in Redis
    finally:
        for proxy in (a, b):
            proxy.stop()
        handler.stop()
