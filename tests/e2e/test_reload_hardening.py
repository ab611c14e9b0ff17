"""Reloads that cannot take the policy down (issue 26 items 2, 6 and 11), against the running server.

A policy the process cannot allocate, a file caught half-written, a parent directory swapped
by a symlink, a policy symlink leading out of its directory: each either reloads as written
or is a counted, logged failure with the old policy kept, and the watcher goes on watching.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import yaml

from ..conftest import Server, run_cli, wait_for
from .test_lifecycle import ORIGIN_A, ORIGIN_B, POLICY_A, POLICY_B, allows, atomic_write, reloads

pytestmark = pytest.mark.e2e

ORIGIN_C = "https://c.example.com"


@pytest.mark.parametrize(
    ("setting", "oversized"),
    [
        pytest.param("cache_size", {"cache_size": 10_000_000_000_000}, id="cache_size"),
        pytest.param("rate_limit.max_clients", {"rate_limit": {"max_clients": 10_000_000_000_000}}, id="max_clients"),
        pytest.param("max_age", {"max_age": 100_000_000_000_000_000_000}, id="max_age-above-64-bits"),
    ],
)
def test_a_policy_that_cannot_be_allocated_is_a_failed_reload(start_server, setting: str, oversized: dict) -> None:  # type: ignore[no-untyped-def,type-arg]
    """Issue 26 item 2: the swap raised MemoryError on the loop, the watcher task ended, no reload was ever seen again.

    Now the size is refused like any invalid setting (logged with its name, counted), the old
    policy answers, and the next valid file is applied.
    """
    server: Server = start_server(POLICY_A)
    assert server.policy_path is not None
    atomic_write(server.policy_path, {**POLICY_A, "allow_origins": [ORIGIN_A, ORIGIN_C], **oversized})
    wait_for(lambda: reloads(server, "failure") >= 1, timeout=10)
    assert f'"setting":"{setting}"' in server.logs() and '"code":"out_of_range"' in server.logs()
    assert allows(server, ORIGIN_A) and not allows(server, ORIGIN_C)
    assert reloads(server, "success") == 0
    atomic_write(server.policy_path, {**POLICY_A, "allow_origins": [ORIGIN_A, ORIGIN_B]})  # the watcher still watches
    wait_for(lambda: allows(server, ORIGIN_B), timeout=10)
    assert reloads(server, "success") == 1


@pytest.mark.parametrize("command", ["check", "serve", "explain"])
def test_oversized_settings_are_refused_at_startup_naming_each(tmp_path: Path, command: str) -> None:
    """`check` said OK for such a file and `serve` crashed with a traceback (MemoryError, or orjson's TypeError)."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "allow_origins: [https://a.example.com]\ncache_size: 10000000000000\n"
        "rate_limit: {max_clients: 10000000000000}\nmax_age: 100000000000000000000\n"
    )
    args = {
        "check": ["check"],
        "serve": ["serve", "--host", "127.0.0.1", "--port", "1"],  # refused before any bind
        "explain": ["explain", "--origin", "https://a.example.com", "--method", "PUT"],
    }[command]
    result = run_cli(*args, "--policy", str(policy))
    assert result.returncode == 2, result.stdout + result.stderr
    output = result.stdout + result.stderr
    for setting in ("cache_size", "rate_limit.max_clients", "max_age"):
        assert f"{setting}: " in output and "is above the maximum" in output
    assert "Traceback" not in output


HALF_WRITTEN_OLD = """\
allow_origins: [https://a.example.com]
allow_credentials: true
rate_limit: {enabled: false}
max_age: 100
routes:
- path_prefix: /admin
  allow_origins: [https://admin.example.com]
"""
HALF_WRITTEN_NEW = HALF_WRITTEN_OLD.replace("max_age: 100", "max_age: 200")
# Where the writer pauses: routes[0] has begun and its own allow_origins is not written yet, so the half
# file parses, and /admin inherits the top level's origins (credentialed), which neither version allows.
PAUSE_AT = HALF_WRITTEN_NEW.index("  allow_origins: [https://admin")


