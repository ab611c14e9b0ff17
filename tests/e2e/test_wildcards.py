"""Issue 28 on the wire: `*` methods and headers with credentials, exposed headers on preflights, public routes.

Each answer that changed for an existing kind of policy is checked header by header
(the order included: Access-Control-Expose-Headers right after Access-Control-Allow-Headers)
and must be the same bytes (Date aside) from the protocol fast path and ``--no-fast-path``,
on a fresh connection, again (a cache hit), and split into small writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..conftest import exchange, fast_and_asgi, without_date

pytestmark = [pytest.mark.e2e, pytest.mark.both_paths]

APP = "https://app.example.com"
POLICY: dict[str, Any] = {
    "environment": "production",
    "allow_origins": [APP],
    "allow_methods": ["GET", "PUT"],
    "allow_headers": ["content-type"],
    "expose_headers": ["X-Request-Id", "ETag"],
    "max_age": 600,
    "rate_limit": {"enabled": False},
    "routes": [
        {"name": "creds", "path_prefix": "/creds", "allow_methods": ["*"], "allow_headers": ["*"],
         "allow_credentials": True},
        {"name": "open", "path_prefix": "/open", "allow_methods": ["*"], "allow_headers": ["*"],
         "expose_headers": ["x-id", "*"]},
        {"name": "public", "path_prefix": "/public", "allow_origins": ["*"], "expose_headers": []},
    ],
}  # fmt: skip
SECURITY = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("cache-control", "public, max-age=600"),
    ("x-cors-preflight", "enhanced-handler"),
]
VARY = ("vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")


def preflight(path: str, method: str, headers: str = "", origin: str = APP) -> bytes:
    head = f"OPTIONS {path} HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: {method}\r\n"
    extra = f"Access-Control-Request-Headers: {headers}\r\n" if headers else ""
    return (head + extra + "Connection: close\r\n\r\n").encode()


def allowed(origin: str, methods: str, headers: str | None, expose: str | None, credentials: bool) -> list:
    fields = [("access-control-allow-origin", origin), ("access-control-allow-methods", methods)]
    fields += [("access-control-allow-headers", headers)] if headers else []
    fields += [("access-control-expose-headers", expose)] if expose else []
    fields += [("access-control-max-age", "600")]
    fields += [("access-control-allow-credentials", "true")] if credentials else []
    return [("status", "204"), *fields, VARY, *SECURITY]


# (request, the answer's status and headers in order, without Date, content-length and connection)
CASES = [
    pytest.param(preflight("/creds", "PROPFIND", "Authorization, X-Trace"),
                 allowed(APP, "PROPFIND", "authorization, x-trace", "X-Request-Id, ETag", True),
                 id="credentials-star-echoes-the-method-and-every-header-authorization-included"),
    pytest.param(preflight("/creds", "GET"), allowed(APP, "GET", None, "X-Request-Id, ETag", True),
                 id="credentials-star-safelisted-method-echoed"),
    pytest.param(preflight("/open", "PATCH", "x-a"), allowed(APP, "PATCH", "x-a", "x-id, *", False),
                 id="no-credentials-star-echoes-and-exposes-as-written"),
    pytest.param(preflight("/open", "PATCH", "authorization, x-a"),
                 [("status", "403"), ("content-type", "application/json"), VARY, SECURITY[-1], *SECURITY[:3],
                  ("cache-control", "no-store")],
                 id="no-credentials-star-never-covers-authorization"),
    pytest.param(preflight("/api", "PUT", "content-type"),
                 allowed(APP, "GET, PUT", "content-type", "X-Request-Id, ETag", False),
                 id="listed-answer-gains-the-exposed-headers"),
    pytest.param(preflight("/public", "PUT", "content-type", origin="https://anyone.example"),
                 allowed("*", "GET, PUT", "content-type", None, False),
                 id="public-route-in-production-answers-star-and-exposes-nothing-when-empty"),
]  # fmt: skip


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with fast_and_asgi(Path(tmp_path_factory.mktemp("wildcards")), POLICY) as pair:
        yield pair


def fields(raw: bytes) -> list[tuple[str, str]]:
    """The status and header fields in order, without those that do not depend on the policy."""
    lines = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    pairs = [tuple(line.split(": ", 1)) for line in lines[1:]]
    return [("status", lines[0].split()[1])] + [
        (name, value) for name, value in pairs if name not in ("date", "content-length", "connection", "server")
    ]


@pytest.mark.parametrize(("request_bytes", "expected"), CASES)
def test_changed_answers_on_both_paths_byte_for_byte(servers: Any, request_bytes: bytes, expected: list) -> None:
    answers = []
    for server in servers:
        for chunk in (0, 0, 7):  # fresh (fills the cache), again (a hit), split bytes
            answer = without_date(exchange(server.port, request_bytes, chunk))
            assert fields(answer) == expected
            answers.append(answer)
    assert len(set(answers)) == 1


def test_the_public_route_starts_in_production_with_its_warning(servers: Any) -> None:
    for server in servers:
        assert "public_route" in server.logs()
