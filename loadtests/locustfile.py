"""Locust scenarios for cors-handler, runnable headless against any URL (loopback, or Traefik in a cluster).

    locust -f loadtests/locustfile.py --headless -u 50 -r 10 -t 1m -H https://api.example.com \\
        --tags allowed rejected

Scenarios (tasks of one FastHttpUser, selected with --tags; all four without --tags):
  allowed   one allowed origin, the same preflight again and again (cache hits);
  rotating  CORS_LOCUST_ROTATING_ORIGINS distinct allowed origins in turn (the cache working set);
  rejected  an origin the policy refuses (403);
  storm     random client addresses in X-Forwarded-For (the limiter's table; 204 or 429).

Every response is checked: the status the scenario expects and the X-CORS-Preflight
header that proves cors-handler (not the backend) answered; anything else is a failure.
Settings come from the environment so one file serves every cluster:
  CORS_LOCUST_ORIGIN           allowed origin (https://app.example.com)
  CORS_LOCUST_ROTATING_ORIGIN  allowed origin template with {n} (https://t{n}.tenants.example.com)
  CORS_LOCUST_ROTATING_ORIGINS how many rotating origins (1000)
  CORS_LOCUST_REJECTED_ORIGIN  refused origin (https://evil.example.net)
  CORS_LOCUST_PATH             request path (/api/items)
  CORS_LOCUST_METHOD           Access-Control-Request-Method (PUT)
"""

from __future__ import annotations

import itertools
import os
import random

from locust import FastHttpUser, constant, tag, task

ORIGIN = os.environ.get("CORS_LOCUST_ORIGIN", "https://app.example.com")
ROTATING_ORIGIN = os.environ.get("CORS_LOCUST_ROTATING_ORIGIN", "https://t{n}.tenants.example.com")
ROTATING_COUNT = int(os.environ.get("CORS_LOCUST_ROTATING_ORIGINS", "1000"))
REJECTED_ORIGIN = os.environ.get("CORS_LOCUST_REJECTED_ORIGIN", "https://evil.example.net")
PATH = os.environ.get("CORS_LOCUST_PATH", "/api/items")
METHOD = os.environ.get("CORS_LOCUST_METHOD", "PUT")

_rotation = itertools.cycle(range(ROTATING_COUNT))


class PreflightUser(FastHttpUser):
    """One user class; --tags picks the scenarios (each a task of equal weight)."""

    wait_time = constant(0)

    def preflight(self, name: str, origin: str, expected: tuple[int, ...], extra: dict[str, str] | None = None) -> None:
        headers = {"Origin": origin, "Access-Control-Request-Method": METHOD, **(extra or {})}
        with self.client.request("OPTIONS", PATH, headers=headers, name=name, catch_response=True) as response:
            if response.status_code not in expected:
                response.failure(f"status {response.status_code}, expected {expected}")
            elif response.headers.get("X-CORS-Preflight") != "enhanced-handler":
                response.failure("not answered by cors-handler (no X-CORS-Preflight)")
            else:
                response.success()

    @tag("allowed")
    @task
    def allowed(self) -> None:
        self.preflight("allowed", ORIGIN, (204,))

    @tag("rotating")
    @task
    def rotating(self) -> None:
        self.preflight("rotating", ROTATING_ORIGIN.format(n=next(_rotation)), (204,))

    @tag("rejected")
    @task
    def rejected(self) -> None:
        self.preflight("rejected", REJECTED_ORIGIN, (403,))

    @tag("storm")
    @task
    def storm(self) -> None:
        client = f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"
        self.preflight("storm", ORIGIN, (204, 429), {"X-Forwarded-For": client})