def test_a_half_written_file_is_never_applied(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 26 item 6: an in-place rewrite pausing 1.5 s before routes[0].allow_origins served the half file.

    For those 1.5 s /admin answered https://a.example.com with a credentialed 204. Now a
    reload waits until the file has been quiet for QUIET_SECONDS: /admin never allows it,
    and the complete new version is applied afterwards.
    """
    path = tmp_path / "policy.yaml"
    path.write_text(HALF_WRITTEN_OLD)  # as text: the order of the keys matters here
    server: Server = start_server(env={"CORS_POLICY_FILE": str(path)})
    admin = "/admin/users"
    assert server.preflight("https://admin.example.com", "PUT", path=admin).status == 204
    assert server.preflight(ORIGIN_A, "PUT", path=admin).status == 403

    def rewrite() -> None:
        with path.open("r+") as handle:  # in place: the same inode, truncated, then written in two steps
            handle.truncate()
            handle.write(HALF_WRITTEN_NEW[:PAUSE_AT])
            handle.flush()
            time.sleep(1.5)
            handle.write(HALF_WRITTEN_NEW[PAUSE_AT:])

    writer = threading.Thread(target=rewrite)
    writer.start()
    answers: list[int] = []
    try:
        ends = time.monotonic() + 8
        for _ in range(100_000):  # bounded; ends once the new version answers, or by the clock
            if time.monotonic() > ends:
                break
            answers.append(server.preflight(ORIGIN_A, "PUT", path=admin).status)
            if (
                server.preflight("https://admin.example.com", "PUT", path=admin).headers.get("access-control-max-age")
                == "200"
            ):
                break
            time.sleep(0.01)
    finally:
        writer.join(timeout=10)
    assert len(answers) > 20
    assert 204 not in answers, f"the half-written file was applied: {answers.count(204)} credentialed 204s"
    assert set(answers) == {403}
    wait_for(lambda: server.preflight("https://admin.example.com", "PUT", path=admin).headers.get(
        "access-control-max-age") == "200", timeout=10)  # fmt: skip
    assert reloads(server, "success") == 1


def swap_symlink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` atomically (a new symlink renamed over it), as deploy tools do."""
    fresh = link.with_name(link.name + ".new")
    fresh.symlink_to(target)
    os.replace(fresh, link)


def test_a_swapped_parent_directory_reloads(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 26 item 11: `current -> v1`, then `current -> v2` (a release swap) was never seen.

    The watch was on v1 (inotify follows the symlink once); nothing in v1 changed. Now the
    file's identity is polled, the new version applied, and the watch moves to v2: a later
    change there is applied too.
    """
    for version, policy in (("v1", POLICY_A), ("v2", POLICY_B)):
        (tmp_path / version).mkdir()
        (tmp_path / version / "policy.yaml").write_text(yaml.safe_dump(policy))
    current = tmp_path / "current"
    current.symlink_to("v1")
    server: Server = start_server(env={"CORS_POLICY_FILE": str(current / "policy.yaml")})
    assert allows(server, ORIGIN_A)
    swap_symlink(current, "v2")
    wait_for(lambda: allows(server, ORIGIN_B), timeout=10)
    assert not allows(server, ORIGIN_A)
    atomic_write(tmp_path / "v2" / "policy.yaml", {**POLICY_B, "allow_origins": [ORIGIN_C]})
    wait_for(lambda: allows(server, ORIGIN_C), timeout=10)
    assert reloads(server, "success") == 2
    assert reloads(server, "failure") == 0


def test_a_policy_symlink_out_of_its_directory_reloads(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 26 item 11: `conf/policy.yaml -> ../shared/real.yaml`; a change to real.yaml was never seen."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "shared").mkdir()
    real = tmp_path / "shared" / "real.yaml"
    real.write_text(yaml.safe_dump(POLICY_A))
    (tmp_path / "conf" / "policy.yaml").symlink_to("../shared/real.yaml")
    server: Server = start_server(env={"CORS_POLICY_FILE": str(tmp_path / "conf" / "policy.yaml")})
    assert allows(server, ORIGIN_A)
    atomic_write(real, POLICY_B)
    wait_for(lambda: allows(server, ORIGIN_B), timeout=10)
    with real.open("r+") as handle:  # and in place
        handle.truncate()
        handle.write(yaml.safe_dump({**POLICY_B, "allow_origins": [ORIGIN_C]}))
    wait_for(lambda: allows(server, ORIGIN_C), timeout=10)
    assert reloads(server, "success") == 2
