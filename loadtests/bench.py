"""Benchmark cors-handler against its baselines in one run, each server on one core, wrk on the other.

    python -m loadtests.bench                 # every server and scenario, then the memory scenario
    python -m loadtests.bench --duration 10 --connections 50 --skip-memory

Servers (each pinned with taskset to core 0, wrk to core 1; all on 127.0.0.1):
  cors-handler            the service with its protocol fast path (the default)
  cors-handler --no-fast-path   the same, every request through the ASGI app
  bare ASGI               a constant 204 from a raw ASGI app on the same uvicorn: the ASGI ceiling
  Starlette CORSMiddleware on the same uvicorn: what most Python users would deploy
  nginx                   preflights answered from a `map` (when nginx is installed): the native reference

It prints requests/s, p50, p99 and errors per scenario and server, then the ratios of
cors-handler to each baseline from the same run. ``errors`` counts socket errors and
responses whose status is not the one a CORS server gives in that scenario (the bare
ASGI app answers 204 to everything, so its "rejected" row counts every response).
The memory scenario then sends about a million preflights with random origins from
random client addresses and reports cors-handler's RSS before, after and at peak.
Installs wrk (and nginx) with apt when run as root and they are missing.
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.conftest import free_port, stop_process

from .scenarios import ALLOWED_ORIGIN, MEMORY_SCRIPT, NGINX_CONF, PATH, POLICY, ROTATING_REGEX, SCENARIOS

ROOT = Path(__file__).resolve().parents[1]
SERVER_CORE, LOAD_CORE = "0", "1"
UVICORN = [sys.executable, "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
           "--log-level", "warning", "--host", "127.0.0.1"]  # fmt: skip


@dataclass
class Result:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def ensure_tools() -> None:
    missing = [pkg for tool, pkg in (("wrk", "wrk"), ("nginx", "nginx-light")) if shutil.which(tool) is None]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=False, capture_output=True)
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")


def pinned(core: str, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", core, *cmd] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else cmd


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> float:
    """Seconds until ``port`` accepts a connection (the startup time)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return time.monotonic() - start
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"port {port} not listening after {timeout}s")


