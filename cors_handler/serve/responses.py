"""Every response the service sends, and the one wire encoder.

A Response is built once and never changed: its headers are a tuple of
(bytes, bytes) tuples, so nothing downstream can append to a shared header
list (a bug class other CORS libraries have shipped). Every body is built
here, from the preflight answers (the README's answers table) to the
protocol's 400/408/431 and the internal 500, so an error_type means one thing
everywhere. ``encode`` turns a Response into the bytes uvicorn writes for it
through ASGI, so the fast path and the ASGI path cannot differ by a byte.
"""

from __future__ import annotations

import dataclasses
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from ..cors.decide import Allowed, Decision, Invalid, Violation
from ..cors.limits import LOG_PATH_CHARS, MAX_HEAD_BYTES, MAX_HEADERS
from ..cors.model import Policy, RoutePolicy
from .events import get_logger

ResponseHeaders = tuple[tuple[bytes, bytes], ...]

# metrics ``result`` label values
ALLOWED = "allowed"
REJECTED = "rejected"
INVALID = "invalid"
NOT_PREFLIGHT = "not_preflight"
RATE_LIMITED = "rate_limited"
DISABLED = "disabled"
RESULTS = (ALLOWED, REJECTED, INVALID, NOT_PREFLIGHT, RATE_LIMITED, DISABLED)

PREFLIGHT_MARKER = (b"x-cors-preflight", b"enhanced-handler")
SECURITY_HEADERS: ResponseHeaders = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
)
NO_STORE = (b"cache-control", b"no-store")
VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
VARY_PRIVATE_NETWORK = VARY + ", Access-Control-Request-Private-Network"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: ResponseHeaders
    body: bytes = b""
    result: str = ""  # metrics result label (preflight responses only)
    reason: str = ""  # rejection reason or error_type, for metrics and logs
    detail: str = field(default="", compare=False)  # for the rejection log: the refused request headers
    # With a candidate policy: the cors_candidate_decisions_total cell each answer with this response counts.
    tally: list[int] | None = field(default=None, compare=False, repr=False)
    # The status line and header lines as uvicorn writes them, encoded once for ``encode``.
    status_line: bytes = field(init=False, repr=False, compare=False)
    header_lines: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status_line", STATUS_LINE[self.status])
        object.__setattr__(self, "header_lines", b"".join([b"%s: %s\r\n" % pair for pair in self.headers]))


def _h(name: str, value: str) -> tuple[bytes, bytes]:
    return name.encode("latin-1"), value.encode("latin-1")


def json_response(
    status: int,
    payload: dict[str, Any],
    extra: ResponseHeaders = (),
    security: bool = True,
    result: str = "",
) -> Response:
    # orjson's bytes keep its whole output buffer (4 KiB here); a cached 403 must cost its size only.
    body = bytes(memoryview(orjson.dumps(payload)))
    headers: ResponseHeaders = (
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
        *(SECURITY_HEADERS if security else ()),
        NO_STORE,
    )
    return Response(status, headers, body, result, str(payload.get("error_type", "")))


def _vary(route: RoutePolicy) -> tuple[bytes, bytes]:
    return _h("vary", VARY_PRIVATE_NETWORK if route.allow_private_network else VARY)


def allowed(policy: Policy, route: RoutePolicy, origin: str, decision: Allowed) -> Response:
    """The 204 answer of an allowed preflight (header values as the README's answers table says)."""
    any_origin = route.origins.allow_any and not route.allow_credentials
    headers = [_h("access-control-allow-origin", "*" if any_origin else origin)]
    methods = decision.method if route.any_method else ", ".join(route.methods)
    headers.append(_h("access-control-allow-methods", methods))
    # With '*', echo what was asked for (the list is then the request's, not the policy's).
    allowed_headers = ", ".join(decision.request_headers if route.any_header else route.headers)
    if allowed_headers:
        headers.append(_h("access-control-allow-headers", allowed_headers))
    # Harmless on a preflight (browsers read it on actual responses); the Gateway API's conformance cases expect it.
    if route.expose_headers:
        headers.append(_h("access-control-expose-headers", ", ".join(route.expose_headers)))
    headers.append(_h("access-control-max-age", str(route.max_age)))
    if route.allow_credentials:
        headers.append((b"access-control-allow-credentials", b"true"))
    if decision.private_network:
        headers.append((b"access-control-allow-private-network", b"true"))
    headers.append(_vary(route))
    if policy.security_headers:
        headers += SECURITY_HEADERS
        headers.append(_h("cache-control", f"public, max-age={route.max_age}"))
    headers.append(PREFLIGHT_MARKER)
    return Response(204, tuple(headers), b"", ALLOWED)


