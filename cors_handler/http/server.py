"""Run the app on uvicorn (uvloop + httptools), one process; scale with replicas."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
import uvloop

from ..config.compile import Compiled
from ..config.lint import release_public_suffixes
from ..config.policyfile import policy_file_path
from ..config.sources import SourceBook
from ..serve.events import configure_logging, get_logger
from ..serve.shadow import CandidateSlot
from .app import CorsHandlerApp
from .fastpath import FastPathProtocol
from .lifecycle import DrainingServer, Reloader, run_server, settle_heap
from .protocol import BoundedHttpToolsProtocol

# After the drain delay, in-flight requests get this long to finish.
GRACEFUL_SHUTDOWN_SECONDS = 10


def log_policy(compiled: Compiled, phase: str, seen: dict[str, object] | None = None) -> None:
    """The startup or reload lines: the mode, the version, each route's origins, every warning; then the sources.

    A route source is reported where it was written, once: its findings are logged when
    its state (what is in force, and why) differs from the one ``seen`` last.
    """
    policy, warnings, reports, _ = compiled
    log = get_logger("cors_handler")
    log.info(
        policy.mode_line(),
        phase=phase,
        environment=policy.environment,
        version=policy.version,
        origins={r.name: r.origins.describe() for r in policy.all_routes()},
    )
    for warning in warnings:
        log.warning(str(warning), setting=warning.setting, code=warning.code, phase=phase)
    seen = {} if seen is None else seen
    for report in reports:
        state = (report.applied, report.digest, report.findings)
        if seen.get(report.name) == state:
            continue
        seen[report.name] = state
        if report.valid:
            log.info("route source applied", source=report.name, phase=phase, digest=report.digest)
        else:
            what = "its last good version stays in force" if report.applied == "last good" else (
                "its hosts and routes are refused (403) until it is fixed")  # fmt: skip
            log.error(f"route source not applied; {what}", source=report.name, phase=phase)
        for finding in report.findings:
            emit = log.error if finding.severity == "error" else log.warning
            emit(str(finding), source=report.name, setting=finding.setting, code=finding.code, phase=phase)
    for name in set(seen) - {r.name for r in reports}:
        del seen[name]


def build_config(app: CorsHandlerApp, host: str, port: int, fast_path: bool = True) -> uvicorn.Config:
    timeout = app.policy.client_timeout
    protocol = (
        FastPathProtocol.for_app(app, timeout) if fast_path else BoundedHttpToolsProtocol.with_read_timeout(timeout)
    )
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=protocol,
        ws="none",  # an Upgrade request is answered as if it had none (http.protocol)
        lifespan="on",
        access_log=False,
        # Client identity is rate_limit.depth's job; uvicorn must not rewrite the peer from headers.
        proxy_headers=False,
        server_header=False,
        log_config=None,
        log_level=app.policy.log_level,
        # Requests here are tiny: a client idle longer than this is closed (Traefik re-opens as needed). uvicorn
        # annotates an int, but only ever hands it to the protocol (http.protocol), which takes seconds as a float.
        timeout_keep_alive=app.policy.keep_alive_timeout,  # type: ignore[arg-type]
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def serve(
    compiled: Compiled,
    host: str,
    port: int,
    overrides: dict[str, Any],
    metrics_enabled: bool = True,
    fast_path: bool = True,
    candidate: CandidateSlot | None = None,
    book: SourceBook | None = None,
) -> int:
    """Serve until drained; ``overrides`` are the CLI flags, applied again on every reload."""
    policy = compiled.policy
    configure_logging(policy.log_level, policy.log_format)
    logged: dict[str, object] = {}
    log_policy(compiled, "startup", logged)
    if candidate is not None and candidate.policy is not None:
        message = "candidate policy loaded: decided beside the live one, never enforced"
        get_logger("cors_handler").info(message, phase="startup", version=candidate.policy.version, path=candidate.path)
    release_public_suffixes()  # the startup build's linter table (1.6 MiB): a reload loads it again
    app = CorsHandlerApp(policy, metrics_enabled=metrics_enabled, candidate=candidate)
    server = DrainingServer(build_config(app, host, port, fast_path), app)
    reloader = Reloader(app, overrides, lambda new: log_policy(new, "reload", logged), book)
    settle_heap()
    policy_file = policy_file_path(overrides)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run_server(server, reloader, policy_file, app.candidate.path, compiled.routes_dir))
    return 0 if server.started else 1
