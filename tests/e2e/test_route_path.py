"""``explain --path``, ``verify --path`` and ``serve`` (both paths) choose the same route for every request target.

``serve.pipeline.route_path`` turns a target into the path a route is chosen by
(percent-decoded, query and fragment dropped), for the fast path, and through
``preview`` for explain and verify; the ASGI app routes by uvicorn's scope path.
Each route here answers with its own Access-Control-Max-Age (a disabled one with
404), so the running service's answer names the route it chose.
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

from cors_handler.serve.pipeline import preview, route_path

from ..conftest import Server, fast_and_asgi, make_policy, read_responses, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.both_paths]

ROUTES = {"admin": 101, "admin-x": 102, "api": 103, "caf\u00e9": 104, "percent": 105}
POLICY: dict[str, Any] = {
    "allow_origins": ["https://app.example.com"],
    "max_age": 100,
    "rate_limit": {"enabled": False},
    "routes": [
        {"name": "admin", "path_prefix": "/admin", "max_age": 101},
        {"name": "admin-x", "path_prefix": "/admin/x", "max_age": 102},
        {"name": "api", "path_prefix": "/api", "max_age": 103},
        {"name": "caf\u00e9", "path_prefix": "/caf\u00e9", "max_age": 104},
        {"name": "percent", "path_prefix": "/a%b", "max_age": 105},
        {"name": "off", "path_prefix": "/off", "enabled": False},
    ],
}
BY_MAX_AGE = {str(age): name for name, age in {"default": 100, **ROUTES}.items()}
EXAMPLES = int(os.environ.get("CORS_ROUTE_PATH_EXAMPLES", "2000" if os.environ.get("CORS_TEST_LONG") else "150"))
ISSUE_TARGETS = ["/admin?x=1", "/%61dmin/x", "/admin#x", "/%61dmin/%78?y#z", "/caf%C3%A9/menu", "/a%25b", "/%6Fff"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    with fast_and_asgi(tmp_path_factory.mktemp("route-path"), POLICY) as both:
        yield both


def served_route(server: Server, target: str) -> str | None:
    """The route the running service chose for ``target`` (from its answer), or None when it answered no preflight."""
    head = (f"OPTIONS {target} HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://app.example.com\r\n"
            "Access-Control-Request-Method: GET\r\n\r\n")  # fmt: skip
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head.encode("ascii"))
        [answer] = read_responses(sock, 1) or [b""]
    if answer.startswith(b"HTTP/1.1 404 ") and b"route_disabled" in answer:
        return "off"
    found = re.search(rb"\r\naccess-control-max-age: (\d+)\r\n", answer)
    return BY_MAX_AGE[found[1].decode()] if found else None


def previewed_route(target: str) -> str:
    """The route explain and verify choose: ``preview``'s, as they call it."""
    headers = [(b"origin", b"https://app.example.com"), (b"access-control-request-method", b"GET")]
    return preview(COMPILED, target, headers)[0].name


COMPILED = make_policy(**POLICY)


@pytest.mark.parametrize("target", ISSUE_TARGETS)
def test_explain_and_verify_choose_the_route_serve_chooses(
    servers: tuple[Server, Server], tmp_path: Path, target: str
) -> None:
    fast, asgi = servers
    chosen = served_route(fast, target)
    assert chosen is not None and chosen == served_route(asgi, target)
    assert chosen != "default"  # each of these targets is under a route once decoded
    explained = run_cli("explain", "--policy", str(fast.policy_path), "--origin", "https://app.example.com",
                        "--method", "GET", "--path", target)  # fmt: skip
    assert explained.stdout.startswith(f"route: {chosen} "), explained.stdout + explained.stderr
    for server in (fast, asgi):
        verified = run_cli("verify", "--url", f"http://127.0.0.1:{server.port}", "--policy", str(fast.policy_path),
                           "--path", target, "--rate", "200", "--format", "json")  # fmt: skip
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert '"disagree": 0' in verified.stdout and f'"route": "{chosen}"' in verified.stdout


PIECES = ["admin", "x", "api", "off", "caf%C3%A9", "caf%c3%a9", "a%25b", "a%b", "%61dmin", "%2F", "%2f", "%6Fff",
          "", ".", "..", "%", "%zz", "%ff", "admin%2Fx", "A", "~", ";", "x=1", "@", "!"]  # fmt: skip
TARGETS = st.builds(
    lambda segments, query, fragment: "/" + "/".join(segments) + query + fragment,
    st.lists(st.sampled_from(PIECES), max_size=5),
    st.sampled_from(["", "?", "?x=1", "?/admin", "?a#b", "?%2F"]),
    st.sampled_from(["", "#", "#x", "#/admin", "#?q"]),
)


def test_random_targets_are_routed_alike_by_serve_and_by_explain_and_verify(servers: tuple[Server, Server]) -> None:
    fast, asgi = servers
    seen: dict[str, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(TARGETS)
    def routed_alike(target: str) -> None:
        chosen = served_route(fast, target)
        assert served_route(asgi, target) == chosen, target
        if chosen is None:  # refused as HTTP (both paths alike): explain and verify refuse it too
            with pytest.raises(ValueError, match="request target"):
                route_path(target.encode())
            seen["refused"] = seen.get("refused", 0) + 1
            return
        assert previewed_route(target) == chosen, target
        seen[chosen] = seen.get(chosen, 0) + 1

    routed_alike()
    # the property was exercised, not vacuous: most routes were reached by some target
    assert len(set(seen) - {"refused"}) >= 5, seen
