"""The candidate policy against the running service: counted exactly, never changing a response byte.

One mixed traffic set where the live and the candidate policy differ by origin, method,
header and route (a prefix the candidate adds, one it disables) goes, pipelined, to a
service with the live policy alone and to two with the candidate loaded (fast path and
--no-fast-path). The responses must be identical byte for byte (Date aside) and every
``cors_candidate_decisions_total`` pair must equal what the traffic implies.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..conftest import NO_FAST_PATH_ENV, Server, make_policy, read_responses, rss_kib, run_cli, wait_for
from .pipeline import pipeline, preflight_bytes

pytestmark = pytest.mark.e2e

APP, OLD, REPORTS = "https://app.example.com", "https://old.example.com", "https://reports.example.com"
LIVE: dict[str, Any] = {
    "environment": "production",
    "allow_origins": [APP, OLD],
    "allow_headers": ["content-type", "x-trace"],
    "rate_limit": {"enabled": False},
    "routes": [
        {"name": "admin", "path_prefix": "/admin", "allow_methods": ["GET", "DELETE"]},
        {"name": "legacy", "path_prefix": "/legacy"},
        {"name": "off", "path_prefix": "/off", "enabled": False},  # 404 before any decision
    ],
}
CANDIDATE: dict[str, Any] = {
    "environment": "production",
    "allow_origins": [APP],  # drops OLD
    "allow_headers": ["content-type"],  # drops x-trace
    "rate_limit": {"enabled": False},
    "routes": [
        {"name": "admin", "path_prefix": "/admin", "allow_methods": ["GET"]},  # drops DELETE
        {"name": "reports", "path_prefix": "/admin/reports", "allow_origins": [REPORTS]},  # a new route
        {"name": "legacy", "path_prefix": "/legacy", "enabled": False},  # disabled
    ],
}


@dataclass(frozen=True)
class Row:
    path: str
    origin: str
    method: str
    headers: str | None
    pna: bool
    times: int
    counted: tuple[str, str, str] | None  # (route, live, candidate); None: not a decided preflight

    def raw(self) -> bytes:
        lines = [f"OPTIONS {self.path} HTTP/1.1", "Host: test", f"Origin: {self.origin}",
                 f"Access-Control-Request-Method: {self.method}"]  # fmt: skip
        if self.headers is not None:
            lines.append(f"Access-Control-Request-Headers: {self.headers}")
        if self.pna:
            lines.append("Access-Control-Request-Private-Network: true")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


TRAFFIC = {
    "agree": Row("/api/items", APP, "PUT", "content-type", False, 5, ("default", "allowed", "allowed")),
    "origin": Row("/api/items", OLD, "GET", None, False, 4, ("default", "allowed", "origin_not_allowed")),
    "header": Row("/api/items", APP, "PUT", "x-trace", False, 3, ("default", "allowed", "header_not_allowed")),
    "header spelled otherwise": Row("/api/x", APP, "PUT", "Content-Type, X-Trace", False, 2,
                                    ("default", "allowed", "header_not_allowed")),
    "method": Row("/admin/users", APP, "DELETE", None, False, 3, ("admin", "allowed", "method_not_allowed")),
    "route the candidate adds, refusing": Row("/admin/reports/q", APP, "GET", None, False, 2,
                                              ("admin", "allowed", "origin_not_allowed")),
    "route the candidate adds, allowing": Row("/admin/reports", REPORTS, "GET", None, False, 2,
                                              ("admin", "origin_not_allowed", "allowed")),
    "route the candidate disables": Row("/legacy/a", APP, "GET", None, False, 2, ("legacy", "allowed", "disabled")),
    "both refuse the origin": Row("/api", "https://evil.example.net", "GET", None, False, 3,
                                  ("default", "origin_not_allowed", "origin_not_allowed")),
    "both refuse private network": Row("/api", APP, "GET", None, True, 1,
                                       ("default", "private_network_not_allowed", "private_network_not_allowed")),
    "malformed origin": Row("/api", "app.example.com", "GET", None, False, 2, ("default", "invalid", "invalid")),
}  # fmt: skip
NOT_DECIDED = [  # answered without a policy decision: never counted
    b"OPTIONS /off/x HTTP/1.1\r\nHost: test\r\nOrigin: https://app.example.com\r\n"
    b"Access-Control-Request-Method: GET\r\n\r\n",
    b"OPTIONS /api HTTP/1.1\r\nHost: test\r\nOrigin: https://app.example.com\r\n\r\n",
    b"OPTIONS /api HTTP/1.1\r\nHost: test\r\nOrigin: " + b"https://" + b"a" * 600 + b".com\r\n"
    b"Access-Control-Request-Method: GET\r\n\r\n",
]


def requests_in_order() -> list[bytes]:
    """Every row's request ``times`` times, shuffled (misses and hits interleaved), plus the undecided ones."""
    requests = [row.raw() for row in TRAFFIC.values() for _ in range(row.times)] + NOT_DECIDED
    random.Random(19).shuffle(requests)
    return requests


