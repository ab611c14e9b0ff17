"""In-process micro-benchmark of the request path: what do metrics (and the limiter) cost?

Drives the ASGI callable directly (no sockets, no HTTP parsing), so the numbers
isolate cors-handler's own per-request work. Variants run interleaved, several
rounds, best round kept: the machine is shared and noisy, ratios from one run
are what count.

    python -m loadtests.microbench [--requests 200000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from cors_handler.app import CorsHandlerApp
from cors_handler.policy import Policy, compile_policy
from cors_handler.settings import Settings

ORIGINS = [f"https://app{i}.example.com".encode() for i in range(1000)]


def _policy(rate_limit: bool) -> Policy:
    return compile_policy(
        Settings(
            allow_origins=["https://*.example.com"],
            rate_limit={"enabled": rate_limit, "average": 10**9, "burst": 10**9, "depth": 1},
        )
    )


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


async def _drive(app: CorsHandlerApp, scopes: list[dict[str, Any]], repeat: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    start = time.perf_counter()
    for _ in range(repeat):
        for scope in scopes:
            await app(scope, receive, send)
    return time.perf_counter() - start


def measure(requests: int, rounds: int) -> dict[str, float]:
    variants: dict[str, Callable[[], CorsHandlerApp]] = {
        "metrics on, limiter on": lambda: CorsHandlerApp(_policy(True), metrics_enabled=True),
        "metrics off, limiter on": lambda: CorsHandlerApp(_policy(True), metrics_enabled=False),
        "metrics on, limiter off": lambda: CorsHandlerApp(_policy(False), metrics_enabled=True),
        "metrics off, limiter off": lambda: CorsHandlerApp(_policy(False), metrics_enabled=False),
    }
    scopes = _scopes(5000)
    repeat = max(1, requests // len(scopes))
    apps = {name: make() for name, make in variants.items()}
    best = dict.fromkeys(apps, float("inf"))
    for _ in range(rounds):
        for name, app in apps.items():
            best[name] = min(best[name], asyncio.run(_drive(app, scopes, repeat)))
    total = repeat * len(scopes)
    return {name: total / seconds for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rates = measure(args.requests, args.rounds)
    reference = rates["metrics off, limiter off"]
    print(f"{'variant':<28}{'requests/s':>14}{'us/request':>12}{'ratio':>8}")
    for name, rate in rates.items():
        print(f"{name:<28}{rate:>14,.0f}{1e6 / rate:>12.2f}{rate / reference:>8.3f}")
    on, off = rates["metrics on, limiter on"], rates["metrics off, limiter on"]
    print(f"metrics cost: on/off = {on / off:.3f} ({(1 / on - 1 / off) * 1e6:.2f} us per request)")


if __name__ == "__main__":
    main()
