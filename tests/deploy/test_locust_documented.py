"""docs/performance.md's load test, run as written: its helm values and its locust command, through real Traefik.

The page's ``helm upgrade`` names the values files (the production values and
examples/loadtest.yaml, which exempts the load generator from both rate limits); the chart
is rendered from exactly those files, with two loopback substitutions: the load generator's
address is 127.0.0.1 (the file's example address replaced, as the file says) and
``traefik.host`` is 127.0.0.1 (locust sends the Host of its -H URL). The page's locust
command then runs against that Traefik with its own environment variables and flags; in CI
for 8 seconds with 10 users, as written (-u 50 -r 10 -t 2m) with CORS_TEST_LONG=1. Without
the example file the same run must fail: the limits are what it is about.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .chart import RELEASE, merge, one
from .stack import start_stack
from .tools import ROOT

pytestmark = pytest.mark.e2e

PAGE = ROOT / "docs" / "performance.md"
EXAMPLE_ADDRESS = "203.0.113.7"  # examples/loadtest.yaml's "replace" address
LONG = os.environ.get("CORS_TEST_LONG") == "1"


def documented_commands() -> tuple[list[str], list[str]]:
    """The argv of the section's ``helm upgrade`` and of its locust command (environment assignments first)."""
    text = PAGE.read_text()
    section = text[text.index("## Load testing a cluster with locust") :]
    section = section[: section.index("\n## ", 1)]
    commands = [shlex.split(body.replace("\\\n", " ")) for body in re.findall(r"```sh\n(.*?)```", section, re.S)]
    [helm] = [argv for argv in commands if argv[:2] == ["helm", "upgrade"]]
    [locust] = [argv for argv in commands if any(arg.endswith("/locust") for arg in argv)]
    return helm, locust


def documented_values(helm: list[str]) -> tuple[str, dict[str, Any]]:
    """The environment of the first -f file and the other -f files merged, addresses on loopback."""
    files = [helm[i + 1] for i, arg in enumerate(helm) if arg in ("-f", "--values")]
    environment = re.fullmatch(r"helm/cors-handler/values-(\w+)\.yaml", files[0])
    assert environment, files
    values: dict[str, Any] = {"traefik": {"host": "127.0.0.1"}}
    for name in files[1:]:
        text = (ROOT / name).read_text().replace(EXAMPLE_ADDRESS, "127.0.0.1")
        values = merge(values, yaml.safe_load(text))
    return environment[1], values


def run_locust(argv: list[str], url: str, cwd: Path, short: bool) -> dict[str, tuple[int, int]]:
    """The documented locust command against ``url``; scenario name -> (requests, failures)."""
    env = dict(os.environ)
    while "=" in argv[0]:
        name, _, value = argv[0].partition("=")
        env[name], argv = value, argv[1:]
    args = argv[1:]
    replace = {"-H": url}
    if short:
        replace |= {"-t": "8s", "-u": "10", "-r": "10"}
    args = [replace.get(args[i - 1], arg) if i else arg for i, arg in enumerate(args)]
    args = [str(ROOT / arg) if i and args[i - 1] == "-f" else arg for i, arg in enumerate(args)]
    run = subprocess.run(
        [sys.executable, "-m", "locust", *args, "--json", "--only-summary"],
        capture_output=True, text=True, env=env, timeout=240, cwd=cwd,
    )  # fmt: skip
    stats = {e["name"]: (e["num_requests"], e["num_failures"]) for e in json.loads(run.stdout or "[]")}
    assert stats, run.stdout + run.stderr[-3000:]
    assert (run.returncode == 0) == all(failures == 0 for _, failures in stats.values()), run.stderr[-3000:]
    return stats


@pytest.mark.parametrize("with_example", [True, False], ids=["with-loadtest-values", "without-them"])
def test_the_documented_locust_run_passes_through_traefik_with_the_load_generator_exempt(
    with_example: bool, tmp_path: Path
) -> None:
    if importlib.util.find_spec("locust") is None:  # never import it here: it monkey-patches the process (gevent)
        pytest.skip("locust is a test dependency")
    helm, locust = documented_commands()
    environment, values = documented_values(helm)
    if not with_example:
        values = {"traefik": {"host": values["traefik"]["host"]}}
    stack = start_stack(tmp_path, environment, values)
    try:
        stats = run_locust(locust, f"http://127.0.0.1:{stack.proxy.port}", tmp_path, short=not LONG or not with_example)
        limited = stack.preflights(result="rate_limited")
        print(f"locust: {stats}; rate limited by the service: {limited:.0f}")
    finally:
        stack.stop()
    sent = sum(requests for requests, _ in stats.values())
    edge = one(stack.docs, "Middleware", f"{RELEASE}-ratelimit")["spec"]["rateLimit"]  # per minute (1m)
    assert sent > 2 * (edge["burst"] + edge["average"] * 8 / 60)  # far more than one client may send
    failures = sum(failures for _, failures in stats.values())
    if with_example:
        assert failures == 0, stats
        assert limited == 0
        assert [seen for seen in stack.backend.seen if seen[0] == "OPTIONS"] == []
    else:
        assert failures > sent / 2, stats  # the limits answer most of them with 429
