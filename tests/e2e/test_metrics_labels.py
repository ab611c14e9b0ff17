"""Metric labels are bounded: random origins, paths and clients never become label values."""

import random

import pytest

from ..conftest import Server
from .pipeline import pipeline, preflight_bytes

pytestmark = pytest.mark.e2e


def test_10k_random_origins_paths_and_clients_leave_metrics_bounded(start_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = start_server({
        "allow_origins": ["https://app.example.com"],
        "rate_limit": {"depth": 1, "average": 1000, "burst": 1000},
        "routes": [{"name": "v2", "path_prefix": "/api/v2"}],
    })  # fmt: skip
    baseline = server.request("GET", "/metrics").body
    rng = random.Random(7)
    origins = [f"https://r{rng.getrandbits(48):x}.example.net" for _ in range(10_000)]
    requests = [
        preflight_bytes(origin, path=f"/api/v2/u{rng.getrandbits(32):x}" if i % 2 else f"/p{i}",
                        forwarded=f"192.0.{i >> 8 & 255}.{i & 255}")
        for i, origin in enumerate(origins)
    ]  # fmt: skip
    assert set(pipeline(server.port, requests)) == {403}
    after = server.request("GET", "/metrics").body
    text = after.decode()
    for origin in origins[::97]:
        assert origin not in text
    assert "192.0." not in text and "/api/v2/u" not in text and "/p1" not in text
    series = [line for line in text.splitlines() if line.startswith("cors_") and not line.startswith("#")]
    assert len(series) == len([line for line in baseline.decode().splitlines()
                               if line.startswith("cors_") and not line.startswith("#")])  # fmt: skip
    assert len(after) < len(baseline) + 2048  # only numbers changed
    routes = {line.split('route="')[1].split('"')[0] for line in series if 'route="' in line}
    assert routes == {"default", "v2"}
