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
import gc
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
from ..config.lint import release_public_suffixes
from ..config.policyfile import QUIET_SECONDS, PolicyFileError, file_identity, read_policy_file
from ..config.sources import SourceBook, source_files
from ..serve.events import configure_logging, get_logger
from ..serve.shadow import load_candidate
from .app import CorsHandlerApp

_log = get_logger("cors_handler.lifecycle")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


Built = TypeVar("Built")
MAX_SYMLINKS = 40  # as many links as the kernel follows in one path
# The watcher also looks at the file's identity this often (a stat), and after a failure watches again
# after this long: changes no directory event announces (a swapped parent directory, a symlink leading
# out of the directory, a file system without inotify) are seen within it.
POLL_SECONDS = 1.0

# What a reload gets from whoever saw the change: the file's bytes (the watcher read them once the file was
# quiet), why the file could not be used, or nothing: SIGHUP, an operator's "apply it now", reads the file
# itself at once, as startup and `check` do.
PolicyData = bytes | PolicyFileError | None


def _built(make: Callable[..., Built], data: PolicyData, *args: Any) -> Built | Exception:
    """``make(*args, data)``, or what stopped it; runs in a worker thread (it reads and waits on the file)."""
    try:
        if isinstance(data, PolicyFileError):
            raise data.as_config_error()
        return make(*args, data)
    except Exception as exc:  # handed to the loop, which logs and counts it
        return exc
    finally:
        release_public_suffixes()  # the linter's table, needed again only by the next build


def settle_heap() -> None:
    """Take the policy's long-lived objects out of the garbage collector's sight, after startup and each swap.

    A request allocates short-lived objects, and each of the collector's older-generation
    passes walks every tracked object: the compiled policy, its tables and caches. With
    a thousand route files that walk doubled the cost of a cache miss (measured in the
    bench's 1,000-host scenario). ``gc.freeze`` moves what exists now to a generation no
    pass walks; first ``unfreeze`` and a full collection, so the previous policy's
    garbage cycles are collected, not frozen forever.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _build_with(overrides: dict[str, Any], book: SourceBook, quiet: float, data: bytes | None) -> Compiled:
    return build(overrides, data, book, quiet)


class Reloader:
    """Rebuilds the policy from all sources and swaps it into the app, or keeps the old one.

    Building reads the file (unless the watcher did) and compiles, so it runs in a
    worker thread; the outcome is logged, counted and swapped in on the event loop. Every
    failure of any step (read, validate, compile, the allocations of the swap) is a failed
    reload: logged, counted, the old policy kept. One reload at a time: a slow build
    finishing after a newer one cannot swap in the older file.
    """

    def __init__(
        self,
        app: CorsHandlerApp,
        overrides: dict[str, Any],
        on_policy: Callable[[Compiled], None],
        book: SourceBook | None = None,
    ) -> None:
        self.app = app
        self.overrides = overrides
        self.on_policy = on_policy
        self.book = book or SourceBook()  # the route sources' last good versions, from startup on
        self._one_at_a_time = asyncio.Lock()

    async def reload(self, trigger: str, policy_data: PolicyData = None) -> bool:
        """Build and swap in a new policy; ``policy_data``: the bytes (or their refusal) if the caller read them."""
        async with self._one_at_a_time:
            # A file a watcher saw change is applied once quiet; SIGHUP is an operator's "apply it now".
            quiet = 0.0 if trigger == "SIGHUP" else QUIET_SECONDS
            built = await asyncio.to_thread(_built, _build_with, policy_data, self.overrides, self.book, quiet)
            if not isinstance(built, Exception):
                try:
                    return self._install(trigger, built)
                except Exception as exc:  # MemoryError from a table's allocation, ...: the old policy stays
                    built = exc
            self._refused(trigger, built, self.app.metrics.reloads, "policy reload failed; keeping the current policy",
                          self.app.policy.version)  # fmt: skip
            return False

    def _install(self, trigger: str, built: Compiled) -> bool:
        old, new = self.app.policy, built.policy
        self.app.swap(new)  # builds the new tables first: if that raises, nothing has changed
        self.app.metrics.reloads["success"] += 1
        if (new.log_level, new.log_format) != (old.log_level, old.log_format):
            configure_logging(new.log_level, new.log_format)
        self.on_policy(built)
        settle_heap()
        return True

    @staticmethod
    def _refused(trigger: str, failure: Exception, counts: dict[str, int], message: str, version: str | None) -> None:
        counts["failure"] += 1
        if isinstance(failure, ConfigError):
            for error in failure.errors:
                _log.error(message, trigger=trigger, setting=error.setting, code=error.code, error=error.message,
                           version=version)  # fmt: skip
        else:  # never let a reload take the service down
            _log.error(message, trigger=trigger, error=repr(failure), version=version)

    async def reload_candidate(self, trigger: str, policy_data: PolicyData = None) -> bool:
        """Reload the candidate file like the live one; an invalid candidate keeps the previous one."""
        slot = self.app.candidate
        path = slot.path
        if path is None:
            return False
        async with self._one_at_a_time:
            built = await asyncio.to_thread(_built, load_candidate, policy_data, path, self.overrides)
            if not isinstance(built, Exception):
                try:
                    self.app.swap_candidate(built)
                    settle_heap()
                    slot.counters.reloads["success"] += 1
                    _log.info("candidate policy loaded", phase="reload", trigger=trigger, version=built.version)
                    return True
                except Exception as exc:
                    built = exc
            self._refused(trigger, built, slot.counters.reloads,
                          "candidate policy reload failed; keeping the current candidate", slot.version())  # fmt: skip
            return False

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
    path: str, reload: Callable[[str, PolicyData], Awaitable[object]], stop: asyncio.Event
) -> None:
    """Reload when the policy file changes (direct writes, renames, symlink swaps); ends only at ``stop``.

    The directory is watched, not recursively, for changes to the entries the file is read
    through, and every POLL_SECONDS the file's identity (a stat, symlinks followed) is
    compared with the last one seen: a swapped parent directory (``current -> v2``) or a
    symlink out of the directory changes it without an event there; the watch then moves
    to the directory the path now leads to. On a change the file is read in a worker
    thread once it has been quiet (QUIET_SECONDS), and only bytes whose digest differs from
    the last seen are handed to the reload, which uses exactly them. A file that cannot be
    opened (mid-swap, removed) waits for the next change; one that kept changing is handed
    to the reload as its refusal (a failed reload). Whatever fails in here is logged and the
    watch starts again.
    """
    file = Path(os.path.normpath(Path(path).absolute()))
    state = _WatchState(path, reload)
    with contextlib.suppress(PolicyFileError):
        # On the loop, in the task's first step, with the watch set up in the same step: this runs
        # while the server starts, before it serves; awaiting here would let a write slip in between.
        state.identity = file_identity(path)
        state.last = digest(read_policy_file(path))
    while not stop.is_set():
        try:
            await state.watch(file, stop)
        except Exception as exc:  # a directory gone, a reload that raised: keep watching
            _log.error("policy file watch failed; watching again", path=path, error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_SECONDS)


class _WatchState:
    """The watcher's memory across watches: the last identity and digest seen."""

    def __init__(self, path: str, reload: Callable[[str, PolicyData], Awaitable[object]]) -> None:
        self.path = path
        self.reload = reload
        self.identity: tuple[int, int, int, int] | None = None
        self.last: str | None = None

    async def watch(self, file: Path, stop: asyncio.Event) -> None:
        """Watch the directory the path leads to now, until ``stop`` or until the path leads elsewhere."""
        directory = os.path.realpath(file.parent)
        events = PolicyFileEvents(file)
        if self.identity != file_identity(self.path):  # changed while no watch was set up
            await self.changed()
        async for changes in watchfiles.awatch(
            directory, watch_filter=events, stop_event=stop, debounce=200, step=50, recursive=False,
            rust_timeout=int(POLL_SECONDS * 1000), yield_on_timeout=True,
        ):  # fmt: skip
            events.refresh()
            if changes or self.identity != file_identity(self.path):
                await self.changed()
            if os.path.realpath(file.parent) != directory:
                return  # the parent directory was swapped: watch the one it leads to now

    async def changed(self) -> None:
        self.identity = file_identity(self.path)
        try:
            data = await asyncio.to_thread(read_policy_file, self.path, quiet=QUIET_SECONDS)
        except PolicyFileError as exc:
            if exc.code != "policy_file_unreadable":
                self.last = None
                await self.reload("file changed", exc)
            return
        self.identity = file_identity(self.path)
        seen = digest(data)
        if seen != self.last:
            self.last = seen
            await self.reload("file changed", data)


