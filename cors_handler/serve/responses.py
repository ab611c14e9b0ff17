"""Every response the service sends, and the one wire encoder.

A Response is built once and never changed: its headers are a tuple of
(bytes, bytes) tuples, so nothing downstream can append to a shared header
list (a bug class other CORS libraries have shipped). Every body is built
here, from the preflight answers (the README's answers table) to the
protocol's 400/408/431 and the internal 500, so an error_type means one thing
everywhere. ``encode`` turns a Response into the bytes uvicorn writes for it
through ASGI, so the fast path and the ASGI path cannot differ by a byte.

A Response holds its header lines as wire bytes, in pieces (``lines``): the
encoder joins them, and ``headers`` reads the fields back from them. Cached
allowed answers are the many responses: every distinct key real traffic asks
for under a wildcard is one. Their pieces are the route's fixed text, built
once per compiled policy (``AllowedAnswers``) and shared by every answer of
that route, around the only bytes an answer owns: the origin echoed (the
cache key's own bytes, not a copy), an echoed method or header list. So a
cached allowed answer costs a small object and a short tuple beside its key,
not its own copy of some 500 bytes of header text (issue 27).
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


# A response's header fields as built: a value that is an int stands for the answer's own piece, ``lines[value]``.
HeaderForm = tuple[tuple[bytes, bytes | int], ...]


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    fields: HeaderForm  # shared by every answer of one form (for an allowed answer: its route's)
    body: bytes = b""
    result: str = ""  # metrics result label (preflight responses only)
    reason: str = ""  # rejection reason or error_type, for metrics and logs
    detail: str = field(default="", compare=False)  # for the rejection log: the refused request headers
    # With a candidate policy: the cors_candidate_decisions_total cell each answer with this response counts.
    tally: list[int] | None = field(default=None, compare=False, repr=False)
    # The header lines as uvicorn writes them ("name: value\r\n" each), in the pieces ``encode`` joins; built from
    # ``fields`` when not given (an allowed answer gives them: its route's fixed text around its own values).
    lines: tuple[bytes, ...] = field(default=(), compare=False, repr=False)
    status_line: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status_line", STATUS_LINE[self.status])
        if not self.lines:
            object.__setattr__(self, "lines", (b"".join([b"%s: %s\r\n" % pair for pair in self.fields]),))

    @property
    def headers(self) -> ResponseHeaders:
        """The header fields with their values (what the ASGI app hands uvicorn, what explain shows)."""
        lines = self.lines
        if len(lines) == 1:  # no value of its own
            return self.fields  # type: ignore[return-value]
        return tuple([(name, value if value.__class__ is bytes else lines[value])  # type: ignore[index]
                      for name, value in self.fields])  # fmt: skip


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


# The values an allowed answer owns, in the order of its header fields: each a slot in its route's fixed text.
ORIGIN_SLOT, METHOD_SLOT, HEADERS_SLOT = range(3)
_Value = bytes | int  # a fixed value, or one of the slots


def _allowed_fields(policy: Policy, route: RoutePolicy, private_network: bool, echoes_headers: bool
                    ) -> list[tuple[bytes, _Value]]:  # fmt: skip
    """The header fields of an allowed answer (the README's answers table), each value fixed or a slot."""
    any_origin = route.origins.allow_any and not route.allow_credentials
    fields: list[tuple[bytes, _Value]] = [(b"access-control-allow-origin", b"*" if any_origin else ORIGIN_SLOT)]
    methods = METHOD_SLOT if route.any_method else ", ".join(route.methods).encode("latin-1")
    fields.append((b"access-control-allow-methods", methods))
    # With '*', echo what was asked for (the list is then the request's, not the policy's).
    if route.any_header:
        if echoes_headers:
            fields.append((b"access-control-allow-headers", HEADERS_SLOT))
    elif route.headers:
        fields.append((b"access-control-allow-headers", ", ".join(route.headers).encode("latin-1")))
    # Harmless on a preflight (browsers read it on actual responses); the Gateway API's conformance cases expect it.
    if route.expose_headers:
        fields.append((b"access-control-expose-headers", ", ".join(route.expose_headers).encode("latin-1")))
    fields.append((b"access-control-max-age", str(route.max_age).encode()))
    if route.allow_credentials:
        fields.append((b"access-control-allow-credentials", b"true"))
    if private_network:
        fields.append((b"access-control-allow-private-network", b"true"))
    fields.append(_vary(route))
    if policy.security_headers:
        fields += SECURITY_HEADERS
        fields.append((b"cache-control", b"public, max-age=%d" % route.max_age))
    fields.append(PREFLIGHT_MARKER)
    return fields


class _AllowedTemplate:
    """One route's allowed answers (for one private-network flag and echo shape): fixed text around slots.

    ``texts`` are the wire bytes between the slots (one more than ``slots``),
    shared by every answer built here; an answer without slots is one shared
    Response.
    """

    __slots__ = ("fields", "shared", "slots", "texts")

    def __init__(self, fields: list[tuple[bytes, _Value]]) -> None:
        texts, slots, text = [], [], b""
        form: list[tuple[bytes, bytes | int]] = []
        for name, value in fields:
            if isinstance(value, bytes):
                text += b"%s: %s\r\n" % (name, value)
                form.append((name, value))
            else:
                texts.append(text + name + b": ")
                slots.append(value)
                form.append((name, 2 * len(slots) - 1))  # the answer's piece between the texts around it
                text = b"\r\n"
        texts.append(text)
        self.texts: tuple[bytes, ...] = tuple(texts)
        self.slots: tuple[int, ...] = tuple(slots)
        self.fields: HeaderForm = tuple(form)
        self.shared = None if slots else Response(204, self.fields, b"", ALLOWED)

    def answer(self, values: tuple[bytes, bytes, bytes]) -> Response:
        if self.shared is not None:
            return self.shared
        texts = self.texts
        pieces = [texts[0]]
        for i, slot in enumerate(self.slots, 1):
            pieces += (values[slot], texts[i])
        return Response(204, self.fields, b"", ALLOWED, lines=tuple(pieces))


class AllowedAnswers:
    """The allowed answers of one compiled policy: each route's fixed text built once, shared by its answers.

    The Runtime keeps one beside its cache, so the templates live exactly as
    long as the policy they were built from.
    """

    __slots__ = ("_by_text", "_templates", "policy")

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._templates: dict[tuple[RoutePolicy, bool, bool], _AllowedTemplate] = {}
        # routes with the same fixed text (a thousand team routes inheriting the top level) share one template
        self._by_text: dict[tuple[tuple[bytes, _Value], ...], _AllowedTemplate] = {}

    def answer(self, route: RoutePolicy, origin: bytes, method: bytes, decision: Allowed) -> Response:
        """The 204 answer; ``origin`` and ``method`` are the raw values decided on (echoed as received)."""
        echoed = ", ".join(decision.request_headers).encode("latin-1") if route.any_header else b""
        shape = (route, decision.private_network, bool(echoed))
        template = self._templates.get(shape)
        if template is None:
            fields = _allowed_fields(self.policy, route, decision.private_network, bool(echoed))
            template = self._by_text.get(tuple(fields))
            if template is None:
                template = self._by_text[tuple(fields)] = _AllowedTemplate(fields)
            self._templates[shape] = template
        return template.answer((origin, method, echoed))


def allowed(policy: Policy, route: RoutePolicy, origin: str, decision: Allowed) -> Response:
    """The 204 answer of an allowed preflight, on its own (the pipeline builds it with its ``AllowedAnswers``)."""
    return AllowedAnswers(policy).answer(route, origin.encode("latin-1"), decision.method.encode("latin-1"), decision)


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


def render(
    policy: Policy, route: RoutePolicy, origin: bytes, method: bytes, decision: Decision, answers: AllowedAnswers
) -> Response:
    """Turn a preflight decision on raw ``origin`` and ``method`` into its finished response."""
    if isinstance(decision, Allowed):
        return answers.answer(route, origin, method, decision)
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
        response.status_line, leading, *response.lines, _CLOSE_LINE if close else b"", b"\r\n", response.body,
    ))  # fmt: skip
