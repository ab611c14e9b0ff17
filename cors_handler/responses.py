"""Finished responses and the bounded response cache.

A Response is built once and never changed: its headers are a tuple of
(bytes, bytes) tuples, so nothing downstream can append to a shared header
list (a bug class other CORS libraries have shipped). The cache maps the
preflight key to such a Response; a hit costs two C-level dict operations,
and a flood of one-off keys cannot evict real traffic (see ResponseCache).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from .policy import Policy, RoutePolicy
from .preflight import Allowed, Decision, Invalid, Violation

Headers = tuple[tuple[bytes, bytes], ...]

# metrics ``result`` label values
ALLOWED = "allowed"
REJECTED = "rejected"
INVALID = "invalid"
NOT_PREFLIGHT = "not_preflight"
RATE_LIMITED = "rate_limited"
DISABLED = "disabled"
RESULTS = (ALLOWED, REJECTED, INVALID, NOT_PREFLIGHT, RATE_LIMITED, DISABLED)

PREFLIGHT_MARKER = (b"x-cors-preflight", b"enhanced-handler")
SECURITY_HEADERS: Headers = (
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
    headers: Headers
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
    extra: Headers = (),
    security: bool = True,
    result: str = "",
) -> Response:
    # orjson's bytes keep its whole output buffer (4 KiB here); a cached 403 must cost its size only.
    body = bytes(memoryview(orjson.dumps(payload)))
    headers: Headers = (
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
    """The 204 answer; header values exactly as ../shared/design.md's Responses table says."""
    any_origin = route.origins.allow_any and not route.allow_credentials
    headers = [_h("access-control-allow-origin", "*" if any_origin else origin)]
    methods = decision.method if route.any_method else ", ".join(route.methods)
    headers.append(_h("access-control-allow-methods", methods))
    # With '*', echo what was asked for (the list is then the request's, not the policy's).
    allowed_headers = ", ".join(decision.request_headers if route.any_header else route.headers)
    if allowed_headers:
        headers.append(_h("access-control-allow-headers", allowed_headers))
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
    headers: Headers = ((b"allow", allow.encode()), *(SECURITY_HEADERS if policy.security_headers else ()))
    return Response(204, headers, b"", NOT_PREFLIGHT)


def rate_limited(policy: Policy, retry_after: int) -> Response:
    payload = {
        "error_type": "rate_limited",
        "message": "Too many requests; retry later",
        "retry_after": retry_after,
    }
    extra: Headers = (
        (b"retry-after", str(retry_after).encode()),
        (b"x-ratelimit-limit", str(policy.rate_limit.average).encode()),
        (b"x-ratelimit-remaining", b"0"),
        PREFLIGHT_MARKER,
    )
    return json_response(429, payload, extra, policy.security_headers, RATE_LIMITED)


# A key is (route, origin, method, request headers, private-network flag), the
# header values as received. Only keys up to this many bytes are cached, so
# the cache's memory is bounded by cache_size times a small constant whatever
# the traffic; a longer (rare, often hostile) request is answered uncached.
MAX_CACHED_KEY_BYTES = 1024

Key = tuple[RoutePolicy, bytes, bytes, bytes, bool]

# The admission filter's size and memory, per cache entry (see ResponseCache).
SEEN_BITS_PER_ENTRY = 256
SEEN_GENERATION = 16