def rejected(policy: Policy, route: RoutePolicy, violation: Violation) -> Response:
    payload: dict[str, Any] = {"error_type": violation.error_type, "message": violation.message}
    if policy.debug:
        payload["allowed"] = {
            "origins": route.origins.describe(),
            "methods": ["*"] if route.any_method else list(route.methods),
            "headers": [*(["*"] if route.any_header else []), *route.headers],
        }
    response = json_response(403, payload, (_vary(route), PREFLIGHT_MARKER), policy.security_headers, REJECTED)
    return dataclasses.replace(response, detail=", ".join(violation.refused)) if violation.refused else response


def invalid(policy: Policy, message: str) -> Response:
    payload = {"error_type": "invalid_preflight", "message": message}
    return json_response(400, payload, (PREFLIGHT_MARKER,), policy.security_headers, INVALID)


def render(policy: Policy, route: RoutePolicy, origin: str, decision: Decision) -> Response:
    """Turn a preflight decision into its finished response."""
    if isinstance(decision, Allowed):
        return allowed(policy, route, origin, decision)
    if isinstance(decision, Violation):
        return rejected(policy, route, decision)
    assert isinstance(decision, Invalid)
    return invalid(policy, decision.message)


def route_disabled(policy: Policy, route: RoutePolicy) -> Response:
    payload = {"error_type": "route_disabled", "message": f"CORS is disabled for route {route.name!r}"}
    return json_response(404, payload, (PREFLIGHT_MARKER,), policy.security_headers, DISABLED)


def not_preflight(policy: Policy, allow: str) -> Response:
    headers: ResponseHeaders = ((b"allow", allow.encode()), *(SECURITY_HEADERS if policy.security_headers else ()))
    return Response(204, headers, b"", NOT_PREFLIGHT)


def rate_limited(policy: Policy, retry_after: int) -> Response:
    payload = {
        "error_type": "rate_limited",
        "message": "Too many requests; retry later",
        "retry_after": retry_after,
    }
    extra: ResponseHeaders = (
        (b"retry-after", str(retry_after).encode()),
        (b"x-ratelimit-limit", str(policy.rate_limit.average).encode()),
        (b"x-ratelimit-remaining", b"0"),
        PREFLIGHT_MARKER,
    )
    return json_response(429, payload, extra, policy.security_headers, RATE_LIMITED)


# -- answers that are not about CORS: the internal endpoints, other methods, broken HTTP, errors --

HEALTH_OK = json_response(200, {"status": "ok"})
READY = json_response(200, {"status": "ready"})
NOT_READY = json_response(503, {"status": "not_ready"})
DRAINING = json_response(503, {"status": "draining"})


def http_method_not_allowed(allow: str) -> Response:
    """405 for a method the path does not take (distinct from the CORS refusal ``method_not_allowed``)."""
    payload = {"error_type": "http_method_not_allowed", "message": f"Use {allow}"}
    return json_response(405, payload, ((b"allow", allow.encode()),))


HEAD_TOO_LARGE = json_response(
    431,
    {"error_type": "request_header_fields_too_large",
     "message": f"Request head exceeds {MAX_HEADERS} headers or {MAX_HEAD_BYTES} bytes"},
)  # fmt: skip
MALFORMED_REQUEST = json_response(400, {"error_type": "invalid_request", "message": "Malformed HTTP request"})
REQUEST_TIMEOUT = json_response(408, {"error_type": "request_timeout", "message": "Request not received in time"})


def metrics_page(body: bytes, content_type: str) -> Response:
    headers = ((b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()), NO_STORE)
    return Response(200, headers, body)


_log = get_logger("cors_handler.pipeline")


def internal_error(exc: Exception, path: str) -> Response:
    """The 500 for an unexpected error: logged with an error_id the client also gets, never a traceback."""
    error_id = uuid.uuid4().hex
    _log.error("unhandled error", error_id=error_id, error=repr(exc), traceback=traceback.format_exc(),
               path=path[:LOG_PATH_CHARS])  # fmt: skip
    return json_response(500, {"error_type": "internal_error", "message": "Internal error", "error_id": error_id})


_CLOSE_LINE = b"connection: close\r\n"


def encode(response: Response, leading: bytes = b"", close: bool = False) -> bytes:
    """The whole response as HTTP/1.1 bytes: the one encoder for answers written straight to a transport.

    The bytes are those uvicorn writes for the same response through ASGI (its
    status lines, ``leading`` first: the server's Date line; ``connection: close``
    last), so the fast path and the ASGI path cannot differ by a byte.
    """
    return b"".join((
        response.status_line, leading, response.header_lines, _CLOSE_LINE if close else b"", b"\r\n", response.body,
    ))  # fmt: skip
