"""The benchmark's memory half: floods of a million one-off preflights against the running service, and what
one table entry costs in-process (the ``table costs`` line).

Two floods, each against a fresh ``cors-handler serve``, RSS sampled every second:

  refused flood   every request a new random origin that the policy refuses, from a new random
                  X-Forwarded-For client: the cache churns (every refusal of a route shares one
                  answer) and the limiter's table stays at its bound
  allowed flood   every request a new random subdomain under an allowed ``*.`` wildcard (issue 27),
                  from a new random client, the limiter on at its default limits: the cache fills
                  with allowed answers, each with its own origin echoed

``python -m loadtests.bench --memory-only --memory "allowed flood"`` runs one of them alone. Both send
only to 127.0.0.1, stop after ``target`` preflights or 600 s, whichever comes first, and report the RSS
before the first flood request (the interpreter, the imports and the empty tables: the baseline), after,
and the peak (VmHWM).
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from .scenarios import ALLOWED_FLOOD_POLICY, ALLOWED_FLOOD_SCRIPT, MEMORY_SCRIPT, POLICY

REFUSED_FLOOD = "refused flood"
ALLOWED_FLOOD = "allowed flood"
# name -> (the service's policy, wrk's Lua script, what the report line says was sent)
MEMORY_SCENARIOS: dict[str, tuple[dict[str, Any], str, str]] = {
    REFUSED_FLOOD: (POLICY, MEMORY_SCRIPT, "random refused origins, random X-Forwarded-For clients"),
    ALLOWED_FLOOD: (ALLOWED_FLOOD_POLICY, ALLOWED_FLOOD_SCRIPT,
                    "random allowed subdomains of *.example.com, random X-Forwarded-For clients, limiter at defaults"),
}  # fmt: skip
FLOOD_SECONDS = 600

# starts the service with a policy: yields (port, pid, seconds to answering)
ServerFactory = Callable[[dict[str, Any]], AbstractContextManager[tuple[int, int, float]]]
# the wrk command line for a Lua script file and a port
LoadCommand = Callable[[Path, int], list[str]]


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def total_requests(port: int) -> int:
    """Every preflight the service has counted (from /metrics)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    counts = re.findall(rb"^cors_preflight_requests_total\{[^}]*\} ([\d.e+]+)$", data, re.MULTILINE)
    return int(sum(float(c) for c in counts))


# What ``serve`` imports before it reads its policy (tools.cli for the command, http.server and http.lifecycle for
# uvicorn and the reloader), measured in a fresh interpreter: the floor under every RSS figure of a flood.
_SERVICE_IMPORTS = "import cors_handler.tools.cli, cors_handler.http.server, cors_handler.http.lifecycle, uvloop"
# Optional packages structlog imports when they are installed (structlog.dev: rich for tracebacks, colorama,
# better_exceptions; structlog.threadlocal: greenlet). The development venv has them (import-linter brings rich,
# locust greenlet); the container image installs the service's dependencies only, so it has none of them.
OPTIONAL_IMPORTS = ("rich", "colorama", "better_exceptions", "greenlet")
_RSS = "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS')))"


def import_baselines() -> tuple[float, float, float]:
    """RSS in MiB of a fresh interpreter: bare, with the service's imports, and with them but none of OPTIONAL_IMPORTS.

    The last is what the container image's interpreter holds before ``serve`` reads its policy.
    """
    import sys

    block = f"import sys; sys.modules.update(dict.fromkeys({OPTIONAL_IMPORTS!r})); "
    figures = []
    for code in (_RSS, f"{_SERVICE_IMPORTS}; {_RSS}", f"{block}{_SERVICE_IMPORTS}; {_RSS}"):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
        figures.append(int(done.stdout) / 1024)
    return figures[0], figures[1], figures[2]


def baseline_line() -> str:
    bare, imports, without = import_baselines()
    return (f"memory baseline: a bare interpreter {bare:.1f} MiB; with the service's imports {imports:.1f} MiB, "
            f"{without:.1f} MiB without the optional {', '.join(OPTIONAL_IMPORTS)} (the image has none of them; "
            f"structlog imports them where installed)")  # fmt: skip


