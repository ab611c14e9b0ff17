"""Run the app on uvicorn (uvloop + httptools), one process; scale with replicas."""

from __future__ import annotations

import uvicorn

from .app import CorsHandlerApp
from .logs import configure_logging, get_logger
from .policy import Policy
from .protocol import BoundedHttpToolsProtocol

# Requests here are tiny; a client that keeps a connection idle longer than
# this is closed (Traefik re-opens as needed and keeps its own pool).
KEEP_ALIVE_SECONDS = 5


def log_policy(policy: Policy, event: str = "policy loaded") -> None:
    log = get_logger("cors_handler")
    log.info(
        policy.mode_line(),
        phase=event,
        environment=policy.environment,
        version=policy.version,
        origins={r.name: r.origins.describe() for r in policy.all_routes()},
    )
    for warning in policy.warnings:
        log.warning(warning)


def build_config(app: CorsHandlerApp, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=BoundedHttpToolsProtocol,
        lifespan="on",
        access_log=False,
        # Client identity is rate_limit.depth's job; uvicorn must not rewrite the peer from headers.
        proxy_headers=False,
        server_header=False,
        log_config=None,
        log_level=app.policy.log_level,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=max(1, int(app.policy.shutdown_delay) + 10),
    )


def serve(policy: Policy, host: str, port: int, metrics_enabled: bool = True) -> int:
    configure_logging(policy.log_level, policy.log_format)
    log_policy(policy, "startup")
    app = CorsHandlerApp(policy, metrics_enabled=metrics_enabled)
    server = uvicorn.Server(build_config(app, host, port))
    server.run()
    return 0