@contextmanager
def server(name: str, workdir: Path) -> Iterator[tuple[int, int, float]]:
    """Start one server pinned to SERVER_CORE; yields (port, pid, seconds to listening)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORS_")}
    if name.startswith("cors-handler"):
        policy = workdir / "policy.yaml"
        policy.write_text(yaml.safe_dump(POLICY))
        cmd = [sys.executable, "-m", "cors_handler", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--policy", str(policy)]  # fmt: skip
        if name.endswith("--no-fast-path"):
            cmd.append("--no-fast-path")
    elif name == "bare ASGI":
        cmd = [*UVICORN, "--port", str(port), "loadtests.baselines:bare_app"]
    elif name == "Starlette CORSMiddleware":
        cmd = [*UVICORN, "--port", str(port), "loadtests.baselines:starlette_app"]
    else:
        prefix = workdir / "nginx"
        prefix.mkdir(exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, allowed=ALLOWED_ORIGIN, regex=ROTATING_REGEX))
        cmd = ["nginx", "-p", str(prefix), "-c", str(conf), "-e", "stderr"]
    log = (workdir / f"{name.replace(' ', '_')}.log").open("wb")
    proc = subprocess.Popen(pinned(SERVER_CORE, cmd), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        startup = wait_listening(port, proc)
        yield port, proc.pid, startup
    finally:
        stop_process(proc, timeout=15)
        log.close()


def run_wrk(port: int, script: str, workdir: Path, duration: float, connections: int) -> str:
    lua = workdir / "scenario.lua"
    lua.write_text(script)
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", "-s", str(lua),
           f"http://127.0.0.1:{port}{PATH}"]  # fmt: skip
    return subprocess.run(pinned(LOAD_CORE, cmd), capture_output=True, text=True, timeout=duration + 60).stdout


def parse_wrk(output: str, expects_2xx: bool) -> Result:
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
    if not expects_2xx:  # a refusal is expected here: the wrong answers are the 2xx ones
        wrong = (int(total.group(1)) if total else 0) - wrong
    return Result(float(rps.group(1)) if rps else 0.0, ms("50"), ms("99"), socket_errors + wrong)


SERVERS = ["cors-handler", "cors-handler --no-fast-path", "bare ASGI", "Starlette CORSMiddleware", "nginx"]


def measure(duration: float, connections: int, workdir: Path) -> tuple[dict[tuple[str, str], Result], dict[str, float]]:
    results: dict[tuple[str, str], Result] = {}
    startups: dict[str, float] = {}
    for name in SERVERS:
        if name == "nginx" and shutil.which("nginx") is None:
            continue
        with server(name, workdir) as (port, _, startup):
            startups[name] = startup
            for scenario, (script, status) in SCENARIOS.items():
                run_wrk(port, script, workdir, 1, connections)  # warm the caches
                results[name, scenario] = parse_wrk(run_wrk(port, script, workdir, duration, connections), status < 300)
    return results, startups


def report(results: dict[tuple[str, str], Result], startups: dict[str, float]) -> str:
    lines = [f"{'scenario':28} {'server':30} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"]
    for scenario in SCENARIOS:
        for name in SERVERS:
            r = results.get((name, scenario))
            if r:
                lines.append(f"{scenario:28} {name:30} {r.requests_per_second:11,.0f} {r.p50_ms:8.3f} "
                             f"{r.p99_ms:8.3f} {r.errors:7d}")  # fmt: skip
    lines.append("")
    lines.append("ratios (requests/s, same run):")
    pairs = [("cors-handler", "nginx"), ("cors-handler", "Starlette CORSMiddleware"), ("cors-handler", "bare ASGI"),
             ("cors-handler --no-fast-path", "bare ASGI"),
             ("cors-handler --no-fast-path", "Starlette CORSMiddleware")]  # fmt: skip
    for ours, base in pairs:
        ratios = []
        for scenario in SCENARIOS:
            a, b = results.get((ours, scenario)), results.get((base, scenario))
            if a and b and b.requests_per_second:
                ratios.append(f"{scenario}: {a.requests_per_second / b.requests_per_second:.2f}x")
        if ratios:
            lines.append(f"  {ours} / {base}: " + "; ".join(ratios))
    lines.append("startup to listening (s): " + ", ".join(f"{k} {v:.3f}" for k, v in startups.items()))
    return "\n".join(lines)


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def total_requests(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    counts = re.findall(rb"^cors_preflight_requests_total\{[^}]*\} ([\d.e+]+)$", data, re.MULTILINE)
    return int(sum(float(c) for c in counts))


def memory_scenario(workdir: Path, target: int, connections: int) -> str:
    """About ``target`` preflights, random origins from random clients; RSS before, after, peak."""
    with server("cors-handler", workdir) as (port, pid, _):
        # the process under taskset is the service itself (taskset execs it)
        before, _ = rss_kib(pid)
        lua = workdir / "memory.lua"
        lua.write_text(MEMORY_SCRIPT)
        cmd = ["wrk", "-t1", f"-c{connections}", "-d600s", "-s", str(lua), f"http://127.0.0.1:{port}{PATH}"]
        load = subprocess.Popen(pinned(LOAD_CORE, cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started, sent, samples = time.monotonic(), 0, []
        try:
            while sent < target and time.monotonic() - started < 600:
                time.sleep(1)
                sent = total_requests(port)
                samples.append(rss_kib(pid)[0])
        finally:
            load.terminate()
            load.wait()
        elapsed = time.monotonic() - started
        after, peak = rss_kib(pid)
        metrics = total_requests(port)
    quartiles = ", ".join(f"{samples[int(len(samples) * q) - 1] / 1024:.1f}" for q in (0.25, 0.5, 0.75, 1.0))
    return (f"memory: {metrics:,} preflights in {elapsed:.0f} s (random origins, random X-Forwarded-For clients);"
            f" RSS before {before / 1024:.1f} MiB, after {after / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB;"
            f" RSS at 25/50/75/100 % of the run: {quartiles} MiB")  # fmt: skip


def table_costs() -> str:
    """Bytes per tracked client and per cached response, measured in-process with tracemalloc."""
    import random
    import tracemalloc

    from cors_handler.pipeline import Runtime
    from cors_handler.policy import compile_policy
    from cors_handler.ratelimit import ClientIdentifier, RateLimiter
    from cors_handler.settings import load_settings

    rng = random.Random(1)
    ids = ClientIdentifier(1, ())
    addresses = [f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                 for _ in range(100_000)]  # fmt: skip
    keys = [ids.key(None, a.encode()) for a in addresses]
    runtime = Runtime(compile_policy(load_settings(**{"allow_origins": [ALLOWED_ORIGIN]})))
    origins = [b"https://r%d.example.org" % rng.randrange(10**9) for _ in range(runtime.policy.cache_size)]
    tracemalloc.start()
    limiter = RateLimiter(1200, 60, 300, 100_000)
    before, _ = tracemalloc.get_traced_memory()
    for key in keys:
        limiter.hit(key)  # type: ignore[arg-type]
    per_client = (tracemalloc.get_traced_memory()[0] - before) / len(limiter)
    before, _ = tracemalloc.get_traced_memory()
    for origin in origins:
        runtime.cache.get(runtime.policy.default, origin, b"PUT", b"", False)
    per_entry = (tracemalloc.get_traced_memory()[0] - before) / len(origins)
    tracemalloc.stop()
    return (f"table costs: {per_client:.0f} bytes per tracked client ({len(limiter):,} clients), "
            f"{per_entry:.0f} bytes per cached refusal ({len(origins):,} entries)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    parser.add_argument("--memory-requests", type=int, default=1_000_000, help="size of the memory scenario")
    parser.add_argument("--skip-memory", action="store_true", help="skip the memory scenario")
    args = parser.parse_args(argv)
    ensure_tools()
    with tempfile.TemporaryDirectory(prefix="cors-bench-") as tmp:
        workdir = Path(tmp)
        results, startups = measure(args.duration, args.connections, workdir)
        print(report(results, startups), flush=True)
        if not args.skip_memory:
            print(memory_scenario(workdir, args.memory_requests, args.connections), flush=True)
            print(table_costs(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
