"""The reloader and the watcher in-process: failures the real server cannot be made to hit on demand.

A swap whose allocation fails (MemoryError past the settings' bounds, e.g. a pod at its memory
limit) and a reload that raises are forced here; tests/e2e/test_reload_hardening.py covers the
same rule through the running server.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from cors_handler.config.compile import Compiled
from cors_handler.config.errors import ConfigError
from cors_handler.config.policyfile import PolicyFileError
from cors_handler.http import lifecycle
from cors_handler.http.app import CorsHandlerApp
from cors_handler.serve import pipeline

from ..conftest import make_policy

ORIGIN_A = "https://a.example.com"
ORIGIN_B = "https://b.example.com"


def policy_bytes(*origins: str) -> bytes:
    return yaml.safe_dump({"allow_origins": list(origins)}).encode()


@pytest.fixture
def reloader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> lifecycle.Reloader:
    for name in [k for k in os.environ if k.startswith("CORS_")]:
        monkeypatch.delenv(name)
    path = tmp_path / "policy.yaml"
    path.write_bytes(policy_bytes(ORIGIN_A))
    app = CorsHandlerApp(make_policy(allow_origins=[ORIGIN_A]))
    installed: list[Compiled] = []
    return lifecycle.Reloader(app, {"policy_file": str(path)}, installed.append)


def allowed_origins(app: CorsHandlerApp) -> set[str]:
    return {origin for route in app.policy.all_routes() for origin in route.origins.exact}


def test_a_swap_that_cannot_allocate_is_a_failed_reload(
    reloader: lifecycle.Reloader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 26 item 2: the MemoryError of the new Runtime's tables escaped the reload (and ended the watcher)."""
    real_cache = pipeline.ResponseCache

    def no_memory(maxsize: int) -> Any:
        raise MemoryError

    monkeypatch.setattr(pipeline, "ResponseCache", no_memory)
    assert asyncio.run(reloader.reload("test", policy_bytes(ORIGIN_B))) is False
    assert reloader.app.metrics.reloads == {"success": 0, "failure": 1}
    assert allowed_origins(reloader.app) == {ORIGIN_A}  # the old policy, whole
    monkeypatch.setattr(pipeline, "ResponseCache", real_cache)
    assert asyncio.run(reloader.reload("test", policy_bytes(ORIGIN_B))) is True
    assert allowed_origins(reloader.app) == {ORIGIN_B}


def test_a_candidate_swap_that_cannot_allocate_keeps_the_candidate(
    reloader: lifecycle.Reloader, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    candidate = tmp_path / "candidate.yaml"
    candidate.write_bytes(policy_bytes(ORIGIN_B))
    reloader.app.candidate.path = str(candidate)
    monkeypatch.setattr(pipeline, "ResponseCache", lambda maxsize: (_ for _ in ()).throw(MemoryError()))
    assert asyncio.run(reloader.reload_candidate("test")) is False
    assert reloader.app.candidate.counters.reloads == {"success": 0, "failure": 1}
    assert reloader.app.candidate.policy is None  # not half installed: the slot and the Runtime agree


def test_a_refused_read_is_a_failed_reload_with_its_code(reloader: lifecycle.Reloader) -> None:
    refusal = PolicyFileError("policy_file_changing", "policy.yaml did not stay unchanged", "write it atomically")
    assert asyncio.run(reloader.reload("file changed", refusal)) is False
    assert reloader.app.metrics.reloads["failure"] == 1


async def watch_until(path: Path, reload: Any, done: asyncio.Event, change: Any) -> None:
    stop = asyncio.Event()
    watcher = asyncio.create_task(lifecycle.watch_policy_file(str(path), reload, stop))
    await asyncio.sleep(0.3)
    await change()
    try:
        await asyncio.wait_for(done.wait(), 15)
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 5)


def test_the_watcher_survives_a_reload_that_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a reload raises, the next change is still seen (the watch task used to end silently)."""
    monkeypatch.setattr(lifecycle, "QUIET_SECONDS", 0.1, raising=False)
    monkeypatch.setattr(lifecycle, "POLL_SECONDS", 0.2, raising=False)
    path = tmp_path / "policy.yaml"
    path.write_bytes(policy_bytes(ORIGIN_A))
    seen: list[bytes] = []
    done = asyncio.Event()

    async def reload(trigger: str, data: Any) -> None:
        seen.append(data)
        if len(seen) == 1:
            raise MemoryError
        done.set()

    async def change() -> None:
        tmp = tmp_path / "tmp"
        for origin in (ORIGIN_B, "https://c.example.com"):
            tmp.write_bytes(policy_bytes(origin))
            os.replace(tmp, path)
            for _ in range(100):  # until the reload has seen it
                if len(seen) >= (1 if origin == ORIGIN_B else 2):
                    break
                await asyncio.sleep(0.1)

    asyncio.run(watch_until(path, reload, done, change))
    assert seen == [policy_bytes(ORIGIN_B), policy_bytes("https://c.example.com")]


def test_a_build_leaves_the_public_suffix_list_unloaded() -> None:
    """The linter's table (1.6 MiB) is loaded for a build that judges a wildcard, then dropped (issue 27)."""
    from cors_handler.config import lint

    assert lint.is_public_suffix("co.uk") and lint._public_suffixes.cache_info().currsize == 1  # loaded
    wildcard = {"allow_origins": ["https://*.example.com"]}
    built = lifecycle._built(lifecycle._build_with, None, wildcard, lifecycle.SourceBook(), 0.0)
    assert isinstance(built, Compiled), built
    assert lint._public_suffixes.cache_info().currsize == 0
    public = {"allow_origins": ["https://*.co.uk"]}
    refused = lifecycle._built(lifecycle._build_with, None, public, lifecycle.SourceBook(), 0.0)
    assert isinstance(refused, ConfigError) and "public suffix" in str(refused)  # loaded again to judge it
    assert lint._public_suffixes.cache_info().currsize == 0


def test_settle_heap_freezes_what_lives_and_collects_old_cycles_first() -> None:
    import gc
    import weakref

    from cors_handler.http.lifecycle import settle_heap

    class Node:
        other: object = None

    first, second = Node(), Node()
    first.other, second.other = second, first  # a cycle, frozen by a first settle
    settle_heap()
    gone = weakref.ref(first)
    del first, second
    try:
        assert gone() is not None  # frozen: no pass of the collector sees it
        settle_heap()  # a swap: unfreeze, collect, freeze again
        assert gone() is None and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
