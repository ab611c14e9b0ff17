"""The compiled policy the core decides on: immutable, built once per (re)load by ``config.compile``.

As jub0bs/cors compiles its ``Config`` into an ``internalConfig``, the
settings a user writes (``config.settings``) are compiled into these types:
origin lists into an ``OriginMatcher`` (``cors.origins``), method and header
lists into tuples and sets, routes into one ``RouteTable``. Nothing here reads
a file or knows a setting's name: a request is decided (``cors.decide``) on a
``RoutePolicy`` alone, and the service (``serve``) reads the rest of ``Policy``.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from .hosts import suffixes
from .limits import HOST_MEMO_SIZE
from .origins import OriginMatcher

PRODUCTION, STAGING, DEVELOPMENT = "production", "staging", "development"
DEFAULT_ROUTE = "default"


@dataclass(frozen=True, slots=True, eq=False)
class RoutePolicy:
    """The compiled CORS rules for one path prefix on some hosts (the top level is route ``default``).

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
    hosts: tuple[str, ...] = ()  # normalized host patterns (cors.hosts); empty: every host its source may serve
    exact_path: bool = False  # path_prefix is an exact path (a Gateway API ``Exact`` match)
    source: str = ""  # the route source (file in the routes directory) it came from; "" for the main policy
    method_set: frozenset[str] = field(init=False)
    header_set: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "method_set", _frozen(self.methods))
        object.__setattr__(self, "header_set", _frozen(self.headers))


@functools.lru_cache(maxsize=4096)
def _frozen(items: tuple[str, ...]) -> frozenset[str]:
    """One set per list of names: thousands of routes inheriting the same lists share their sets."""
    return frozenset(items)


class _Paths:
    """The routes of one host entry by path: exact paths, prefixes, and the root prefix ``/``.

    A lookup walks the path's own prefixes at segment boundaries, longest first,
    cut to the longest configured prefix's depth: dict lookups bounded by the
    policy, whatever the path or the number of routes.
    """

    __slots__ = ("depth", "exact", "prefixes", "root")

    def __init__(self) -> None:
        self.exact: dict[str, RoutePolicy] = {}
        self.prefixes: dict[str, RoutePolicy] = {}
        self.root: RoutePolicy | None = None
        self.depth = 0

    def add(self, path: str, exact: bool, route: RoutePolicy) -> None:
        """Enter ``route`` on ``path``, unless a route holds it already (the first one keeps it)."""
        if exact:
            self.exact.setdefault(path, route)
        elif path == "/":
            self.root = self.root or route
        else:
            self.prefixes.setdefault(path, route)
            self.depth = max(self.depth, path.count("/"))

    def find(self, path: str) -> RoutePolicy | None:
        if self.exact:
            route = self.exact.get(path)
            if route is not None:
                return route
        prefixes = self.prefixes
        if prefixes:
            end = -1
            for _ in range(self.depth + 1):
                end = path.find("/", end + 1)
                if end < 0:
                    break
            candidate = path if end < 0 else path[:end]
            while candidate:
                route = prefixes.get(candidate)
                if route is not None:
                    return route
                cut = candidate.rfind("/")
                if cut < 0:
                    break
                candidate = candidate[:cut]
        return self.root if path[:1] == "/" else None


class RouteTable:
    """Which route answers a (host, path): the contract's selection, at a cost independent of the routes.

    Among the routes whose hosts match: an exact host, then wildcards (longer
    suffix first), then host-agnostic routes; within one host entry an exact
    path, then the longest prefix covering the path on a segment boundary
    (``/api/v2`` covers ``/api/v2`` and ``/api/v2/x``, not ``/api/v20``); the first
    entry with a route covering the path answers, else ``default``. Each host
    entry is a dict lookup (a wildcard's per suffix of the Host, bounded by the
    longest configured suffix), each path lookup a walk over its segments.
    """

    __slots__ = ("_anywhere", "_by_host", "_exact_hosts", "_labels", "_routes", "_wildcards", "default", "hosted")

    def __init__(self, default: RoutePolicy, routes: Iterable[RoutePolicy] = ()) -> None:
        self.default = default
        self._exact_hosts: dict[str, _Paths] = {}
        self._wildcards: dict[str, _Paths] = {}
        self._labels = 0
        self._anywhere = _Paths()
        self._routes = tuple(routes)
        for route in self._routes:
            self._add(route)
        self.hosted = bool(self._exact_hosts or self._wildcards)  # False: no route names a host, the Host is moot
        # host -> its entries in the order they are asked (exact, then wildcards, longer suffix first): a memo,
        # at most HOST_MEMO_SIZE hosts (emptied when full: a flood of random hosts costs a lookup each, no memory)
        self._by_host: dict[str, tuple[_Paths, ...]] = {}

    def _add(self, route: RoutePolicy) -> None:
        """Enter ``route`` under each of its hosts; an entry already held keeps its route (config reports conflicts)."""
        for host in route.hosts or ("",):
            if not host:
                paths = self._anywhere
            elif host.startswith("*."):
                paths = self._wildcards.setdefault(host[2:], _Paths())
                self._labels = max(self._labels, host.count("."))
            else:
                paths = self._exact_hosts.setdefault(host, _Paths())
            paths.add(route.path_prefix, route.exact_path, route)

    def route_for(self, path: str, host: str | None = None) -> RoutePolicy:
        """The route answering ``path`` on ``host`` (normalized by ``cors.hosts.request_host``; None: no host)."""
        if host is not None and self.hosted:
            entries = self._by_host.get(host)
            if entries is None:
                entries = self._entries_for(host)
            for paths in entries:
                route = paths.find(path)
                if route is not None:
                    return route
        return self._anywhere.find(path) or self.default

    def _entries_for(self, host: str) -> tuple[_Paths, ...]:
        exact = self._exact_hosts.get(host)
        wildcards = self._wildcards
        entries = tuple(
            paths
            for paths in (exact, *(wildcards.get(suffix) for suffix in suffixes(host, self._labels)))
            if paths is not None
        )
        if len(self._by_host) >= HOST_MEMO_SIZE:
            self._by_host.clear()
        self._by_host[host] = entries
        return entries

    def all_routes(self) -> tuple[RoutePolicy, ...]:
        """Every route a request can be given, the default first, each once."""
        return tuple(dict.fromkeys((self.default, *self._routes)))


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
    # Each route source (file of the routes directory) and whether its current version is in force.
    source_valid: tuple[tuple[str, bool], ...] = ()

    @property
    def default(self) -> RoutePolicy:
        return self.table.default

    @property
    def routes(self) -> tuple[RoutePolicy, ...]:
        """The routes besides ``default``, in the order they were configured."""
        return self.table.all_routes()[1:]

    def route_for(self, path: str, host: str | None = None) -> RoutePolicy:
        return self.table.route_for(path, host)

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
