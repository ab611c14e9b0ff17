"""Shared helpers: build policies in-process, and start the real service on a loopback port."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cors_handler.config.compile import Compiled, compile_settings
from cors_handler.config.settings import load_settings
from cors_handler.cors.model import Policy

# Set to 1 to start every test server with --no-fast-path (tests/e2e/conftest.py does, for each module's second run).
NO_FAST_PATH_ENV = "CORS_TEST_NO_FAST_PATH"
# Set to 1 by ``scripts/test.sh --fast``: a test not marked e2e that starts a process fails, naming the marker.
FAST_TIER_ENV = "CORS_TEST_FAST"


def pytest_configure(config: pytest.Config) -> None:
    """The fast tier (``-m "not e2e"`` with FAST_TIER_ENV) starts no process: one that does fails, naming the marker.

    Process starts are refused for the whole session, fixtures of every scope included: under
    ``-m "not e2e"`` whatever starts one belongs to a test that lacks ``pytest.mark.e2e``.
    """
    if os.environ.get(FAST_TIER_ENV) != "1":
        return

    def refuse(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        pytest.fail(f"the fast tier starts a process ({args!r}): mark its test pytest.mark.e2e")

    subprocess.Popen.__init__ = refuse  # type: ignore[method-assign]


class FakeClock:
    """An injectable monotonic clock for limiter and throttle tests; advance ``now`` by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_compiled(**overrides: Any) -> Compiled:
    """A compiled policy and its warnings from defaults plus ``overrides``, ignoring the caller's CORS_* env."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("CORS_")}
    try:
        return compile_settings(load_settings(**overrides))
    finally:
        os.environ.update(saved)


def make_policy(**overrides: Any) -> Policy:
    """A compiled policy from defaults plus ``overrides``, ignoring the caller's CORS_* env."""
    return make_compiled(**overrides).policy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def exchange(port: int, raw: bytes, chunk: int = 0) -> bytes:
    """Send ``raw`` (in ``chunk``-sized writes if set) and read until the server closes or 5 s pass."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            for i in range(0, len(raw), chunk or len(raw) or 1):
                s.sendall(raw[i : i + (chunk or len(raw))])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before we finished: that is the point
        return read_until_closed(s)


def read_until_closed(sock: socket.socket) -> bytes:
    """Every byte the peer sends until it closes, resets or the socket's timeout passes."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def read_responses(sock: socket.socket, count: int) -> list[bytes]:
    """Read ``count`` whole HTTP/1.1 responses (Content-Length bodies, or none) from a kept-alive socket."""
    data, responses = b"", []
    while len(responses) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            length = re.search(rb"(?im)^content-length: *(\d+)\r$", data[: head_end + 2])
            end = head_end + 4 + (int(length.group(1)) if length else 0)
            if len(data) >= end:
                responses.append(data[:end])
                data = data[end:]
                continue
        received = sock.recv(65536)
        if not received:
            break
        data += received
    return responses


def without_date(response: bytes) -> bytes:
    """``response`` (one or many, as bytes on the wire) without its Date lines: the only bytes that vary by clock."""
    return re.sub(rb"(?im)^date: [^\r\n]*\r\n", b"", response)


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def merge_headers(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Response headers by lower-case name; repeated headers joined with ", " (RFC 9110 list form)."""
    merged: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return merged


def write_policy(tmp_path: Path, data: str | Mapping[str, Any], name: str = "policy.yaml") -> str:
    """Write ``data`` (YAML text, or a mapping dumped as YAML) to ``tmp_path / name``; the file's path."""
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(dict(data)))
    return str(path)


