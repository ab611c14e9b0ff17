"""Routes by host on the running service: both paths, explain --authority and verify choose the same route.

Each route answers with its own Access-Control-Max-Age (a disabled one with
404), so the answer names the route the service chose. The expected route is
the contract's rule stated independently (``expected_route``), for Hosts in the
spellings clients and proxies send and for what is no host at all.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cors_handler.serve.pipeline import preview

from ..conftest import Server, fast_and_asgi, make_policy, read_responses, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.both_paths]

POLICY: dict[str, Any] = {
    "allow_origins": ["https://app.example.com"],
    "max_age": 100,
    "rate_limit": {"enabled": False},
    "routes": [
        {"name": "orders", "hosts": ["orders.acme.io"], "path_prefix": "/", "max_age": 101},
        {"name": "orders-admin", "hosts": ["orders.acme.io"], "path_prefix": "/admin", "max_age": 102},
        {"name": "tenants", "hosts": ["*.acme.io"], "path_prefix": "/api", "max_age": 103},
        {"name": "eu", "hosts": ["*.eu.acme.io"], "path_prefix": "/api", "max_age": 104},
        {"name": "anywhere-api", "path_prefix": "/api", "max_age": 105},
        {
            "name": "health-exact",
            "hosts": ["*.acme.io"],
            "path_prefix": "/api/health",
            "path_exact": True,
            "max_age": 106,
        },
        {"name": "ip", "hosts": ["10.0.0.7"], "path_prefix": "/", "max_age": 107},
        {"name": "off", "hosts": ["off.acme.io"], "path_prefix": "/", "enabled": False},
    ],
}
BY_MAX_AGE = {str(r.get("max_age", 100)): r["name"] for r in POLICY["routes"]} | {"100": "default"}
COMPILED = make_policy(**POLICY)
EXAMPLES = int(os.environ.get("CORS_HOSTS_EXAMPLES", "1500" if os.environ.get("CORS_TEST_LONG") else "200"))


def expected_route(host: str | None, path: str) -> str:
    """The contract's selection, written out for this policy (no code shared with the service)."""
    name = None
    if host is not None and not host.startswith("[") and not host.rpartition(".")[2].isdigit():
        if host == "orders.acme.io":
            name = "orders-admin" if path == "/admin" or path.startswith("/admin/") else "orders"
        elif host == "off.acme.io":
            name = "off"
        if name is None and host.endswith(".eu.acme.io") and (path == "/api" or path.startswith("/api/")):
            name = "eu"
        if name is None and host.endswith(".acme.io"):
            if path == "/api/health":
                name = "health-exact"
            elif path == "/api" or path.startswith("/api/"):
                name = "tenants"
    if name is None and host == "10.0.0.7":
        name = "ip"
    if name is None:
        name = "anywhere-api" if path == "/api" or path.startswith("/api/") else "default"
    return name


def normalized(spelling: str | None) -> str | None:
    """What the Host names: lower-cased, port and one trailing dot dropped; None for no host."""
    if spelling is None or not re.fullmatch(r"[A-Za-z0-9.-]+\.?(:[0-9]+)?|\[[0-9a-fA-F:]+\](:[0-9]+)?", spelling):
        return None
    host = spelling.lower()
    host = host if host.startswith("[") else host.partition(":")[0]
    host = host.rpartition("]")[0] + "]" if host.startswith("[") else host
    host = host[:-1] if host.endswith(".") else host
    return None if ".." in host or host.startswith(".") or not host else host


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    with fast_and_asgi(tmp_path_factory.mktemp("hosts"), POLICY) as both:
        yield both


def served_route(server: Server, hosts: list[str], path: str) -> str | None:
    lines = [f"OPTIONS {path} HTTP/1.1", *(f"Host: {h}" for h in hosts), "Origin: https://app.example.com",
             "Access-Control-Request-Method: GET"]  # fmt: skip
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        [answer] = read_responses(sock, 1) or [b""]
    if answer.startswith(b"HTTP/1.1 404 ") and b"route_disabled" in answer:
        return "off"
    found = re.search(rb"\r\naccess-control-max-age: (\d+)\r\n", answer)
    return BY_MAX_AGE[found[1].decode()] if found else None