def memory_scenario(
    name: str, start: ServerFactory, load: LoadCommand, workdir: Path, target: int
) -> tuple[str, float, float]:
    """About ``target`` preflights of flood ``name``: (report line, RSS peak in MiB, RSS before in MiB)."""
    policy, script, sent_what = MEMORY_SCENARIOS[name]
    with start(policy) as (port, pid, _):
        # the process under taskset is the service itself (taskset execs it)
        before, _ = rss_kib(pid)
        lua = workdir / "memory.lua"
        lua.write_text(script)
        flood = subprocess.Popen(load(lua, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started, sent, samples = time.monotonic(), 0, []
        try:
            while sent < target and time.monotonic() - started < FLOOD_SECONDS:
                time.sleep(1)
                sent = total_requests(port)
                samples.append(rss_kib(pid)[0])
        finally:
            flood.terminate()
            flood.wait()
        elapsed = time.monotonic() - started
        after, peak = rss_kib(pid)
        metrics = total_requests(port)
    quartiles = ", ".join(f"{samples[int(len(samples) * q) - 1] / 1024:.1f}" for q in (0.25, 0.5, 0.75, 1.0))
    line = (f"memory, {name}: {metrics:,} preflights in {elapsed:.0f} s ({sent_what});"
            f" RSS before {before / 1024:.1f} MiB, after {after / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB;"
            f" RSS at 25/50/75/100 % of the run: {quartiles} MiB")  # fmt: skip
    return line, peak / 1024, before / 1024


def table_costs() -> str:
    """Bytes per tracked client, per cached refusal and per cached allowed answer at the default bounds.

    Measured in-process with tracemalloc. Everything a table holds is counted: the limiter's
    table with its keys (created per request from the client's address), the cache's entries
    with their keys, the origin bytes they keep and the answers they hold, and the cache's
    admission filter; divided by the entries held. The refusals are new origins the policy
    refuses (every refusal of a route shares one answer), the allowed answers new subdomains
    under an allowed ``*.`` wildcard (each answer echoes its own origin).
    """
    import random
    import tracemalloc

    from cors_handler.config.compile import compile_settings
    from cors_handler.config.settings import load_settings
    from cors_handler.serve.cache import ResponseCache
    from cors_handler.serve.pipeline import Runtime
    from cors_handler.serve.ratelimit import ClientIdentifier, RateLimiter
    from cors_handler.serve.responses import ALLOWED, REJECTED

    rng = random.Random(1)
    ids = ClientIdentifier(1, (), cache_size=1)
    addresses = [b"%d.%d.%d.%d" % (rng.randrange(1, 224), rng.randrange(256), rng.randrange(256),
                                   rng.randrange(1, 255)) for _ in range(100_000)]  # fmt: skip
    settings = load_settings(allow_origins=ALLOWED_FLOOD_POLICY["allow_origins"])
    runtime = Runtime(compile_settings(settings).policy)
    size = runtime.policy.cache_size
    numbers = [rng.randrange(10**9) for _ in range(size)]
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    limiter = RateLimiter(1200, 60, 300, 100_000)
    for address in addresses:
        decided, key = ids.forwarded_key(address)
        assert decided
        assert key is not None
        limiter.hit_located(*limiter.locate(key))
    per_client = (tracemalloc.get_traced_memory()[0] - before) / len(limiter)
    per_entry = {}
    for result, origin in ((REJECTED, b"https://r%d.example.org"), (ALLOWED, b"https://s%d.example.com")):
        before, _ = tracemalloc.get_traced_memory()
        cache = ResponseCache(size)
        route = runtime.policy.default
        for number in numbers:
            key = (route, origin % number, b"PUT", b"", False)
            cache.store(key, runtime.compute(*key))  # what the pipeline does on a miss
        assert all(response.result == result for response in cache._entries.values())
        per_entry[result] = (tracemalloc.get_traced_memory()[0] - before) / len(cache), len(cache)
        del cache
    tracemalloc.stop()
    (refusal, entries), (answer, _) = per_entry[REJECTED], per_entry[ALLOWED]
    return (f"table costs: {per_client:.0f} bytes per tracked client ({len(limiter):,} clients), "
            f"{refusal:.0f} bytes per cached refusal, {answer:.0f} bytes per cached allowed answer "
            f"({entries:,} entries each, admission filter included)")  # fmt: skip
