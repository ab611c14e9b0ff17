"""Operating without downtime: hot policy reload and the SIGTERM drain.

Reload. The policy file is watched (watchfiles, on the file's *directory*:
a Kubernetes ConfigMap update replaces the ``..data`` symlink, the file's own
inode never changes) and SIGHUP reloads too. A reload builds settings from
every source again (flags, then the environment, then the file — so the
environment still overrides the file), validates and compiles completely,
and only then swaps one reference in the app. A request holds the Runtime it
started with, so it finishes on that policy; the next one sees the new policy
and its fresh cache. An invalid file keeps the old policy serving, logs each
error with its setting and code, and counts a failed reload; /ready stays 200.
An empty file is invalid (an editor that truncates before it writes must not
swap in the built-in defaults for a moment). The file is read once per
reload, completely: the watcher reads it, compares its digest with the last
one seen, and hands exactly those bytes to the reload; a file that changes
while it is read is read again, then refused (``settings.read_policy_file``).

Drain. On SIGTERM /ready turns 503 at once and every response carries
``Connection: close`` (clients move to other pods instead of reusing this
one), the server keeps serving for ``shutdown_delay`` seconds while the
endpoint disappears from load balancers, then uvicorn stops accepting, lets
in-flight requests finish, and the process exits 0. SIGINT does the same
without the delay; a second SIGINT forces the exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
import watchfiles

from .app import CorsHandlerApp
from .candidate import load_candidate
from .errors import ConfigError
from .logs import configure_logging, get_logger
from .policy import Policy, build_policy
from .settings import PolicyFileError, read_policy_file

_log = get_logger("cors_handler.lifecycle")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Reloader:
    """Rebuilds the policy from all sources and swaps it into the app, or keeps the old one."""

    def __init__(self, app: CorsHandlerApp, overrides: dict[str, Any], on_policy: Callable[[Policy], None]) -> None:
        self.app = app
        self.overrides = overrides
        self.on_policy = on_policy

    def reload(self, trigger: str, policy_data: bytes | None = None) -> bool:
        """Build and swap in a new policy; ``policy_data``: the file's bytes when the caller read them."""
        try:
            policy = build_policy(self.overrides, policy_data)
        except ConfigError as exc:
            self.app.metrics.reloads["failure"] += 1
            for error in exc.errors:
                _log.error("policy reload failed; keeping the current policy", trigger=trigger, setting=error.setting,
                           code=error.code, error=error.message, version=self.app.policy.version)  # fmt: skip
            return False
        except Exception as exc:  # never let a reload take the service down
            self.app.metrics.reloads["failure"] += 1
            _log.exception("policy reload failed; keeping the current policy", trigger=trigger, error=repr(exc))
            return False
        old = self.app.policy
        if (policy.log_level, policy.log_format) != (old.log_level, old.log_format):
            configure_logging(policy.log_level, policy.log_format)
        self.app.swap(policy)
        self.app.metrics.reloads["success"] += 1
        self.on_policy(policy)
        return True

    def reload_candidate(self, trigger: str, policy_data: bytes | None = None) -> bool:
        """Reload the candidate file like the live one; an invalid candidate keeps the previous one."""
        slot = self.app.candidate
        if slot.path is None:
            return False
        try:
            candidate = load_candidate(slot.path, self.overrides, policy_data)
        except ConfigError as exc:
            slot.counters.reloads["failure"] += 1
            for error in exc.errors:
                _log.error("candidate policy reload failed; keeping the current candidate", trigger=trigger,
                           setting=error.setting, code=error.code, error=error.message,
                           version=slot.version())  # fmt: skip
            return False
        except Exception as exc:  # never let a reload take the service down
            slot.counters.reloads["failure"] += 1
            _log.exception("candidate policy reload failed; keeping the current candidate", trigger=trigger,
                           error=repr(exc))  # fmt: skip
            return False
        self.app.swap_candidate(candidate)
        slot.counters.reloads["success"] += 1
        _log.info("candidate policy loaded", phase="reload", trigger=trigger, version=candidate.version)
        return True

    def reload_all(self, trigger: str) -> None:
        """SIGHUP: the live policy, then the candidate."""
        self.reload(trigger)
        self.reload_candidate(trigger)


async def watch_policy_file(path: str, reload: Callable[[str, bytes | None], object], stop: asyncio.Event) -> None:
    """Reload when the policy file's content changes (direct writes, renames, ConfigMap symlink swaps).

    The bytes whose digest differs are the bytes the reload uses. A file that
    cannot be opened (mid-swap, removed) waits for the next event; one that
    kept changing while read is handed to the reload to read, and refuse, itself.
    """
    directory = Path(path).absolute().parent
    last: str | None = None
    with contextlib.suppress(PolicyFileError):
        last = digest(read_policy_file(path))
    async for _ in watchfiles.awatch(directory, stop_event=stop, debounce=200, step=50, recursive=True):
        try:
            data = read_policy_file(path)
        except PolicyFileError as exc:
            if exc.code != "policy_file_unreadable":
                last = None
                reload("file changed", None)
            continue
        seen = digest(data)
        if seen != last:
            last = seen
            reload("file changed", data)


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose SIGTERM drains for ``shutdown_delay`` before shutting down, and exits 0."""

    def __init__(self, config: uvicorn.Config, app: CorsHandlerApp) -> None:
        super().__init__(config)
        self.app = app
        self.exit_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.exit_at is not None:
            if sig == signal.SIGINT:
                self.should_exit = self.force_exit = True
            return
        # Not recorded in _captured_signals: uvicorn would re-raise it after shutdown and the
        # process would die by the signal instead of exiting 0.
        self.app.draining = True
        delay = self.app.policy.shutdown_delay if sig == signal.SIGTERM else 0.0
        self.exit_at = time.monotonic() + delay
        _log.info("draining: /ready answers 503", signal=signal.Signals(sig).name, shutdown_delay=delay)

    async def on_tick(self, counter: int) -> bool:
        if self.exit_at is not None and time.monotonic() >= self.exit_at:
            self.should_exit = True
        return await super().on_tick(counter)


async def run_server(
    server: DrainingServer, reloader: Reloader, policy_file: str | None, candidate_file: str | None = None
) -> None:
    """Serve until drained, with SIGHUP reloads and the file watchers (policy, candidate) alongside."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, reloader.reload_all, "SIGHUP")
    stop = asyncio.Event()
    watched = [(policy_file, reloader.reload), (candidate_file, reloader.reload_candidate)]
    watchers = [asyncio.create_task(watch_policy_file(path, reload, stop)) for path, reload in watched if path]
    try:
        await server.serve()
    finally:
        stop.set()
        loop.remove_signal_handler(signal.SIGHUP)
        for watcher in watchers:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
