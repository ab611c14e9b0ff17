"""The raw ASGI application: /health, /ready, /metrics and every OPTIONS request.

The request path reads top to bottom: take one reference to the current
Runtime (so a request finishes on the policy it started with), collect the
few headers we need in one pass, rate-limit, then answer from the response
cache — a miss evaluates the policy once for that key. Everything between
receiving the scope and sending the response is synchronous and allocation
-light; no framework, no per-request objects beyond the ASGI messages.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client.exposition import choose_encoder

from .logs import EventLog, get_logger
from .metrics import Metrics, Snapshot, build_registry
from .policy import PRODUCTION, Policy, RoutePolicy
from .preflight import ORIGIN_NOT_ALLOWED, Violation, check_sizes, decide
from .ratelimit import ClientIdentifier, RateLimiter, retry_after_seconds
from .responses import (
    REJECTED,
    Response,
    ResponseCache,
    invalid,
    json_response,
    not_preflight,
    rate_limited,
    render,
    route_disabled,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

INTERNAL_PATHS = ("/health", "/ready", "/metrics")
_log = get_logger("cors_handler.app")


class Runtime:
    """One compiled policy with everything derived from it: cache, limiter, fixed responses.

    Immutable once built; a reload builds a new Runtime and swaps one
    reference, so no response ever mixes two policies.
    """

    def __init__(self, policy: Policy, limiter: RateLimiter | None = None) -> None:
        self.policy = policy
        self.cache = ResponseCache(policy.cache_size, self.compute)
        rl = policy.rate_limit
        self.limiter: RateLimiter | None = None
        if rl.enabled:
            self.limiter = limiter or RateLimiter(rl.average, rl.period, rl.burst, rl.max_clients)
        self.clients = ClientIdentifier(rl.depth, rl.excluded)
        self.disabled = {route: route_disabled(policy, route) for route in policy.all_routes()}
        self.not_preflight = not_preflight(policy, "OPTIONS")
        self.not_preflight_internal = not_preflight(policy, "GET, HEAD, OPTIONS")
        self.duplicate_header = invalid(policy, "Origin and Access-Control-Request-Method must each appear once")
        self.events = EventLog(policy.environment == PRODUCTION)
        self._origin_refusals: dict[RoutePolicy, Response] = {}

    def successor(self, policy: Policy) -> Runtime:
        """A Runtime for ``policy`` that keeps the buckets when the limits are unchanged."""
        same_limits = self.limiter is not None and policy.rate_limit == self.policy.rate_limit
        return Runtime(policy, self.limiter if same_limits else None)

    def compute(self, route: RoutePolicy, origin: bytes, method: bytes, headers: bytes, pna: bool) -> Response:
        """Cache miss: decide once for this key and build the finished response.

        A refused origin gets the same response whatever the origin, so every cache
        entry of a random-origin flood shares one Response per route.
        """
        text_origin = origin.decode("latin-1")
        decision = decide(route, text_origin, method.decode("latin-1"), headers.decode("latin-1"), pna)
        if isinstance(decision, Violation) and decision.error_type == ORIGIN_NOT_ALLOWED:
            shared = self._origin_refusals.get(route)
            if shared is None:
                shared = self._origin_refusals[route] = render(self.policy, route, text_origin, decision)
            return shared
        return render(self.policy, route, text_origin, decision)

    def rate_limited(self, wait: float) -> Response:
        return rate_limited(self.policy, retry_after_seconds(wait))

    def answer_options(self, scope: Scope) -> tuple[RoutePolicy, Response]:
        """Every OPTIONS request: rate limit, classify, answer (cached when it is a preflight)."""
        return self.answer(scope["path"], scope["headers"], scope["client"][0] if scope.get("client") else None)

    def answer(self, path: str, headers: list[tuple[bytes, bytes]], peer: str | None) -> tuple[RoutePolicy, Response]:
        policy = self.policy
        route = policy.route_for(path)
        origin, method, joined, pna, forwarded, duplicate = read_preflight_headers(headers)

        if self.limiter is not None:
            limited = self._limit(route, peer, forwarded)
            if limited is not None:
                return route, limited

        if origin is None or method is None:
            return route, self.not_preflight_internal if path in INTERNAL_PATHS else self.not_preflight
        if duplicate:
            return route, self.duplicate_header
        if not route.enabled:
            return route, self.disabled[route]
        too_large = check_sizes(origin, method, joined)
        if too_large is not None:
            return route, invalid(policy, too_large.message)
        response = self.cache.get(route, origin, method, joined, pna)
        if response.result == REJECTED:
            self.events.rejected(route.name, response.reason, origin, method)
        return route, response

    def answer_cached(
        self, path: str, headers: list[tuple[bytes, bytes]], peer: str | None
    ) -> tuple[RoutePolicy, Response] | None:
        """The fast path: a well-formed preflight whose response is cached, else None (ASGI answers).

        Same result as ``answer`` for the requests it takes: the limiter is hit
        once, before the cached answer is used, and a miss touches nothing.
        """
        origin, method, joined, pna, forwarded, duplicate = read_preflight_headers(headers)
        if origin is None or method is None or duplicate:
            return None
        route = self.policy.route_for(path)
        if not route.enabled or check_sizes(origin, method, joined) is not None:
            return None
        response = self.cache.cached(route, origin, method, joined, pna)
        if response is None:
            return None
        if self.limiter is not None:
            limited = self._limit(route, peer, forwarded)
            if limited is not None:
                return route, limited
        if response.result == REJECTED:
            self.events.rejected(route.name, response.reason, origin, method)
        return route, response

    def _limit(self, route: RoutePolicy, peer: str | None, forwarded: bytes | None) -> Response | None:
        """Take a token for the request's client: None when allowed, else the 429."""
        assert self.limiter is not None
        client = self.clients.key(peer, forwarded)
        if client is None:
            return None
        wait = self.limiter.hit(client)
        if not wait:
            return None
        self.events.rate_limited(route.name, client)
        return self.rate_limited(wait)

    def snapshot(self) -> Snapshot:
        hits, misses, entries = self.cache.stats()
        clients = len(self.limiter) if self.limiter is not None else 0
        return Snapshot(hits, misses, entries, clients, self.policy.environment, self.policy.version)


