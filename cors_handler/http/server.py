"""Run the app on uvicorn (uvloop + httptools), one process; scale with replicas."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import uvicorn
import uvloop

from ..config.errors import Finding
from ..config.policyfile import policy_file_path
from ..cors.model import Policy
from ..serve.events import configure_logging, get_logger
from ..serve.shadow import CandidateSlot
from .app import CorsHandlerApp
from .fastpath import FastPathProtocol
from .lifecycle import DrainingServer, Reloader, run_server
from .protocol import BoundedHttpToolsProtocol

# After the drain delay, in-flight requests get this long to finish.
GRACEFUL_SHUTDOWN_SECONDS = 10


def log_policy(policy: Policy, warnings: Iterable[Finding], phase: str) -> None:
    """The startup or reload lines: the mode, the version, each route's origins, then every warning."""
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
    policy: Policy,
    warnings: Iterable[Finding],
    host: str,
    port: int,
    overrides: dict[str, Any],
    metrics_enabled: bool = True,
    fast_path: bool = True,
    candidate: CandidateSlot | None = None,
) -> int:
    """Serve until drained; ``overrides`` are the CLI flags, applied again on every reload."""
    configure_logging(policy.log_level, policy.log_format)
    log_policy(policy, warnings, "startup")
    if candidate is not None and candidate.policy is not None:
        message = "candidate policy loaded: decided beside the live one, never enforced"
        get_logger("cors_handler").info(message, phase="startup", version=candidate.policy.version, path=candidate.path)
    app = CorsHandlerApp(policy, metrics_enabled=metrics_enabled, candidate=candidate)
    server = DrainingServer(build_config(app, host, port, fast_path), app)
    reloader = Reloader(app, overrides, lambda new: log_policy(*new, "reload"))
    policy_file = policy_file_path(overrides)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run_server(server, reloader, policy_file, app.candidate.path))
    return 0 if server.started else 1
