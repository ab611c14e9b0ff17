"""Parse a preflight's CORS request headers and decide: allowed, violation or invalid.

The decision is a pure function of (route, origin, method, request headers,
private-network flag) — exactly the response-cache key — so it runs once per
distinct key and its result is cached as finished bytes by ``responses``.

Order of checks follows what a browser needs to hear first: a malformed
request is refused before any policy question; then origin, method, headers
and the Private Network Access opt-in.

Two Fetch rules are decided here rather than configured: the CORS-safelisted
methods GET, HEAD and POST pass the method check whether listed or not (a
browser accepts them without Access-Control-Allow-Methods naming them; it
preflights them only for their headers, which are still checked), and ``*``
in allow_origins covers ``Origin: null`` (answered ``*``, which a browser
accepts for an opaque origin without credentials; ``*`` never comes with them).

``*`` in allow_methods and allow_headers is answered by echoing the request
(``serve.responses``), with or without credentials, as jub0bs/cors and the
Gateway API do: the one difference credentials make is ``authorization``,
which ``*`` covers only with them (see ``decide``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .headers import HeaderListError, is_token, parse_header_list
from .limits import MAX_METHOD_BYTES, MAX_ORIGIN_BYTES, MAX_REQUEST_HEADERS_BYTES
from .model import RoutePolicy
from .origins import NULL_ORIGIN, parse_request_origin

ANY_ORIGIN_RULE = "any origin (*)"  # as OriginMatcher names it

ORIGIN_NOT_ALLOWED = "origin_not_allowed"
METHOD_NOT_ALLOWED = "method_not_allowed"
HEADER_NOT_ALLOWED = "header_not_allowed"
PRIVATE_NETWORK_NOT_ALLOWED = "private_network_not_allowed"
# Fetch: a CORS-safelisted method (byte-exact) needs no Access-Control-Allow-Methods entry.
SAFELISTED_METHODS = frozenset({"GET", "HEAD", "POST"})
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
    refused: tuple[str, ...] = ()  # header_not_allowed: every refused request header, sorted


@dataclass(frozen=True, slots=True)
class Invalid:
    message: str


Decision = Allowed | Violation | Invalid

# The one refusal a random-origin flood gets, built once (a frozen dataclass costs Python calls to build).
_ORIGIN_REFUSED = Violation(ORIGIN_NOT_ALLOWED, "Origin is not allowed", None)


def check_sizes(origin: bytes, method: bytes, request_headers: bytes) -> Invalid | None:
    """The byte limits on the raw values, checked before the cache lookup: oversized input costs a length check."""
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
        parsed = parse_request_origin(origin)
        if parsed is None:
            return Invalid("Origin must be 'null' or a lower-case scheme://host[:port]")
    if not is_token(method):
        return Invalid("Access-Control-Request-Method must be a method token")
    try:
        requested = parse_header_list(request_headers)
    except HeaderListError as exc:
        return Invalid(f"Access-Control-Request-Headers {exc}")

    rule = ANY_ORIGIN_RULE if parsed is None and route.origins.allow_any else route.origins.match(origin, parsed)
    if rule is None:
        return _ORIGIN_REFUSED
    if not route.any_method and method not in route.method_set and method not in SAFELISTED_METHODS:
        return Violation(METHOD_NOT_ALLOWED, f"Method {method} is not allowed", rule)
    # Without credentials '*' means what Access-Control-Allow-Headers: * means to a browser: every header
    # but Authorization, which must be listed (Fetch). With credentials a browser reads '*' literally, so the
    # policy's '*' is its own "any header" (as in jub0bs/cors and the Gateway API): Authorization included.
    any_header, credentialed = route.any_header, route.allow_credentials
    refused = tuple(
        name
        for name in requested
        if name not in route.header_set and not (any_header and (credentialed or name != "authorization"))
    )
    if refused:
        names = ", ".join(refused)
        message = (
            f"Request header {names} is not allowed"
            if len(refused) == 1
            else f"Request headers {names} are not allowed"
        )
        return Violation(HEADER_NOT_ALLOWED, message, rule, refused)
    if private_network and not route.allow_private_network:
        return Violation(PRIVATE_NETWORK_NOT_ALLOWED, "Private network access is not allowed", rule)
    return Allowed(rule, method, requested, private_network)