HOST_SPELLINGS = ["orders.acme.io", "ORDERS.Acme.IO", "orders.acme.io:8443", "orders.acme.io.", "a.acme.io",
                  "x.y.acme.io", "a.eu.acme.io", "eu.acme.io", "acme.io", "evilacme.io", "orders.acme.io.evil",
                  "off.acme.io", "10.0.0.7", "10.0.0.7:80", "[::1]", "other.io", "", "orders.acme.io:",
                  "orders..acme.io", "*.acme.io", "orders.acme.io:x"]  # fmt: skip
PATHS = ["/", "/admin", "/admin/x", "/adminx", "/api", "/api/x", "/api/health", "/api/health/x", "/apix", "/x"]


@pytest.mark.parametrize(
    ("hosts", "path", "route"),
    [
        pytest.param(["orders.acme.io"], "/x", "orders", id="exact-host"),
        pytest.param(["orders.acme.io"], "/api/x", "orders", id="exact-host-before-wildcard"),
        pytest.param(["a.eu.acme.io"], "/api/x", "eu", id="longer-wildcard-first"),
        pytest.param(["a.eu.acme.io"], "/x", "default", id="wildcard-not-covering-falls-through"),
        pytest.param(["acme.io"], "/api/x", "anywhere-api", id="apex-not-under-wildcard"),
        pytest.param(["b.acme.io"], "/api/health", "health-exact", id="exact-path-before-prefix"),
        pytest.param(["orders.acme.io", "orders.acme.io"], "/x", "default", id="two-hosts-are-no-host"),
        pytest.param([], "/api", "anywhere-api", id="no-host"),
        pytest.param(["off.acme.io"], "/x", "off", id="disabled-on-its-host"),
    ],
)
def test_a_host_and_path_select_the_contracts_route(
    servers: tuple[Server, Server], hosts: list[str], path: str, route: str
) -> None:
    fast, asgi = servers
    assert served_route(fast, hosts, path) == route
    assert served_route(asgi, hosts, path) == route


def test_random_hosts_and_paths_are_routed_alike_by_both_paths_and_preview(servers: tuple[Server, Server]) -> None:
    fast, asgi = servers
    seen: set[str] = set()

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.sampled_from(HOST_SPELLINGS), st.sampled_from(PATHS))
    def routed_alike(host: str, path: str) -> None:
        chosen = served_route(fast, [host], path)
        assert served_route(asgi, [host], path) == chosen, (host, path)
        assert chosen == expected_route(normalized(host), path), (host, path)
        headers = [(b"origin", b"https://app.example.com"), (b"access-control-request-method", b"GET"),
                   (b"host", host.encode())]  # fmt: skip
        assert preview(COMPILED, path, headers)[0].name == chosen, (host, path)
        seen.add(chosen)

    routed_alike()
    assert len(seen) >= 8, seen  # the property reached most routes


@pytest.mark.parametrize(
    ("host", "path"),
    [
        pytest.param("orders.acme.io", "/admin/x", id="exact-host"),
        pytest.param("a.eu.acme.io", "/api", id="wildcard"),
        pytest.param("10.0.0.7:80", "/x", id="ip-with-port"),
    ],
)
def test_explain_authority_shows_the_route_serve_chooses(servers: tuple[Server, Server], host: str, path: str) -> None:
    fast, _ = servers
    chosen = served_route(fast, [host], path)
    explained = run_cli("explain", "--policy", str(fast.policy_path), "--origin", "https://app.example.com",
                        "--method", "GET", "--path", path, "--authority", host)  # fmt: skip
    assert explained.stdout.startswith(f"route: {chosen} ("), explained.stdout + explained.stderr


def test_verify_asks_every_route_on_its_host_and_agrees(servers: tuple[Server, Server], tmp_path: Path) -> None:
    for server in servers:
        verified = run_cli("verify", "--url", f"http://127.0.0.1:{server.port}", "--policy", str(server.policy_path),
                           "--rate", "500", "--format", "json")  # fmt: skip
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert '"disagree": 0' in verified.stdout
        for name in ("orders", "orders-admin", "tenants", "eu", "health-exact", "ip", "anywhere-api"):
            assert f'"route": "{name}"' in verified.stdout, name