def expected_counts() -> Counter[tuple[str, str, str]]:
    counts: Counter[tuple[str, str, str]] = Counter()
    for row in TRAFFIC.values():
        if row.counted:
            counts[row.counted] += row.times
    return counts


def send_pipelined(port: int, requests: list[bytes], batch: int = 8, split: int = 0) -> list[bytes]:
    """The requests pipelined in batches on one connection (each batch in ``split``-byte writes if set);
    the responses with their Date removed."""
    responses: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start in range(0, len(requests), batch):
            chunk = requests[start : start + batch]
            data = b"".join(chunk)
            for i in range(0, len(data), split or len(data)):
                s.sendall(data[i : i + (split or len(data))])
            responses += read_responses(s, len(chunk))
    return [re.sub(rb"(?im)^date: [^\r]*\r\n", b"", r) for r in responses]


def decisions(server: Server) -> dict[tuple[str, str, str], float]:
    found = {}
    for key, value in server.metrics().items():
        if key.startswith("cors_candidate_decisions_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', key))
            found[(labels["route"], labels["live"], labels["candidate"])] = value
    return found


def nonzero(counts: dict[tuple[str, str, str], float]) -> dict[tuple[str, str, str], float]:
    return {key: value for key, value in counts.items() if value}


def start_with_candidate(start_server: Any, tmp_path: Path, candidate: dict[str, Any], *args: str) -> Server:
    path = tmp_path / f"candidate-{len(list(tmp_path.glob('candidate-*')))}.yaml"
    path.write_text(yaml.safe_dump(candidate))
    server: Server = start_server(LIVE, args=["--candidate", str(path), *args])
    return server


@pytest.mark.parametrize("path_args", [[], ["--no-fast-path"]], ids=["fast-path", "asgi-path"])
def test_every_pair_is_counted_exactly_and_every_response_is_the_live_policys(
    start_server: Any, tmp_path: Path, path_args: list[str]
) -> None:
    reference: Server = start_server(LIVE, args=path_args)
    shadowed = start_with_candidate(start_server, tmp_path, CANDIDATE, *path_args)
    requests = requests_in_order()
    expected = send_pipelined(reference.port, requests)
    answered = send_pipelined(shadowed.port, requests)
    assert len(answered) == len(requests)
    for request, want, got in zip(requests, expected, answered, strict=True):
        assert got == want, request  # the candidate never changes a response byte
    assert {int(r.split(b" ", 2)[1]) for r in answered} == {204, 400, 403, 404}
    assert nonzero(decisions(shadowed)) == expected_counts()
    # the same traffic again, each batch written 7 bytes at a time: same bytes back, every request counted again
    assert send_pipelined(shadowed.port, requests, split=7) == expected
    twice = {key: 2 * count for key, count in expected_counts().items()}
    assert nonzero(decisions(shadowed)) == twice
    assert {route for route, _, _ in decisions(shadowed)} == {"default", "admin", "legacy", "off"}
    metrics = shadowed.metrics()
    assert metrics[f'cors_candidate_info{{version="{make_policy(**CANDIDATE).version}"}}'] == 1
    assert metrics[f'cors_policy_info{{environment="production",version="{make_policy(**LIVE).version}"}}'] == 1
    assert not any(key.startswith("cors_candidate") for key in reference.metrics())
    if not path_args and os.environ.get(NO_FAST_PATH_ENV) != "1":  # repeats answered (and counted) by the fast path
        assert metrics["cors_fast_path_responses_total"] > 0

    # one log line per distinct disagreeing key (route, origin, method, request headers)
    lines = [json.loads(line) for line in shadowed.logs().splitlines() if "decides differently" in line]
    disagreeing = [row for row in TRAFFIC.values() if row.counted and row.counted[1] != row.counted[2]]
    assert len(lines) == len(disagreeing)
    assert {(line["origin"], line["method"], line["live"], line["candidate"]) for line in lines} == {
        (row.origin, row.method, row.counted[1], row.counted[2]) for row in disagreeing if row.counted
    }
    assert {line["candidate_route"] for line in lines} >= {"reports", "legacy"}


def test_candidate_reload_and_an_invalid_candidate_refused(start_server: Any, tmp_path: Path) -> None:
    path = tmp_path / "candidate.yaml"
    path.write_text(yaml.safe_dump(CANDIDATE))
    server: Server = start_server(LIVE, env={"CORS_CANDIDATE_POLICY_FILE": str(path)})
    old = TRAFFIC["origin"]
    pipeline(server.port, [old.raw()] * 3)
    assert nonzero(decisions(server)) == {("default", "allowed", "origin_not_allowed"): 3}

    def reloads(result: str) -> float:
        return server.metrics()[f'cors_candidate_reloads_total{{result="{result}"}}']

    fixed = {**CANDIDATE, "allow_origins": [APP, OLD]}  # the candidate, corrected
    path.write_text(yaml.safe_dump(fixed))
    wait_for(lambda: reloads("success") == 1, "the corrected candidate is reloaded", timeout=10.0)
    version = make_policy(**fixed).version
    assert server.metrics()[f'cors_candidate_info{{version="{version}"}}'] == 1
    pipeline(server.port, [old.raw()] * 2)  # the same key, now decided by the new candidate (fresh cache)
    assert nonzero(decisions(server)) == {("default", "allowed", "origin_not_allowed"): 3,
                                          ("default", "allowed", "allowed"): 2}  # fmt: skip

    path.write_text("allow_origins: [https://app.example.com, 'ftp//bad']\nallow_methods: ['B AD']\n")
    wait_for(lambda: reloads("failure") == 1, "the invalid candidate is refused", timeout=10.0)
    server.proc.send_signal(signal.SIGHUP)  # SIGHUP reloads both files: the candidate is refused again
    wait_for(lambda: reloads("failure") == 2, "SIGHUP reloads the candidate", timeout=10.0)
    metrics = server.metrics()
    assert metrics[f'cors_candidate_info{{version="{version}"}}'] == 1  # the previous candidate stays
    assert metrics['cors_policy_reloads_total{result="failure"}'] == 0  # the live policy's count is its own
    assert metrics['cors_policy_reloads_total{result="success"}'] == 1  # SIGHUP reloaded the live one
    assert server.preflight(OLD).status == 204
    assert nonzero(decisions(server))[("default", "allowed", "allowed")] == 3
    errors = [json.loads(line) for line in server.logs().splitlines() if "candidate policy reload failed" in line]
    assert {e["setting"] for e in errors} >= {"allow_origins[1]", "allow_methods[0]"}


def test_an_invalid_candidate_stops_startup_naming_every_error(tmp_path: Path) -> None:
    live, candidate = tmp_path / "live.yaml", tmp_path / "candidate.yaml"
    live.write_text(yaml.safe_dump(LIVE))
    candidate.write_text("allow_origins: ['ftp//bad']\nmax_age: -1\nallow_orgins: []\n")
    done = run_cli("serve", "--port", "1", "--policy", str(live), "--candidate", str(candidate))
    assert done.returncode == 2
    assert f"candidate policy {candidate}" in done.stderr and "allow_orgins" in done.stderr
    assert "Traceback" not in done.stderr


def test_memory_stays_bounded_under_a_random_origin_flood_with_a_candidate(start_server: Any, tmp_path: Path) -> None:
    # live allows every subdomain, the candidate none of them: every key is a new disagreement
    live = {"allow_origins": ["https://*.example.com"], "cache_size": 1000, "rate_limit": {"enabled": False}}
    path = tmp_path / "candidate.yaml"
    path.write_text(yaml.safe_dump({**live, "allow_origins": [APP]}))
    server: Server = start_server(live, args=["--candidate", str(path)])
    rng = random.Random(7)

    def flood(count: int) -> None:
        origins = (f"https://{rng.getrandbits(64):x}.example.com" for _ in range(count))
        assert set(pipeline(server.port, [preflight_bytes(origin) for origin in origins])) == {204}

    flood(20_000)  # fills the cache, the log's memory of keys and the allocator's pools
    before = rss_kib(server.proc.pid)
    flood(40_000)
    growth = rss_kib(server.proc.pid) - before
    metrics = server.metrics()
    print(f"RSS growth over 40,000 more random origins with a candidate: {growth} KiB")
    assert metrics["cors_response_cache_entries"] <= 1000
    assert nonzero(decisions(server)) == {("default", "allowed", "origin_not_allowed"): 60_000}
    assert growth < 4096
    logged = sum("decides differently" in line for line in server.logs().splitlines())
    assert 0 < logged < 60_000 / 10  # throttled (10 lines a second)
