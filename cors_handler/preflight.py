"""Parse a preflight's CORS request headers and decide: allowed, violation or invalid.

The decision is a pure function of (route, origin, method, request headers,
private-network flag) — exactly the response-cache key — so it runs once per
distinct key and its result is cached as finished bytes by ``responses``.

Order of checks follows what a browser needs to hear first: a malformed
request is refused before any policy question; then origin, method, headers
and the Private Network Access opt-in.
"""

from __future__ import annotations

from dataclasses import dataclass

from .headers import HeaderListError, is_token, parse_header_list
from .origins import NULL_ORIGIN, parse_origin
from .policy import RoutePolicy

# Size limits on the raw header values. The caller enforces them before the
# cache lookup, so oversized input costs a length check, never a parse.
MAX_ORIGIN_BYTES = 512
MAX_METHOD_BYTES = 64
MAX_REQUEST_HEADERS_BYTES = 4096

ORIGIN_NOT_ALLOWED = "origin_not_allowed"
METHOD_NOT_ALLOWED = "method_not_allowed"
HEADER_NOT_ALLOWED = "header_not_allowed"
PRIVATE_NETWORK_NOT_ALLOWED = "private_network_not_allowed"
REJECTION_REASONS = (
    ORIGIN_NOT_ALLOWED,
    METHOD_NOT_ALLOWED,
    HEADER_NOT_ALLOWED,
    PRIVATE_NETWORK_NOT_ALLOWED,
)


@dataclass(frozen=True, slots=True)
class Allowed:
    rule: str
    method: str
    request_headers: tuple[str, ...]
    private_network: bool


@dataclass(frozen=True, slots=True)
class Violation:
    error_type: str
    message: str
    rule: str | None  # the origin rule that matched, when the origin was fine


@dataclass(frozen=True, slots=True)
class Invalid:
    message: str


Decision = Allowed | Violation | Invalid


def check_sizes(origin: bytes, method: bytes, request_headers: bytes) -> Invalid | None:
    """The byte limits, checked before anything else touches the values."""
    if len(origin) > MAX_ORIGIN_BYTES:
        return Invalid(f"Origin is longer than {MAX_ORIGIN_BYTES} bytes")
    if len(method) > MAX_METHOD_BYTES:
        return Invalid(f"Access-Control-Request-Method is longer than {MAX_METHOD_BYTES} bytes")
    if len(request_headers) > MAX_REQUEST_HEADERS_BYTES:
        return Invalid(f"Access-Control-Request-Headers is longer than {MAX_REQUEST_HEADERS_BYTES} bytes")
    return None


def decide(route: RoutePolicy, origin: str, method: str, request_headers: str, private_network: bool) -> Decision:
    """Decide one preflight against ``route``. Values are the raw header values (latin-1)."""
    parsed = None
    if origin != NULL_ORIGIN:
        parsed = parse_origin(origin)
        if parsed is None:
            return Invalid("Origin must be 'null' or scheme://host[:port]")
    if not is_token(method):
        return Invalid("Access-Control-Request-Method must be a method token")
    try:
        requested = parse_header_list(request_headers)
    except HeaderListError as exc:
        return Invalid(f"Access-Control-Request-Headers {exc}")

    rule = route.origins.match(origin, parsed)
    if rule is None:
        return Violation(ORIGIN_NOT_ALLOWED, "Origin is not allowed", None)
    if not route.any_method and method not in route.method_set:
        return Violation(METHOD_NOT_ALLOWED, f"Method {method} is not allowed", rule)
    for name in requested:
        if name in route.header_set:
            continue
        # A '*' never covers Authorization (Fetch standard): it must be listed.
        if route.any_header and name != "authorization":
            continue
        return Violation(HEADER_NOT_ALLOWED, f"Request header {name} is not allowed", rule)
    if private_network and not route.allow_private_network:
        return Violation(PRIVATE_NETWORK_NOT_ALLOWED, "Private network access is not allowed", rule)
    return Allowed(rule, method, requested, private_network)