def routes_dir_state(directory: str) -> tuple[tuple[str, tuple[int, int, int, int] | None], ...] | None:
    """What the routes directory's sources lead to now: (name, identity) each; None when it cannot be listed."""
    try:
        names = source_files(directory)
    except OSError:
        return None
    return tuple((name, file_identity(os.path.join(directory, name))) for name in names)


async def watch_routes_dir(
    directory: str, reload: Callable[[str, PolicyData], Awaitable[object]], stop: asyncio.Event
) -> None:
    """Reload when a route source appears, disappears or changes; ends only at ``stop``.

    The directory is watched (not recursively) and, every POLL_SECONDS, the identity of
    each source (a stat, symlinks followed: a ConfigMap's ``..data`` swap changes every
    one) is compared with the last seen; only a change there reloads, so writes to
    other files of the directory read nothing. The reload reads only the files whose
    identity changed (``config.sources.read_sources``), each once it is quiet.
    """
    last = routes_dir_state(directory)
    while not stop.is_set():
        try:
            async for _ in watchfiles.awatch(
                directory, stop_event=stop, debounce=200, step=50, recursive=False,
                rust_timeout=int(POLL_SECONDS * 1000), yield_on_timeout=True,
            ):  # fmt: skip
                now = routes_dir_state(directory)
                if now != last:
                    last = now
                    await reload("route source changed", None)
        except Exception as exc:  # the directory gone for a moment, a reload that raised: keep watching
            _log.error("routes directory watch failed; watching again", path=directory, error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_SECONDS)


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
    server: DrainingServer,
    reloader: Reloader,
    policy_file: str | None,
    candidate_file: str | None = None,
    routes_dir: str | None = None,
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
    if routes_dir:
        watchers.append(asyncio.create_task(watch_routes_dir(routes_dir, reloader.reload, stop)))
    try:
        await server.serve()
    finally:
        stop.set()
        loop.remove_signal_handler(signal.SIGHUP)
        for watcher in [*watchers, *sighups]:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
