"""The raw ASGI application: /health, /ready, /metrics and the OPTIONS requests the fast path cannot frame.

With the fast path on (the default), OPTIONS requests reach this app only when
they carry a body or an Upgrade, follow a request still being answered, or
arrive while draining; with ``--no-fast-path``, all of them. Either way they go
to the one request pipeline (``serve.pipeline``), so both entry points answer alike.
No framework, no per-request objects beyond the ASGI messages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client.exposition import choose_encoder

from ..cors.model import Policy
from ..serve.metrics import Metrics, build_registry
from ..serve.pipeline import INTERNAL_PATHS, Pipeline, Runtime
from ..serve.responses import (
    DRAINING,
    HEALTH_OK,
    NOT_READY,
    READY,
    Response,
    http_method_not_allowed,
    internal_error,
    metrics_page,
)
from ..serve.shadow import CandidateSlot

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# While draining, every response closes its connection: clients reconnect elsewhere.
_CLOSE = ((b"connection", b"close"),)
_NOT_ALLOWED_INTERNAL = http_method_not_allowed("GET, HEAD")
_NOT_ALLOWED_OTHER = http_method_not_allowed("OPTIONS")


class CorsHandlerApp:
    """ASGI entry point. Holds the request pipeline, the metrics registry and the readiness state."""

    def __init__(self, policy: Policy, metrics_enabled: bool = True, candidate: CandidateSlot | None = None) -> None:
        self.pipeline = Pipeline(policy, metrics_enabled, candidate)
        self.registry = build_registry(self.metrics, lambda: self.runtime.snapshot())
        self.registry.register(self.candidate.collector())
        self.started = False
        self.draining = False

    @property
    def runtime(self) -> Runtime:
        return self.pipeline.runtime

    @property
    def metrics(self) -> Metrics:
        return self.pipeline.metrics

    @property
    def policy(self) -> Policy:
        return self.pipeline.runtime.policy

    @property
    def candidate(self) -> CandidateSlot:
        return self.pipeline.candidate

    def swap(self, policy: Policy) -> None:
        """Install a new compiled policy atomically (one reference assignment)."""
        self.pipeline.swap(policy)

    def swap_candidate(self, candidate: Policy) -> None:
        """Install a new candidate policy (the live one stays): see Pipeline.swap_candidate."""
        self.pipeline.swap_candidate(candidate)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            response = self.respond(scope)
            headers = response.headers + _CLOSE if self.draining else response.headers
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            body = b"" if scope["method"] == "HEAD" else response.body
            await send({"type": "http.response.body", "body": body})
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    def respond(self, scope: Scope) -> Response:
        """The whole HTTP request, synchronously; never raises (a 500 carries an error_id)."""
        if scope["method"] == "OPTIONS":
            client = scope.get("client")
            return self.pipeline.answer(scope["path"], scope["headers"], client[0] if client else None)
        try:
            return self._other(scope)
        except Exception as exc:
            return internal_error(exc, str(scope.get("path", "")))

    def _other(self, scope: Scope) -> Response:
        path = scope["path"]
        if path not in INTERNAL_PATHS:
            return _NOT_ALLOWED_OTHER
        if scope["method"] not in ("GET", "HEAD"):
            return _NOT_ALLOWED_INTERNAL
        if path == "/health":
            return HEALTH_OK
        if path == "/ready":
            if self.draining:
                return DRAINING
            return READY if self.started else NOT_READY
        return self._metrics_response(scope)

    def _metrics_response(self, scope: Scope) -> Response:
        accept = ""
        for name, value in scope["headers"]:
            if name == b"accept":
                accept = value.decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        return metrics_page(encoder(self.registry), content_type)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.started = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.draining = True
                await send({"type": "lifespan.shutdown.complete"})
                return
