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
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import uvicorn
import watchfiles

from ..config.compile import Compiled, build
from ..config.errors import ConfigError
from ..config.settings import PolicyFileError, read_policy_file
from ..cors.model import Policy
from ..serve.events import configure_logging, get_logger
from ..serve.shadow import load_candidate
from .app import CorsHandlerApp

_log = get_logger("cors_handler.lifecycle")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


Built = TypeVar("Built")
MAX_SYMLINKS = 40  # as many links as the kernel follows in one path


def _built(make: Callable[..., Built], *args: Any) -> Built | Exception:
    """The compiled policy, or what stopped it; runs in a worker thread (it reads and waits on the file)."""
    try:
        return make(*args)
    except Exception as exc:  # handed to the loop, which logs and counts it
        return exc


class Reloader:
    """Rebuilds the policy from all sources and swaps it into the app, or keeps the old one.

    Building reads the file (and waits ``SETTLE_SECONDS`` to see it did not change) and
    compiles, so it runs in a worker thread; the outcome is logged, counted and swapped
    in on the event loop. One reload at a time: a slow build finishing after a newer one
    cannot swap in the older file.
    """

    def __init__(self, app: CorsHandlerApp, overrides: dict[str, Any], on_policy: Callable[[Compiled], None]) -> None:
        self.app = app
        self.overrides = overrides
        self.on_policy = on_policy
        self._one_at_a_time = asyncio.Lock()

    async def reload(self, trigger: str, policy_data: bytes | None = None) -> bool:
        """Build and swap in a new policy; ``policy_data``: the file's bytes when the caller read them."""
        async with self._one_at_a_time:
            built = await asyncio.to_thread(_built, build, self.overrides, policy_data)
            return self._swap_live(trigger, built)

    def _swap_live(self, trigger: str, built: Compiled | Exception) -> bool:
        if isinstance(built, ConfigError):
            self.app.metrics.reloads["failure"] += 1
            for error in built.errors:
                _log.error("policy reload failed; keeping the current policy", trigger=trigger, setting=error.setting,
                           code=error.code, error=error.message, version=self.app.policy.version)  # fmt: skip
            return False
        if isinstance(built, Exception):  # never let a reload take the service down
            self.app.metrics.reloads["failure"] += 1
            _log.error("policy reload failed; keeping the current policy", trigger=trigger, error=repr(built))
            return False
        old, new = self.app.policy, built.policy
        if (new.log_level, new.log_format) != (old.log_level, old.log_format):
            configure_logging(new.log_level, new.log_format)
        self.app.swap(new)
        self.app.metrics.reloads["success"] += 1
        self.on_policy(built)
        return True

    async def reload_candidate(self, trigger: str, policy_data: bytes | None = None) -> bool:
        """Reload the candidate file like the live one; an invalid candidate keeps the previous one."""
        path = self.app.candidate.path
        if path is None:
            return False
        async with self._one_at_a_time:
            built = await asyncio.to_thread(_built, load_candidate, path, self.overrides, policy_data)
            return self._swap_candidate(trigger, built)

    def _swap_candidate(self, trigger: str, built: Policy | Exception) -> bool:
        slot = self.app.candidate
        if isinstance(built, ConfigError):
            slot.counters.reloads["failure"] += 1
            for error in built.errors:
                _log.error("candidate policy reload failed; keeping the current candidate", trigger=trigger,
                           setting=error.setting, code=error.code, error=error.message,
                           version=slot.version())  # fmt: skip
            return False
        if isinstance(built, Exception):  # never let a reload take the service down
            slot.counters.reloads["failure"] += 1
            _log.error("candidate policy reload failed; keeping the current candidate", trigger=trigger,
                       error=repr(built))  # fmt: skip
            return False
        self.app.swap_candidate(built)
        slot.counters.reloads["success"] += 1
        _log.info("candidate policy loaded", phase="reload", trigger=trigger, version=built.version)
        return True

    async def reload_all(self, trigger: str) -> None:
        """SIGHUP: the live policy, then the candidate."""
        await self.reload(trigger)
        await self.reload_candidate(trigger)


def entries_read_through(path: Path) -> frozenset[str]:
    """The names in ``path``'s directory that reading it goes through: its own, and its symlink chain's there.

    For a mounted ConfigMap (``policy.yaml -> ..data/policy.yaml``, ``..data -> ..<timestamp>``)
    that is ``policy.yaml``, ``..data`` and ``..<timestamp>``: the update renames a new ``..data``
    over the old one. Links that leave the directory are not followed (not watched either).
    """
    directory = path.parent
    names = {path.name}
    pending = [Path(path.name)]
    for _ in range(MAX_SYMLINKS):
        if not pending:
            break
        inside = pending.pop()
        names.add(inside.parts[0])
        try:
            target = os.readlink(directory / inside.parts[0])
        except OSError:  # not a symlink (or gone): the chain ends here
            continue
        followed = Path(os.path.normpath(directory / target / Path(*inside.parts[1:])))
        if followed.is_relative_to(directory) and followed != directory:
            pending.append(followed.relative_to(directory))
    return frozenset(names)


class PolicyFileEvents:
    """watchfiles filter: only changes to the entries the policy file is read through (see entries_read_through).

    A write elsewhere in the directory (another file, the service's own log beside it) is no
    event at all, so it costs no read. ``refresh`` after each batch follows a symlink swap.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.names = entries_read_through(path)

    def refresh(self) -> None:
        self.names = entries_read_through(self.path)

    def __call__(self, change: watchfiles.Change, changed: str) -> bool:
        return os.path.basename(changed) in self.names


async def watch_policy_file(
    path: str, reload: Callable[[str, bytes | None], Awaitable[object]], stop: asyncio.Event
) -> None:
    """Reload when the policy file's content changes (direct writes, renames, ConfigMap symlink swaps).

    The directory is watched, not recursively, for changes to the entries the file is read
    through; the file is then read in a worker thread, and only bytes whose digest differs
    from the last seen are handed to the reload, which uses exactly them. A file that cannot
    be opened (mid-swap, removed) waits for the next event; one that kept changing while read
    is handed to the reload to read, and refuse, itself.
    """
    file = Path(os.path.normpath(Path(path).absolute()))
    events = PolicyFileEvents(file)
    last: str | None = None
    with contextlib.suppress(PolicyFileError):
        # On the loop, in the task's first step, with the watch set up in the same step: this runs
        # while the server starts, before it serves; awaiting here would let a write slip in between.
        last = digest(read_policy_file(path))
    async for _ in watchfiles.awatch(
        file.parent, watch_filter=events, stop_event=stop, debounce=200, step=50, recursive=False
    ):
        events.refresh()
        try:
            data = await asyncio.to_thread(read_policy_file, path)
        except PolicyFileError as exc:
            if exc.code != "policy_file_unreadable":
                last = None
                await reload("file changed", None)
            continue
        seen = digest(data)
        if seen != last:
            last = seen
            await reload("file changed", data)


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
    sighups: set[asyncio.Task[None]] = set()

    def on_sighup() -> None:
        task = asyncio.create_task(reloader.reload_all("SIGHUP"))
        sighups.add(task)
        task.add_done_callback(sighups.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    stop = asyncio.Event()
    watched = [(policy_file, reloader.reload), (candidate_file, reloader.reload_candidate)]
    watchers = [asyncio.create_task(watch_policy_file(path, reload, stop)) for path, reload in watched if path]
    try:
        await server.serve()
    finally:
        stop.set()
        loop.remove_signal_handler(signal.SIGHUP)
        for watcher in [*watchers, *sighups]:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
