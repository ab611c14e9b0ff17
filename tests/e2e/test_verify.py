"""``cors-handler verify`` end to end: the real command against the real service (or small local servers) on loopback.

The small servers (``Recorder``) stand for what can sit in front of the
service: a proxy that answers preflights itself (no marker), one that
redirects, one that only says 429. They record what reached them, so the
rate bound and "only the given URL" are measured where the requests arrive.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from cors_handler.serve.pipeline import preview
from cors_handler.serve.responses import encode
from cors_handler.tools.verify import GET_ANSWERED_BY_SERVICE, NO_MARKER

from ..conftest import free_port, make_policy, run_cli
from ..deploy.chart import CHART, ENVIRONMENTS, environment_values, merge

pytestmark = pytest.mark.e2e

SUMMARY = re.compile(r"^verify: (\d+) cases, (\d+) agree, (\d+) disagree, (\d+) unreachable$", re.M)
SMALL = {"allow_origins": ["https://app.example.com"], "allow_methods": ["PUT"], "allow_headers": ["content-type"]}

Handler = Callable[[BaseHTTPRequestHandler], tuple[int, list[tuple[str, str]]]]


def environment_policy(environment: str) -> dict[str, Any]:
    """The policy the chart renders for the environment: values.yaml's, the environment file's merged on top."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    policy: dict[str, Any] = merge(defaults, environment_values(environment))["policy"]
    return policy


class Recorder:
    """A local HTTP server recording (monotonic time, method, path, Host) of every request; ``answer`` replies."""

    def __init__(self, answer: Handler) -> None:
        self.seen: list[tuple[float, str, str, str]] = []
        seen = self.seen

        class Handle(BaseHTTPRequestHandler):
            def _any(self) -> None:
                seen.append((time.monotonic(), self.command, self.path, self.headers.get("Host", "")))
                status, headers = answer(self)
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_OPTIONS = do_GET = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Callable[[Handler], Recorder]]:
    started: list[Recorder] = []

    def start(answer: Handler) -> Recorder:
        started.append(Recorder(answer))
        return started[-1]

    yield start
    for one in started:
        one.stop()


def permissive(request: BaseHTTPRequestHandler) -> tuple[int, list[tuple[str, str]]]:
    """What a proxy that answers every preflight itself says: yes to everything, and no marker."""
    h = request.headers
    return 204, [
        ("Access-Control-Allow-Origin", h.get("Origin", "")),
        ("Access-Control-Allow-Methods", h.get("Access-Control-Request-Method", "")),
        ("Access-Control-Allow-Headers", h.get("Access-Control-Request-Headers", "")),
        ("Access-Control-Max-Age", "86400"),
    ]


def verify(url: str, policy: Path, *args: str) -> tuple[int, str, str]:
    result = run_cli("verify", "--url", url, "--policy", str(policy), *args)
    return result.returncode, result.stdout, result.stderr