def read_preflight_headers(
    headers: list[tuple[bytes, bytes]],
) -> tuple[bytes | None, bytes | None, bytes, bool, bytes | None, bool]:
    """(origin, method, request headers joined, PNA flag, X-Forwarded-For, duplicate) in one pass."""
    origin = method = forwarded = None
    request_headers: list[bytes] = []
    duplicate = pna = False
    for name, value in headers:
        if name == b"origin":
            duplicate |= origin is not None
            origin = value
        elif name == b"access-control-request-method":
            duplicate |= method is not None
            method = value
        elif name == b"access-control-request-headers":
            request_headers.append(value)
        elif name == b"access-control-request-private-network":
            pna = value.lower() == b"true"
        elif name == b"x-forwarded-for":
            forwarded = value if forwarded is None else forwarded + b"," + value
    joined = request_headers[0] if len(request_headers) == 1 else b",".join(request_headers)
    return origin, method, joined, pna, forwarded, duplicate


def _internal_error(error_id: str) -> Response:
    payload = {"error_type": "internal_error", "message": "Internal error", "error_id": error_id}
    return json_response(500, payload)


# While draining, every response closes its connection: clients reconnect elsewhere.
_CLOSE = ((b"connection", b"close"),)
_HEALTH_OK = json_response(200, {"status": "ok"})
_READY = json_response(200, {"status": "ready"})
_NOT_READY = json_response(503, {"status": "not_ready"})
_DRAINING = json_response(503, {"status": "draining"})


def _method_not_allowed(allow: str) -> Response:
    payload = {"error_type": "method_not_allowed", "message": f"Use {allow}"}
    return json_response(405, payload, ((b"allow", allow.encode()),))


_NOT_ALLOWED_INTERNAL = _method_not_allowed("GET, HEAD")
_NOT_ALLOWED_OTHER = _method_not_allowed("OPTIONS")


class CorsHandlerApp:
    """ASGI entry point. Holds the current Runtime, the counters and the readiness state."""

    def __init__(self, policy: Policy, metrics_enabled: bool = True) -> None:
        self.runtime = Runtime(policy)
        self.metrics = Metrics(r.name for r in policy.all_routes())
        self.metrics_enabled = metrics_enabled
        self.registry = build_registry(self.metrics, lambda: self.runtime.snapshot())
        self.started = False
        self.draining = False

    @property
    def policy(self) -> Policy:
        return self.runtime.policy

    def swap(self, policy: Policy) -> None:
        """Install a new compiled policy atomically (one reference assignment)."""
        old = self.runtime
        new = old.successor(policy)
        self.metrics.set_routes(r.name for r in policy.all_routes())
        hits, misses, _ = old.cache.stats()
        self.runtime = new
        self.metrics.retire_cache(hits, misses)

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
        try:
            if scope["method"] == "OPTIONS":
                return self._options(scope)
            return self._other(scope)
        except Exception as exc:
            error_id = uuid.uuid4().hex
            _log.error(
                "unhandled error",
                error_id=error_id,
                error=repr(exc),
                traceback=traceback.format_exc(),
                path=str(scope.get("path", ""))[:256],
            )
            return _internal_error(error_id)

    def _options(self, scope: Scope) -> Response:
        if not self.metrics_enabled:
            return self.runtime.answer_options(scope)[1]
        start = time.perf_counter()
        route, response = self.runtime.answer_options(scope)
        self.metrics.observe(time.perf_counter() - start)
        self.metrics.count(route.name, response.result, response.reason)
        return response

    def answer_cached(self, path: str, headers: list[tuple[bytes, bytes]], peer: str | None) -> Response | None:
        """The protocol fast path's entry: a cached preflight answer, counted as ``_options`` counts."""
        if self.draining:
            return None  # the ASGI path adds Connection: close while draining
        try:
            if not self.metrics_enabled:
                found = self.runtime.answer_cached(path, headers, peer)
                return None if found is None else found[1]
            start = time.perf_counter()
            found = self.runtime.answer_cached(path, headers, peer)
            if found is None:
                return None
            route, response = found
            self.metrics.observe(time.perf_counter() - start)
            self.metrics.count(route.name, response.result, response.reason)
            self.metrics.fast_path += 1
            return response
        except Exception:
            return None  # the ASGI path answers, and reports the error with an error_id

    def _other(self, scope: Scope) -> Response:
        path = scope["path"]
        if path not in INTERNAL_PATHS:
            return _NOT_ALLOWED_OTHER
        if scope["method"] not in ("GET", "HEAD"):
            return _NOT_ALLOWED_INTERNAL
        if path == "/health":
            return _HEALTH_OK
        if path == "/ready":
            if self.draining:
                return _DRAINING
            return _READY if self.started else _NOT_READY
        return self._metrics_response(scope)

    def _metrics_response(self, scope: Scope) -> Response:
        accept = ""
        for name, value in scope["headers"]:
            if name == b"accept":
                accept = value.decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        body = encoder(self.registry)
        headers = (
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        )
        return Response(200, headers, body)

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