def wait_for(condition: Callable[[], object], what: str = "condition", timeout: float = 5.0) -> float:
    """Poll ``condition`` until it holds; the seconds it took. Fails the test, naming ``what``, after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not met within {timeout}s")
        time.sleep(0.02)
    return time.monotonic() - start


def metric_samples(registry: CollectorRegistry) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """What a scrape of ``registry`` shows: sample name -> sorted (label, value) pairs -> value."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    """Signal a child process and reap it; kill it if it has not exited within ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class HTTPResult:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Server:
    """A `cors-handler serve` subprocess on 127.0.0.1 with its own env and policy file."""

    def __init__(
        self, tmp: Path, policy: Mapping[str, Any] | None, env: Mapping[str, str], args: list[str], port: int = 0
    ) -> None:
        self.port = port or free_port()  # a port again: a container restarted in its pod keeps its address
        self.log_path = tmp / f"serve-{self.port}.log"
        self.policy_path: Path | None = None
        cmd = [sys.executable, "-m", "cors_handler", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if policy is not None:
            self.policy_path = tmp / f"policy-{self.port}.yaml"
            self.policy_path.write_text(yaml.safe_dump(dict(policy)))
            cmd += ["--policy", str(self.policy_path)]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("CORS_")}
        full_env.update(env)
        if os.environ.get(NO_FAST_PATH_ENV) == "1":
            args = [*args, "--no-fast-path"]  # run the same tests through the ASGI path only
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd + args, stdout=self._log, stderr=subprocess.STDOUT, env=full_env)
        self._conn: http.client.HTTPConnection | None = None
        self.wait_ready()

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.logs()}")
            try:
                if self.request("GET", "/ready", fresh=True).status == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(
        self, method: str, path: str, headers: Mapping[str, str] | list[tuple[str, str]] | None = None,
        body: bytes | None = None, fresh: bool = False,
    ) -> HTTPResult:  # fmt: skip
        """One request on a kept-alive connection (``fresh``: on a new one)."""
        reused = not fresh and self._conn is not None
        if fresh or self._conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            if not fresh:
                self._conn = conn
        else:
            conn = self._conn
        items = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
        try:
            skip_host = any(name.lower() == "host" for name, _ in items)  # the caller's Host, the only one
            conn.putrequest(method, path, skip_host=skip_host, skip_accept_encoding=True)
            for name, value in items:
                conn.putheader(name, value)
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
        except (http.client.HTTPException, OSError) as exc:
            self._conn = None
            conn.close()
            if reused and isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError):
                return self.request(method, path, headers, body)  # the server closed an idle connection: reconnect
            raise
        if fresh:
            conn.close()
        return HTTPResult(resp.status, merge_headers(resp.getheaders()), data)

    def preflight(self, origin: str, method: str = "GET", headers: str | None = None,
                  path: str = "/api/items", extra: Mapping[str, str] | None = None) -> HTTPResult:  # fmt: skip
        h = {"Origin": origin, "Access-Control-Request-Method": method}
        if headers is not None:
            h["Access-Control-Request-Headers"] = headers
        h.update(extra or {})
        return self.request("OPTIONS", path, h)

    def metrics(self) -> dict[str, float]:
        """Parse /metrics into {'name{labels}': value} (labels as exposed)."""
        text = self.request("GET", "/metrics").body.decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                values[key] = float(value)
        return values

    def stop(self) -> int:
        if self._conn is not None:
            self._conn.close()
        stop_process(self.proc, signal.SIGINT, timeout=15)  # SIGINT: shut down without the SIGTERM drain delay
        self._log.close()
        return self.proc.returncode


@contextmanager
def fast_and_asgi(
    workdir: Path, policy: Mapping[str, Any], args: Sequence[str] = ()
) -> Iterator[tuple[Server, Server]]:
    """Two servers with one policy (and ``args``): the default (fast path on) and ``--no-fast-path``, whatever
    NO_FAST_PATH_ENV is.

    Both are stopped at the end, and neither may have logged a traceback.
    """
    saved = os.environ.pop(NO_FAST_PATH_ENV, None)
    try:
        fast = Server(workdir, policy, {}, [*args])
        asgi = Server(workdir, policy, {}, [*args, "--no-fast-path"])
    finally:
        if saved is not None:
            os.environ[NO_FAST_PATH_ENV] = saved
    yield fast, asgi
    for server in (fast, asgi):
        server.stop()
        assert "Traceback" not in server.logs()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Any]:
    """Factory: start_server(policy_dict_or_None, env={...}, args=[...]) -> Server (stopped after the test)."""
    servers: list[Server] = []

    def start(policy: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
              args: list[str] | None = None) -> Server:  # fmt: skip
        server = Server(tmp_path, policy, env or {}, args or [])
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
        assert "Traceback" not in server.logs(), server.logs()


def run_in_process(*args: str) -> tuple[int, str, str]:
    """The command line's ``main`` in this process with a clean CORS_* environment: (exit code, stdout, stderr).

    For the unit tier, which starts no process; ``run_cli`` runs the real command.
    """
    from cors_handler.tools.cli import main

    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("CORS_")}
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.environ.update(saved)
    return code, out.getvalue(), err.getvalue()


def run_cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real command line (``python -m cors_handler``) with a clean CORS_* environment."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CORS_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "cors_handler", *args], capture_output=True, text=True, env=full_env, timeout=60
    )
