"""In-process micro-benchmarks of the request path.

1. What do metrics (and the limiter) cost? Drives the ASGI callable directly (no
   sockets, no HTTP parsing), so the numbers isolate cors-handler's own per-request work.
2. Is a cache miss flat in the policy size? One miss decision (decide + render, what
   the cache computes for a new key) with a 1-entry policy and with 21,000 entries
   (10,000 exact, 10,000 wildcard, 1,000 regex), for refused random origins and for
   origins allowed by a wildcard and by a regex.

Variants run interleaved, several rounds, best round kept: the machine is shared and
noisy, ratios from one run are what count.

    python -m loadtests.microbench [--requests 200000] [--rounds 5] [--only misses|metrics]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter
from typing import Any

from cors_handler.config.compile import compile_settings
from cors_handler.config.settings import Settings
from cors_handler.cors.model import Policy
from cors_handler.http.app import CorsHandlerApp, Runtime

from .scenarios import ALLOWED_ORIGIN, large_policy

ORIGINS = [f"https://app{i}.example.com".encode() for i in range(1000)]


def _policy(rate_limit: bool) -> Policy:
    return compile_settings(
        Settings(
            allow_origins=["https://*.example.com"],
            rate_limit={"enabled": rate_limit, "average": 10**9, "burst": 10**9, "depth": 1},
        )
    ).policy


def _scopes(count: int) -> list[dict[str, Any]]:
    scopes = []
    for i in range(count):
        headers = [
            (b"host", b"api.example.com"),
            (b"origin", ORIGINS[i % len(ORIGINS)]),
            (b"access-control-request-method", b"PUT"),
            (b"access-control-request-headers", b"content-type"),
            (b"x-forwarded-for", b"203.0.113.%d" % (i % 250)),
        ]
        scopes.append({"type": "http", "method": "OPTIONS", "path": "/api/orders", "headers": headers,
                       "client": ("10.0.0.1", 5000)})  # fmt: skip
    return scopes


async def _drive(
    app: CorsHandlerApp, scopes: list[dict[str, Any]], repeat: int, statuses: Counter[int] | None = None
) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    answer = send
    if statuses is not None:
        counts = statuses

        async def count(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                counts[message["status"]] += 1

        answer = count
    start = time.perf_counter()
    for _ in range(repeat):
        for scope in scopes:
            await app(scope, receive, answer)
    return time.perf_counter() - start


def variants() -> dict[str, CorsHandlerApp]:
    """The four apps ``measure`` compares: metrics on and off, the rate limiter on and off."""
    return {
        "metrics on, limiter on": CorsHandlerApp(_policy(True), metrics_enabled=True),
        "metrics off, limiter on": CorsHandlerApp(_policy(True), metrics_enabled=False),
        "metrics on, limiter off": CorsHandlerApp(_policy(False), metrics_enabled=True),
        "metrics off, limiter off": CorsHandlerApp(_policy(False), metrics_enabled=False),
    }


def measure(
    requests: int,
    rounds: int,
    apps: dict[str, CorsHandlerApp] | None = None,
    answered: dict[str, Counter[int]] | None = None,
) -> dict[str, float]:
    """Requests per second by variant, best of ``rounds``; ``requests`` is rounded down to whole passes over
    5,000 distinct requests (at least one). ``apps`` (from ``variants()``) lets the caller read them afterwards;
    ``answered`` gets each variant's answers by status, over every round (a counting ``send``, for tests)."""
    scopes = _scopes(5000)
    repeat = max(1, requests // len(scopes))
    apps = variants() if apps is None else apps
    best = dict.fromkeys(apps, float("inf"))
    for _ in range(rounds):
        for name, app in apps.items():
            statuses = None if answered is None else answered.setdefault(name, Counter())
            best[name] = min(best[name], asyncio.run(_drive(app, scopes, repeat, statuses)))
    total = repeat * len(scopes)
    return {name: total / seconds for name, seconds in best.items()}


def _miss_origins(kind: str, count: int, rng: random.Random) -> list[bytes]:
    templates = {
        "refused random origin": "https://r{n}.example.org",
        "allowed by a wildcard": "https://x{n}.tenant{m}.example.net",
        "allowed by a regex": "https://x{n}.preview{k}.example.io",
    }
    template = templates[kind]
    values = (template.format(n=rng.randrange(10**9), m=rng.randrange(10_000), k=rng.randrange(1000))
              for _ in range(count))  # fmt: skip
    return [v.encode() for v in values]


def miss_policies() -> dict[str, Policy]:
    """The two policies ``measure_misses`` compares: the bench's allowed origin alone, and 21,000 entries more."""
    small = large_policy(0, 0, 0)
    small["allow_origins"] = [ALLOWED_ORIGIN]
    policies = {"1 entry": small, "21,000 entries": large_policy()}
    return {name: compile_settings(Settings(**values)).policy for name, values in policies.items()}


def measure_misses(
    decisions: int, rounds: int, answered: dict[tuple[str, str], Counter[int]] | None = None
) -> dict[tuple[str, str], float]:
    """Microseconds per miss decision, by (policy, origin kind); best of ``rounds``. ``answered`` gets the
    statuses of the responses each (policy, origin kind) computed, over every round (for tests)."""
    runtimes = {name: Runtime(policy) for name, policy in miss_policies().items()}
    rng = random.Random(7)
    kinds = ["refused random origin", "allowed by a wildcard", "allowed by a regex"]
    origins = {kind: _miss_origins(kind, decisions, rng) for kind in kinds}
    best: dict[tuple[str, str], float] = {}
    for _ in range(rounds):
        for name, runtime in runtimes.items():
            route = runtime.policy.default
            for kind in kinds:
                if name == "1 entry" and kind != "refused random origin":
                    continue
                compute = runtime.compute
                statuses = None if answered is None else answered.setdefault((name, kind), Counter())
                start = time.perf_counter()
                if statuses is None:
                    for origin in origins[kind]:
                        compute(route, origin, b"PUT", b"content-type", False)
                else:
                    for origin in origins[kind]:
                        statuses[compute(route, origin, b"PUT", b"content-type", False).status] += 1
                cost = (time.perf_counter() - start) / decisions * 1e6
                best[name, kind] = min(best.get((name, kind), cost), cost)
    return best


def print_misses(costs: dict[tuple[str, str], float]) -> None:
    print(f"{'miss decision':<44}{'us':>8}")
    for (name, kind), cost in costs.items():
        print(f"{name + ', ' + kind:<44}{cost:>8.2f}")
    flat = costs["21,000 entries", "refused random origin"] / costs["1 entry", "refused random origin"]
    print(f"refused random origin, 21,000 entries / 1 entry: {flat:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=["misses", "metrics"], help="run one of the two benchmarks")
    args = parser.parse_args()
    if args.only != "metrics":
        print_misses(measure_misses(max(1000, args.requests // 10), args.rounds))
    if args.only == "misses":
        return
    rates = measure(args.requests, args.rounds)
    reference = rates["metrics off, limiter off"]
    print(f"{'variant':<28}{'requests/s':>14}{'us/request':>12}{'ratio':>8}")
    for name, rate in rates.items():
        print(f"{name:<28}{rate:>14,.0f}{1e6 / rate:>12.2f}{rate / reference:>8.3f}")
    on, off = rates["metrics on, limiter on"], rates["metrics off, limiter on"]
    print(f"metrics cost: on/off = {on / off:.3f} ({(1 / on - 1 / off) * 1e6:.2f} us per request)")


if __name__ == "__main__":
    main()
