"""The Gateway API conformance suite's CORS preflights against ``cors-handler serve --routes-dir DIR``.

DIR holds ``gateway/httproute-cors.yaml`` (our own HTTPRoute file with the suite's routes and the
added ones); the main policy allows none of the cases' origins, so a preflight that falls to a
broader route is refused. Every case of ``gateway/conformance_cases.py`` is sent on the wire to the
fast path and to ``--no-fast-path``: the two answers must be the same bytes (Date aside) and pass the
suite's own comparison, except the case refused by design (a ``*`` origin with credentials), which
must be refused instead, and fail the suite's comparison for that reason only.

Until the routes directory (``cors_handler.config.sources``) reads HTTPRoute documents, the module is skipped.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cors_handler.config.errors import Findings

from ..conftest import Server, fast_and_asgi, read_responses, run_cli, without_date
from .gateway.conformance_cases import (
    ADDED,
    CONFORMANCE,
    MAIN_ORIGINS,
    REFUSED_BY_DESIGN,
    REFUSED_RULE_SETTING,
    ROUTES_FILE,
    Case,
    compare,
    expected_answer,
)

sources = pytest.importorskip("cors_handler.config.sources", reason="the routes directory has not landed")


def _reads_httproutes() -> bool:
    """Whether a routes-directory file may hold HTTPRoute documents (not only ``routes: [...]``)."""
    found = Findings()
    sources.parse_source(ROUTES_FILE.name, ROUTES_FILE.read_bytes(), found)
    return all(finding.code != "route_source_not_routes" for finding in found)


pytestmark = [
    pytest.mark.e2e,
    pytest.mark.both_paths,
    pytest.mark.skipif(not _reads_httproutes(), reason="the routes directory does not read HTTPRoute documents yet"),
]

POLICY = {"allow_origins": MAIN_ORIGINS, "rate_limit": {"enabled": False}}


@pytest.fixture(scope="module")
def routes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("routes")
    shutil.copy(ROUTES_FILE, directory / "gateway-conformance.yaml")
    return directory


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, routes_dir: Path) -> Iterator[tuple[Server, Server]]:
    """The fast path and ``--no-fast-path`` on the same main policy and routes directory."""
    with fast_and_asgi(tmp_path_factory.mktemp("gateway-serve"), POLICY, ["--routes-dir", str(routes_dir)]) as both:
        yield both


def send(server: Server, case: Case) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(case.request())
        [answer] = read_responses(sock, 1) or [b""]
    return answer


def parse(answer: bytes) -> tuple[int, list[tuple[str, str]]]:
    """Status and header fields of one HTTP/1.1 answer, as the suite's round tripper sees them."""
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    fields = [line.split(":", 1) for line in head[1:]]
    return int(head[0].split(" ")[1]), [(name, value.strip()) for name, value in fields]


def answers(servers: tuple[Server, Server], case: Case) -> tuple[int, list[tuple[str, str]]]:
    """The one answer both paths give to ``case`` (asserted byte for byte, Date aside)."""
    fast, asgi = (send(server, case) for server in servers)
    assert fast, f"{case.id}: no answer"
    assert without_date(fast) == without_date(asgi), case.id
    return parse(fast)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CONFORMANCE if c.id not in REFUSED_BY_DESIGN])
def test_conformance_preflight(servers: tuple[Server, Server], case: Case) -> None:
    status, headers = answers(servers, case)
    assert compare(case.expected, status, headers) == [], (case.name, status, headers)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in ADDED])
def test_added_preflight(servers: tuple[Server, Server], case: Case) -> None:
    status, headers = answers(servers, case)
    assert compare(case.expected, status, headers) == [], (case.name, status, headers)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CONFORMANCE if c.id in REFUSED_BY_DESIGN])
def test_star_origin_with_credentials_is_refused_by_design(servers: tuple[Server, Server], case: Case) -> None:
    """The suite wants any origin echoed with credentials; we refuse the rule, fail closed (403, no CORS header)."""
    status, headers = answers(servers, case)
    assert compare(expected_answer(case), status, headers) == []
    assert compare(case.expected, status, headers) == ["expected status code to be one of [200, 204], got 403"]


def test_check_names_the_refused_rule(routes_dir: Path, tmp_path: Path) -> None:
    """``check --routes-dir`` lists the refusal with the HTTPRoute, the rule and the field."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"allow_origins: {MAIN_ORIGINS}\n")
    result = run_cli("check", "--policy", str(policy), "--routes-dir", str(routes_dir), "--format", "json")
    assert REFUSED_RULE_SETTING in result.stdout + result.stderr
