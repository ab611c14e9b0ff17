"""The compiled policy the core decides on: immutable, built once per (re)load by ``config.compile``.

As jub0bs/cors compiles its ``Config`` into an ``internalConfig``, the
settings a user writes (``config.settings``) are compiled into these types:
origin lists into an ``OriginMatcher`` (``cors.origins``), method and header
lists into tuples and sets, routes into one ``RouteTable``. Nothing here reads
a file or knows a setting's name: a request is decided (``cors.decide``) on a
``RoutePolicy`` alone, and the service (``serve``) reads the rest of ``Policy``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from .origins import OriginMatcher

PRODUCTION, STAGING, DEVELOPMENT = "production", "staging", "development"
DEFAULT_ROUTE = "default"


def covers(prefix: str, path: str) -> bool:
    """Prefix match on a path-segment boundary: /api/v2 covers /api/v2 and /api/v2/x, not /api/v20."""
    if not path.startswith(prefix):
        return False
    return len(path) == len(prefix) or prefix.endswith("/") or path[len(prefix)] == "/"


@dataclass(frozen=True, slots=True, eq=False)
class RoutePolicy:
    """The compiled CORS rules for one path prefix (the top level is route ``default``).

    Compared and hashed by identity: it is part of the response-cache key and
    each compiled policy has its own cache.
    """

    name: str
    path_prefix: str
    enabled: bool
    origins: OriginMatcher
    methods: tuple[str, ...]  # as configured, in order; empty when any_method
    any_method: bool
    headers: tuple[str, ...]  # lower-case, in order; listed even when any_header
    any_header: bool
    expose_headers: tuple[str, ...]
    allow_credentials: bool
    max_age: int
    allow_private_network: bool
    method_set: frozenset[str] = field(init=False)
    header_set: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "method_set", frozenset(self.methods))
        object.__setattr__(self, "header_set", frozenset(self.headers))


class RouteTable:
    """Which route answers a path: the longest prefix covering it, else the default route.

    The one route table: a policy's own (``Policy.table``), and the merged table
    of a live policy and a candidate (``serve.shadow``), whose entries are live
    routes or twins of them. Prefixes are ``(prefix, route)`` pairs, so one
    route object may stand under several prefixes.
    """

    __slots__ = ("_entries", "default")

    def __init__(self, default: RoutePolicy, entries: Iterable[tuple[str, RoutePolicy]] = ()) -> None:
        self.default = default
        self._entries = tuple(sorted(entries, key=lambda entry: len(entry[0]), reverse=True))

    def route_for(self, path: str) -> RoutePolicy:
        """The route with the longest prefix covering ``path``, else ``default``."""
        for prefix, route in self._entries:
            if covers(prefix, path):
                return route
        return self.default

    def all_routes(self) -> tuple[RoutePolicy, ...]:
        """Every route a request can be given, the default first, each once."""
        return tuple(dict.fromkeys((self.default, *(route for _, route in self._entries))))

    def prefixes(self) -> tuple[str, ...]:
        """The prefixes of the table, longest first."""
        return tuple(prefix for prefix, _ in self._entries)


@dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    enabled: bool
    average: int
    period: float
    burst: int
    depth: int
    excluded: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    max_clients: int


@dataclass(frozen=True, slots=True, eq=False)
class Policy:
    """Everything the service needs, compiled and immutable. Swapped whole on reload."""

    environment: str
    version: str
    table: RouteTable
    security_headers: bool
    debug: bool
    rate_limit: RateLimitPolicy
    cache_size: int
    log_level: str
    log_format: str
    shutdown_delay: float
    client_timeout: float
    keep_alive_timeout: float
    dev_cidrs: tuple[ipaddress.IPv4Network, ...]

    @property
    def default(self) -> RoutePolicy:
        return self.table.default

    @property
    def routes(self) -> tuple[RoutePolicy, ...]:
        """The routes besides ``default``, longest prefix first."""
        return self.table.all_routes()[1:]

    def route_for(self, path: str) -> RoutePolicy:
        return self.table.route_for(path)

    def all_routes(self) -> tuple[RoutePolicy, ...]:
        return self.table.all_routes()

    def mode_line(self) -> str:
        """The startup log's one-line summary, e.g. 'CORS mode: production (strict origins only)'."""
        if self.environment == PRODUCTION:
            return "CORS mode: production (strict origins only)"
        cidrs = ", ".join(str(n) for n in self.dev_cidrs) or "none"
        return (
            f"CORS mode: {self.environment} (configured origins plus localhost, "
            f"127.0.0.0/8, [::1] and private networks {cidrs})"
        )
