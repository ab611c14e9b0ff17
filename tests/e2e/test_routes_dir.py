"""The routes directory on the running service: one team's broken file never changes another team's answers.

Real processes, real files: a ConfigMap-style directory (``..data`` symlinks) for
the swap test, plain files elsewhere. Preflights run in a background thread
through every reload; each answer must be one the policy in force before or
after the change gives (no request fails, no answer is wider than both).
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..conftest import Server, wait_for

pytestmark = [pytest.mark.e2e]

MAIN: dict[str, Any] = {
    "allow_origins": ["https://app.acme.io"],
    "rate_limit": {"enabled": False},
    "route_sources": {
        "team-a.yaml": {"hosts": ["a.acme.io"]},
        "team-b.yaml": {"hosts": ["*.b.acme.io"]},
    },
}
A1 = {"routes": [{"name": "a-api", "path_prefix": "/api", "allow_origins": ["https://one.acme.io"]}]}
A2 = {"routes": [{"name": "a-api", "path_prefix": "/api", "allow_origins": ["https://two.acme.io"]}]}
B = {"routes": [{"name": "b-all", "path_prefix": "/", "allow_origins": ["https://b.acme.io"]}]}
BREAKS = {
    "bad-origin": yaml.safe_dump({"routes": [{"path_prefix": "/", "allow_origins": ["b.acme.io"]}]}),
    "bad-yaml": "routes: [{path_prefix: /\n",
    "conflict": yaml.safe_dump({"routes": [{"name": "a-api", "path_prefix": "/"}]}),  # team a's route name
    "empty": "",
}
RELOAD_SECONDS = 8.0  # the quiet rule (2 s) plus the poll and a loaded machine's slack


def status(server: Server, host: str, path: str, origin: str) -> int:
    headers = {"Host": host, "Origin": origin, "Access-Control-Request-Method": "GET"}
    return server.request("OPTIONS", path, headers, fresh=True).status


def source_valid(server: Server) -> dict[str, float]:
    text = server.request("GET", "/metrics", fresh=True).body.decode()
    return {m[1]: float(m[2]) for m in re.finditer(r'^cors_policy_source_valid\{source="([^"]+)"\} (\S+)$', text, re.M)}


def write(path: Path, content: dict[str, Any] | str) -> None:
    """Atomically, as a careful writer (and a ConfigMap update) does."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    os.replace(temporary, path)


@pytest.fixture
def routes(tmp_path: Path) -> Path:
    directory = tmp_path / "routes"
    directory.mkdir()
    return directory


def serve(tmp_path: Path, routes: Path) -> Server:
    return Server(tmp_path, MAIN, {}, ["--routes-dir", str(routes)])


def test_startup_with_a_broken_file_is_ready_and_refuses_only_that_teams_hosts(tmp_path: Path, routes: Path) -> None:
    write(routes / "team-a.yaml", A1)
    write(routes / "team-b.yaml", BREAKS["bad-yaml"])
    server = serve(tmp_path, routes)
    try:
        assert server.request("GET", "/ready", fresh=True).status == 200
        assert source_valid(server) == {"team-a.yaml": 1.0, "team-b.yaml": 0.0}
        assert status(server, "a.acme.io", "/api/x", "https://one.acme.io") == 204
        # the broken team's hosts: refused, never the top level's answer (which allows app.acme.io)
        assert status(server, "x.b.acme.io", "/api/x", "https://app.acme.io") == 403
        assert status(server, "x.b.acme.io", "/", "https://b.acme.io") == 403
        assert status(server, "other.io", "/", "https://app.acme.io") == 204
        assert server.logs().count("route_source_yaml") == 1  # reported once, where it was written
    finally:
        server.stop()