def policy_file(tmp_path: Path, policy: dict[str, Any], name: str = "given.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(policy))
    return path


def counts(stdout: str) -> tuple[int, int, int, int]:
    found = SUMMARY.search(stdout)
    assert found, stdout
    cases, agree, disagree, unreachable = (int(g) for g in found.groups())
    return cases, agree, disagree, unreachable


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_case_agrees_with_the_environment_s_policy(start_server: Any, environment: str) -> None:
    server = start_server(environment_policy(environment))
    code, out, err = verify(f"http://127.0.0.1:{server.port}", server.policy_path, "--rate", "200", "--format", "json")
    document = json.loads(out)
    assert (code, err) == (0, ""), out
    summary = document["summary"]
    assert summary["cases"] == summary["agree"] == len(document["cases"]) > 15
    assert {c["verdict"] for c in document["cases"]} == {"agree"}
    # the cases the policy allows and the ones it refuses are both there, answered by cors-handler
    assert {c["expected"]["allowed"] for c in document["cases"]} == {True, False}
    assert all(c["actual"]["marker"] for c in document["cases"])


def test_a_service_started_with_another_policy_is_caught_with_the_cases_named(
    start_server: Any, tmp_path: Path
) -> None:
    given = environment_policy("production")
    served = {**given, "allow_origins": ["https://app.example.com", "https://evilapp.example.com"], "max_age": 600}
    server = start_server(served)
    url = f"http://127.0.0.1:{server.port}"
    code, out, _ = verify(url, policy_file(tmp_path, given), "--rate", "200")
    assert code == 1
    lines = out.splitlines()
    assert (
        "disagree: default exact https://admin.example.com PUT: expected allowed, a browser would refuse: "
        "no Access-Control-Allow-Origin" in lines
    )
    assert (
        "disagree: default exact-prefix https://evilapp.example.com GET: expected refused (no Access-Control-Allow-"
        "Origin), a browser would allow (Access-Control-Allow-Origin https://evilapp.example.com)" in lines
    )
    assert "disagree: default exact https://app.example.com GET: Access-Control-Max-Age is 600, expected 86400" in lines
    cases, agree, disagree, unreachable = counts(out)
    assert (disagree, unreachable, agree + disagree) == (len(lines) - 1, 0, cases)
    # the JSON names the same cases
    code, doc, _ = verify(url, policy_file(tmp_path, given), "--rate", "200", "--format", "json")
    named = {c["id"] for c in json.loads(doc)["cases"] if c["verdict"] == "disagree"}
    assert (code, named) == (1, {line.split(": ")[1] for line in lines[:-1]})


def test_an_answer_without_the_marker_says_cors_handler_is_not_reached(recorder: Any, tmp_path: Path) -> None:
    proxy = recorder(permissive)
    code, out, _ = verify(proxy.url, policy_file(tmp_path, SMALL), "--rate", "200", "--format", "json")
    document = json.loads(out)
    assert code == 1
    assert document["summary"]["disagree"] == document["summary"]["cases"] > 5
    assert all(c["reasons"][0] == NO_MARKER for c in document["cases"])
    # the lookalikes are also named for what the browser would do
    evil = next(c for c in document["cases"] if c["origin"] == "https://evilapp.example.com")
    assert evil["reasons"][1].startswith("expected refused"), evil


def test_the_rate_bound_holds_where_the_requests_arrive(recorder: Any, tmp_path: Path) -> None:
    server = recorder(permissive)
    code, out, _ = verify(server.url, policy_file(tmp_path, SMALL), "--rate", "10", "--path", "/api/x", "--actual")
    times = [t for t, *_ in server.seen]
    assert code == 1 and len(times) == counts(out)[0] > 12
    # fixed spacing of 0.1 s: never more than 11 in a second (12 allowed for arrival jitter on a loaded machine)
    assert all(later - first >= 1.0 for first, later in zip(times, times[12:], strict=False)), times
    assert (len(times) - 1) / (times[-1] - times[0]) <= 10.5
    assert {path for _, _, path, _ in server.seen} == {"/api/x"}


def test_nothing_is_contacted_but_the_given_url(recorder: Any, tmp_path: Path) -> None:
    elsewhere = recorder(permissive)
    redirecting = recorder(lambda request: (307, [("Location", f"{elsewhere.url}{request.path}")]))
    code, out, _ = verify(redirecting.url, policy_file(tmp_path, SMALL), "--rate", "200", "--actual")
    assert code == 1
    assert elsewhere.seen == []
    assert len(redirecting.seen) == counts(out)[0]
    assert {host for *_, host in redirecting.seen} == {f"127.0.0.1:{redirecting.port}"}


def test_429_is_waited_out_and_retried_not_a_disagreement(start_server: Any, tmp_path: Path) -> None:
    policy = {**SMALL, "rate_limit": {"average": 8, "period": 1, "burst": 4}}
    server = start_server(policy)
    code, out, _ = verify(f"http://127.0.0.1:{server.port}", server.policy_path, "--rate", "100")
    cases, agree, _, _ = counts(out)
    assert (code, agree) == (0, cases), out
    limited = sum(v for k, v in server.metrics().items() if 'result="rate_limited"' in k)
    assert limited > 0  # some answers were 429: retried until answered


def test_429_forever_is_bounded_and_unreachable(recorder: Any, tmp_path: Path) -> None:
    always = recorder(lambda request: (429, [("Retry-After", "0")]))
    code, out, _ = verify(always.url, policy_file(tmp_path, SMALL), "--rate", "200")
    cases, agree, disagree, unreachable = counts(out)
    assert (code, agree, disagree, unreachable) == (1, 0, 0, cases)
    assert out.count("still rate limited (429) after 5 retries") == 3
    assert len(always.seen) == 3 * 6  # three cases, each sent once and retried 5 times; the rest is not sent


class RawServer:
    """A loopback server that reads each request's head and writes ``respond(head)``, byte for byte, then closes."""

    def __init__(self, respond: Callable[[bytes], bytes]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(30)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, args=(respond,), daemon=True).start()

    def _serve(self, respond: Callable[[bytes], bytes]) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                with conn:
                    conn.settimeout(5)
                    head = b""
                    while b"\r\n\r\n" not in head and (chunk := conn.recv(65536)):
                        head += chunk
                    conn.sendall(respond(head))

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[bytes], bytes]], RawServer]]:
    started: list[RawServer] = []

    def start(respond: Callable[[bytes], bytes]) -> RawServer:
        started.append(RawServer(respond))
        return started[-1]

    yield start
    for one in started:
        one.close()


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(b"garbage\r\n\r\n", id="not-http"),
        pytest.param(b"HTTP/1.1 204 No Content\r\n" + b"x-a: b\r\n" * 200 + b"\r\n", id="too-many-headers"),
        pytest.param(b"", id="closed-without-answer"),
    ],
)
def test_a_hostile_answer_is_unreachable_not_a_crash(raw_server: Any, tmp_path: Path, reply: bytes) -> None:
    server = raw_server(lambda head: reply)
    code, out, err = verify(server.url, policy_file(tmp_path, SMALL))
    cases, _, _, unreachable = counts(out)
    assert (code, unreachable) == (1, cases) and "Traceback" not in out + err
    assert len(out.splitlines()) == cases + 1  # one line per case, whatever the server sent