class SeenFilter:
    """The admission test of a bounded table: was this digest seen recently (a two-bit Bloom filter)?

    ``SEEN_BITS_PER_ENTRY * maxsize`` bits per generation, a generation lasting
    ``SEEN_GENERATION * maxsize`` new digests (64 bytes per table entry in all).
    """

    def __init__(self, maxsize: int) -> None:
        bits = SEEN_BITS_PER_ENTRY * maxsize
        self._bits = bits
        self._seen = bytearray(bits // 8)
        self._seen_before = bytearray(bits // 8)
        self._generation = SEEN_GENERATION * maxsize
        self._seen_count = 0

    def seen_twice(self, digest: int) -> bool:
        """Whether this key's digest was seen recently; marks it seen if not."""
        low, high = digest % self._bits, (digest >> 32) % self._bits
        low_byte, low_bit, high_byte, high_bit = low >> 3, 1 << (low & 7), high >> 3, 1 << (high & 7)
        seen, before = self._seen, self._seen_before
        if (seen[low_byte] & low_bit and seen[high_byte] & high_bit) or (
            before[low_byte] & low_bit and before[high_byte] & high_bit
        ):
            return True
        seen[low_byte] |= low_bit
        seen[high_byte] |= high_bit
        self._seen_count += 1
        if self._seen_count >= self._generation:
            self._seen_before, self._seen, self._seen_count = seen, bytearray(len(seen)), 0
        return False


class ResponseCache:
    """Bounded LRU of finished preflight responses, one per compiled policy.

    Keys use the raw header values: a lookup needs no parsing at all, and
    every spelling of a request maps to the response its normalized form gets,
    because ``compute`` normalizes. Replacing the policy replaces the cache.
    ``cached`` only looks; ``get`` computes and stores on a miss. An
    OrderedDict (C-implemented) keeps the lookup and the eviction O(1).

    Admission: while the cache has room, a miss is stored; once it is full, a
    key must miss twice to evict another one. A flood of one-off keys (random
    refused origins, random subdomains under an allowed wildcard, random
    spellings of the request headers) is never seen twice, so it passes
    without evicting anything, while a key that recurs is cached from its
    second request on. "Seen once" is a two-bit Bloom filter of
    ``SEEN_BITS_PER_ENTRY * maxsize`` bits in two generations of
    ``SEEN_GENERATION * maxsize`` keys each (64 bytes per cache entry in
    all): 1.4 to 2.8 % of one-off keys look seen and are stored, and a key
    must recur within 16 to 32 times ``maxsize`` misses to be admitted.
    Misses pay a hash and four bit tests; hits pay nothing for it.
    """

    def __init__(self, maxsize: int, compute: Callable[[RoutePolicy, bytes, bytes, bytes, bool], Response]):
        self.maxsize = maxsize
        self._compute = compute
        self._entries: OrderedDict[Key, Response] = OrderedDict()
        self._hits = 0
        self._misses = 0
        self._admission = SeenFilter(maxsize)

    def cached(self, route: RoutePolicy, origin: bytes, method: bytes, headers: bytes, pna: bool) -> Response | None:
        """The cached response for this key (marked most recently used), or None."""
        key = (route, origin, method, headers, pna)
        response = self._entries.get(key)
        if response is not None:
            self._entries.move_to_end(key)
            self._hits += 1
        return response

    def get(self, route: RoutePolicy, origin: bytes, method: bytes, headers: bytes, pna: bool) -> Response:
        """The response for this key: cached (a hit), else computed and maybe stored."""
        return self.lookup((route, origin, method, headers, pna))

    def lookup(self, key: Key) -> Response:
        """``get`` for a key tuple built in advance (the pipeline's): the hit inlined, it is the hot path."""
        entries = self._entries
        response = entries.get(key)
        if response is not None:
            entries.move_to_end(key)
            self._hits += 1
            return response
        self._misses += 1
        route, origin, method, headers, pna = key
        response = self._compute(route, origin, method, headers, pna)
        if len(origin) + len(method) + len(headers) > MAX_CACHED_KEY_BYTES:
            return response  # never stored: the cache's memory stays bounded whatever the values
        if len(entries) < self.maxsize:
            entries[key] = response
        elif self._admission.seen_twice(hash(key)):
            entries[key] = response
            entries.popitem(last=False)
        return response

    def __contains__(self, key: Key) -> bool:
        """Whether ``key`` is cached now (without touching its recency or the counters)."""
        return key in self._entries

    def stats(self) -> tuple[int, int, int]:
        """(hits, misses, entries); an uncached oversize request counts as a miss."""
        return self._hits, self._misses, len(self._entries)


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