class Load:
    """Preflights in a loop until stopped: (host, path, origin) -> the statuses seen."""

    def __init__(self, server: Server, cases: list[tuple[str, str, str]]) -> None:
        self.server, self.cases = server, cases
        self.seen: dict[tuple[str, str, str], set[int]] = {case: set() for case in cases}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 120  # bounded whatever happens
        while not self._stop.is_set() and time.monotonic() < deadline:
            for case in self.cases:
                try:
                    self.seen[case].add(status(self.server, *case))
                except OSError as exc:
                    self.failures.append(f"{case}: {exc!r}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.mark.parametrize("broken", list(BREAKS), ids=list(BREAKS))
def test_a_broken_file_keeps_its_last_good_rules_while_another_teams_change_goes_live_under_load(
    tmp_path: Path, routes: Path, broken: str
) -> None:
    write(routes / "team-a.yaml", A1)
    write(routes / "team-b.yaml", B)
    server = serve(tmp_path, routes)
    b_case = ("x.b.acme.io", "/any", "https://b.acme.io")
    b_top = ("x.b.acme.io", "/any", "https://app.acme.io")
    a_one, a_two = ("a.acme.io", "/api", "https://one.acme.io"), ("a.acme.io", "/api", "https://two.acme.io")
    load = Load(server, [b_case, b_top, a_one, a_two])
    try:
        write(routes / "team-b.yaml", BREAKS[broken])
        write(routes / "team-a.yaml", A2)
        took = wait_for(lambda: status(server, *a_two) == 204, "team a's change live", RELOAD_SECONDS)
        wait_for(lambda: source_valid(server).get("team-b.yaml") == 0.0, "team b reported", RELOAD_SECONDS)
        assert status(server, *a_one) == 403
        assert status(server, *b_case) == 204  # team b's last good version still answers
        time.sleep(0.5)
        load.stop()
        assert load.failures == []
        assert load.seen[b_case] == {204} and load.seen[b_top] == {403}  # never refused, never wider
        assert load.seen[a_one] <= {204, 403} and load.seen[a_two] <= {204, 403}
        assert source_valid(server) == {"team-a.yaml": 1.0, "team-b.yaml": 0.0}
        assert took < RELOAD_SECONDS
    finally:
        load.stop()
        server.stop()
    assert "Traceback" not in server.logs()


def test_a_configmap_swap_reloads_and_writes_elsewhere_read_nothing(tmp_path: Path, routes: Path) -> None:
    def version(name: str, files: dict[str, dict[str, Any]]) -> None:
        directory = routes / name
        directory.mkdir()
        for file, content in files.items():
            (directory / file).write_text(yaml.safe_dump(content))

    version("..2026_01", {"team-a.yaml": A1, "team-b.yaml": B})
    os.symlink("..2026_01", routes / "..data")
    for file in ("team-a.yaml", "team-b.yaml"):
        os.symlink(f"..data/{file}", routes / file)
    server = serve(tmp_path, routes)
    try:
        assert status(server, "a.acme.io", "/api", "https://one.acme.io") == 204

        def reloads() -> str:
            text = server.request("GET", "/metrics", fresh=True).body.decode()
            return "".join(re.findall(r"^cors_policy_reloads_total\{.*$", text, re.M))

        before = reloads()
        for name in ("notes.txt", ".team-a.yaml.swp", "team-a.yaml.bak"):
            (routes / name).write_text("routes: [\n")
        time.sleep(3.5)
        assert reloads() == before  # nothing read, nothing reloaded
        version("..2026_02", {"team-a.yaml": A2, "team-b.yaml": B})
        os.symlink("..2026_02", routes / "..data_tmp")
        os.replace(routes / "..data_tmp", routes / "..data")  # the kubelet's atomic swap
        wait_for(lambda: status(server, "a.acme.io", "/api", "https://two.acme.io") == 204, "swap seen",
                 RELOAD_SECONDS)  # fmt: skip
        assert source_valid(server) == {"team-a.yaml": 1.0, "team-b.yaml": 1.0}
    finally:
        server.stop()


def test_a_file_that_appears_and_disappears(tmp_path: Path, routes: Path) -> None:
    write(routes / "team-a.yaml", A1)
    server = serve(tmp_path, routes)
    try:
        assert source_valid(server) == {"team-a.yaml": 1.0, "team-b.yaml": 0.0}  # named, not there yet
        assert status(server, "x.b.acme.io", "/", "https://app.acme.io") == 403  # its hosts fail closed
        write(routes / "team-b.yaml", B)
        wait_for(lambda: status(server, "x.b.acme.io", "/", "https://b.acme.io") == 204, "file seen", RELOAD_SECONDS)
        (routes / "team-b.yaml").unlink()  # a source the main policy names is missing: failing, last good kept
        wait_for(lambda: source_valid(server).get("team-b.yaml") == 0.0, "file gone", RELOAD_SECONDS)
        assert status(server, "x.b.acme.io", "/", "https://b.acme.io") == 204
        assert "route_source_missing" in server.logs()
    finally:
        server.stop()