def request_of(head: bytes) -> tuple[str, list[tuple[bytes, bytes]]]:
    """The target and the header fields (lower-case names) of a request head as verify sends it."""
    lines = head.split(b"\r\n")
    target = lines[0].split(b" ")[1].decode()
    fields = [line.split(b":", 1) for line in lines[1:] if b":" in line]
    return target, [(name.strip().lower(), value.strip()) for name, value in fields]


def impostor(policy: Any, trick: Callable[[bytes], list[bytes]]) -> Callable[[bytes], bytes]:
    """A server answering as cors-handler where it allows, and granting every other preflight with credentials.

    Its allowed answers are cors-handler's own bytes (the service's pipeline on ``policy``); every
    other preflight gets a 204 with the marker and the CORS header lines ``trick`` writes for the
    origin, each spelled so that a lenient client reads no grant in it while a browser does.
    """

    def respond(head: bytes) -> bytes:
        target, fields = request_of(head)
        _, response, _ = preview(policy, target, fields)
        if response.status == 204 and any(name == b"access-control-allow-origin" for name, _ in response.headers):
            return encode(response, b"date: Mon, 07 Dec 2026 18:00:00 GMT\r\n", close=True)
        found = dict(fields)
        grant = [
            b"HTTP/1.1 204 No Content",
            b"x-cors-preflight: enhanced-handler",
            *trick(found[b"origin"]),
            b"access-control-allow-credentials: true",
            b"access-control-allow-methods: " + found[b"access-control-request-method"],
            b"access-control-allow-headers: " + found.get(b"access-control-request-headers", b""),
            b"access-control-max-age: %d" % policy.default.max_age,
            b"access-control-allow-private-network: true",
            b"connection: close",
        ]
        return b"\r\n".join(grant) + b"\r\n\r\n"

    return respond


@pytest.mark.parametrize(
    ("trick", "named"),
    [
        # browsers trim a field value's whitespace (Fetch: normalize); http.client keeps the trailing space
        pytest.param(lambda origin: [b"access-control-allow-origin: " + origin + b" "], "a browser would allow",
                     id="origin-with-a-trailing-space"),
        # whitespace before the colon: http.client stops reading fields there, Chromium reads on
        pytest.param(lambda origin: [b"X-Pad : 1", b"access-control-allow-origin: " + origin],
                     "whitespace before the colon", id="a-field-name-with-whitespace-before-the-colon"),
    ],
)  # fmt: skip
def test_an_impostor_granting_refused_origins_is_caught(
    raw_server: Any, tmp_path: Path, trick: Callable[[bytes], list[bytes]], named: str
) -> None:
    given = policy_file(tmp_path, SMALL)
    server = raw_server(impostor(make_policy(**SMALL), trick))
    code, out, err = verify(server.url, given, "--rate", "200", "--format", "json")
    document = json.loads(out)
    # the impostor grants what cors-handler refuses (not a 204); the rest are cors-handler's own bytes
    granted = [c for c in document["cases"] if c["expected"]["status"] != 204]
    genuine = [c for c in document["cases"] if c["expected"]["status"] == 204]
    assert code == 1 and err == "" and granted and genuine
    assert {c["verdict"] for c in granted} == {"disagree"}, [c["id"] for c in granted if c["verdict"] == "agree"]
    assert all(any(named in reason for reason in c["reasons"]) for c in granted), granted[0]["reasons"]
    assert {c["verdict"] for c in genuine} == {"agree"}  # no false alarm


def test_hostile_values_are_a_disagreement_not_a_crash(raw_server: Any, tmp_path: Path) -> None:
    """Latin-1 superscript two passes str.isdigit(): as Access-Control-Max-Age and as a 429's Retry-After."""
    policy = make_policy(**SMALL)
    answered: list[bytes] = []

    def respond(head: bytes) -> bytes:
        answered.append(head)
        if len(answered) == 1:
            return b"HTTP/1.1 429 Too Many Requests\r\nretry-after: \xb2\r\ncontent-length: 0\r\n\r\n"
        target, fields = request_of(head)
        _, response, _ = preview(policy, target, fields)
        wire = encode(response, close=True)
        return re.sub(rb"(?m)^access-control-max-age: \d+", b"access-control-max-age: \xb2", wire)

    server = raw_server(respond)
    code, out, err = verify(server.url, policy_file(tmp_path, SMALL), "--rate", "200")
    cases, agree, disagree, unreachable = counts(out)
    assert (code, unreachable) == (1, 0) and "Traceback" not in out + err, out + err
    assert len(answered) == cases + 1  # the 429 was retried
    lines = out.splitlines()
    assert disagree == len(lines) - 1 > 0
    assert all("Access-Control-Max-Age is nothing, expected" in line for line in lines[:-1]), lines


def test_an_unreachable_url_is_counted_unreachable(tmp_path: Path) -> None:
    start = time.monotonic()
    code, out, _ = verify(f"http://127.0.0.1:{free_port()}", policy_file(tmp_path, SMALL))
    cases, agree, disagree, unreachable = counts(out)
    assert (code, agree, disagree, unreachable) == (1, 0, 0, cases)
    assert "Connection refused" in out and "not sent:" in out
    assert time.monotonic() - start < 15


def test_actual_against_the_bare_service_says_the_edge_is_missing(start_server: Any) -> None:
    server = start_server(SMALL)
    code, out, _ = verify(
        f"http://127.0.0.1:{server.port}", server.policy_path, "--rate", "200", "--actual", "--format", "json"
    )
    document = json.loads(out)
    gets = [c for c in document["cases"] if c["id"].endswith(" GET actual")]
    assert code == 1 and gets
    assert all(c["verdict"] == "disagree" and c["reasons"][0] == GET_ANSWERED_BY_SERVICE for c in gets)
    assert {c["verdict"] for c in document["cases"] if c not in gets} == {"agree"}


@pytest.mark.parametrize(
    ("policy", "args", "named"),
    [
        pytest.param({"allow_origins": ["*"]}, [], "allow_origins[0]", id="policy-refused-as-check-does"),
        pytest.param(SMALL, ["--url", "ftp://x"], "--url", id="bad-url"),
        pytest.param(SMALL, ["--url", "http://x/api"], "--url", id="url-with-a-path"),
        pytest.param(SMALL, ["--rate", "0"], "--rate", id="rate-zero"),
        pytest.param(SMALL, ["--path", "api"], "--path", id="relative-path"),
    ],
)
def test_a_bad_configuration_exits_2_with_every_finding(
    tmp_path: Path, policy: dict[str, Any], args: list[str], named: str
) -> None:
    code, out, err = verify("http://127.0.0.1:1", policy_file(tmp_path, policy), *args)
    assert (code, out) == (2, "")
    assert err.startswith("invalid configuration") and named in err and "Traceback" not in err
