"""The candidate policy: the next policy, decided beside the live one on real traffic, never enforced.

A policy change is what breaks pages; the rejection alerts only see it after
the fact. A candidate is a second, complete policy file. Every distinct cache
key is decided under it once, when the live decision is computed, and the
pair of decisions is stored in the live cache entry as a counter cell: a
cache hit then costs one more integer increment, whatever the candidate says.
The live policy alone builds every response byte.

Routes: the cache key's route must tell apart every host and path the two
policies route differently (the candidate may add, remove or move a route), so
``PairedRoutes`` routes each request by both tables and gives each pair of
routes its own route object: the live route, or a twin of it (see there).

Labels are bounded: ``route`` is a live route name (configuration), ``live``
and ``candidate`` come from ``DECISIONS``. A newly seen disagreeing key gets
one throttled log line (route, origin, method, request headers, both
decisions); the memory of keys already logged is bounded by ``MAX_LOGGED_KEYS``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from prometheus_client.core import CounterMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from ..config.compile import build_policy
from ..cors.decide import (
    HEADER_NOT_ALLOWED,
    METHOD_NOT_ALLOWED,
    ORIGIN_NOT_ALLOWED,
    PRIVATE_NETWORK_NOT_ALLOWED,
    Allowed,
    Decision,
    Violation,
    decide,
)
from ..cors.limits import LOG_HEADERS_CHARS, LOG_METHOD_CHARS, LOG_ORIGIN_CHARS, MAX_LOGGED_KEYS
from ..cors.model import Policy, RoutePolicy, RouteTable
from .events import Throttle, get_logger
from .metrics import RELOAD_RESULTS
from .responses import ALLOWED, DISABLED, INVALID

# Label values of cors_candidate_decisions_total{live, candidate}. DISABLED only ever appears as
# the candidate's: the live policy's disabled routes answer 404 before any decision is made.
DECISIONS = (
    ALLOWED,
    ORIGIN_NOT_ALLOWED,
    METHOD_NOT_ALLOWED,
    HEADER_NOT_ALLOWED,
    PRIVATE_NETWORK_NOT_ALLOWED,
    INVALID,
    DISABLED,
)

Cell = list[int]  # one counter, shared by every cache entry with the same (route, live, candidate)


def load_candidate(path: str, overrides: Mapping[str, Any], data: bytes | None = None) -> Policy:
    """Compile the candidate from the same sources as the live policy, its file in place of the live one.

    Flags and ``CORS_*`` variables apply to both policies (they would still apply after
    the candidate file is promoted), so the candidate predicts the policy a promotion
    puts in force. Raises ConfigError listing every finding, like the live load.
    ``data``: the file's content when the caller has read it (the watcher).
    """
    return build_policy({**overrides, "policy_file": path}, data)


def decision_label(decision: Decision) -> str:
    if isinstance(decision, Allowed):
        return ALLOWED
    if isinstance(decision, Violation):
        return decision.error_type
    return INVALID


class PairedRoutes:
    """The live table and the candidate's at once: a request's route is the live route, or a twin of it.

    A request is routed by both tables; the pair (live route, candidate route)
    is what its cache key must tell apart, so each pair gets one route object:
    the live route itself for the first pair that names it, a *twin* (same rules
    and name, another identity, hence another cache key) for every other. The
    pairs that can occur are bounded by the two policies (each is the most
    specific entry of one of them for some host and path), not by the traffic.
    """

    __slots__ = ("_by_pair", "_candidate", "_live", "candidate_of", "default", "hosted")

    def __init__(self, live: RouteTable, candidate: RouteTable) -> None:
        self._live = live
        self._candidate = candidate
        self.hosted = live.hosted or candidate.hosted
        self._by_pair: dict[tuple[RoutePolicy, RoutePolicy], RoutePolicy] = {}
        self.candidate_of: dict[RoutePolicy, RoutePolicy] = {}
        # A live route's own pairing first: there it keeps its own object, twins go to the splits.
        self.default = self._pair(live.default, candidate.default)

    def _pair(self, live_route: RoutePolicy, candidate_route: RoutePolicy) -> RoutePolicy:
        found = self._by_pair.get((live_route, candidate_route))
        if found is None:
            used = live_route in self.candidate_of
            found = replace(live_route) if used else live_route
            self._by_pair[(live_route, candidate_route)] = found
            self.candidate_of[found] = candidate_route
        return found

    def route_for(self, path: str, host: str | None = None) -> RoutePolicy:
        return self._pair(self._live.route_for(path, host), self._candidate.route_for(path, host))

    def all_routes(self) -> tuple[RoutePolicy, ...]:
        """The live routes (a twin answers like its live route: same name, same rules)."""
        return self._live.all_routes()


class CandidateCounters:
    """cors_candidate_decisions_total as plain ints in shared cells, plus the candidate's reload counts."""

    def __init__(self) -> None:
        self.cells: dict[tuple[str, str, str], Cell] = {}
        self.reloads = dict.fromkeys(RELOAD_RESULTS, 0)

    def set_routes(self, routes: Iterable[str]) -> None:
        """Keep the counts of routes still configured; pre-create the series that matter most.

        (route, live=allowed, candidate=*) and (route, live=*, candidate=allowed) exist from the
        start at 0, so a rate over them (the alert, the dashboard) sees the very first
        disagreement either way; pairs of two refusals appear when first counted.
        """
        names = set(routes)
        kept = {key: cell for key, cell in self.cells.items() if key[0] in names}
        for route in names:
            for decision in DECISIONS:
                kept.setdefault((route, ALLOWED, decision), [0])
                if decision != DISABLED:  # the live policy's disabled routes are never decided
                    kept.setdefault((route, decision, ALLOWED), [0])
        self.cells = kept

    def cell(self, route: str, live: str, candidate: str) -> Cell:
        key = (route, live, candidate)
        found = self.cells.get(key)
        if found is None:
            found = self.cells[key] = [0]
        return found


class DisagreementLog:
    """One throttled line per newly seen key that the two policies decide differently."""

    def __init__(self, max_keys: int = MAX_LOGGED_KEYS, throttle: Throttle | None = None) -> None:
        self._log = get_logger("cors_handler.candidate")
        self._throttle = throttle or Throttle()
        self._max_keys = max_keys
        self._logged: dict[int, None] = {}  # hashes of keys already logged, oldest first

    def disagreement(
        self, routes: tuple[str, str], key: tuple[bytes, bytes, bytes, bool], live: str, candidate: str
    ) -> None:
        """``routes``: the (live, candidate) route names; ``key``: origin, method, request headers, PNA flag."""
        if not self._log.is_enabled_for(logging.INFO):
            return
        digest = hash((*routes, *key))
        if digest in self._logged:
            return
        suppressed = self._throttle.admit()
        if suppressed is None:
            return  # not remembered: the key may still be logged once the throttle opens
        self._logged[digest] = None
        if len(self._logged) > self._max_keys:
            del self._logged[next(iter(self._logged))]
        origin, method, headers, pna = key
        extra = {"suppressed": suppressed} if suppressed else {}
        self._log.info(
            "candidate policy decides differently",
            route=routes[0],
            candidate_route=routes[1],
            origin=origin[:LOG_ORIGIN_CHARS].decode("latin-1"),
            method=method[:LOG_METHOD_CHARS].decode("latin-1"),
            request_headers=headers[:LOG_HEADERS_CHARS].decode("latin-1"),
            private_network=pna,
            live=live,
            candidate=candidate,
            **extra,
        )

    def __len__(self) -> int:
        return len(self._logged)


class Shadow:
    """A candidate policy beside a live one: the merged route table and the per-key verdict."""

    def __init__(self, live: Policy, candidate: Policy, counters: CandidateCounters, log: DisagreementLog) -> None:
        self.live = live
        self.candidate = candidate
        self.routes = PairedRoutes(live.table, candidate.table)
        self.counters = counters
        self.log = log

    @property
    def version(self) -> str:
        return self.candidate.version

    def judge(
        self, route: RoutePolicy, origin: bytes, method: bytes, headers: bytes, pna: bool, live: Decision
    ) -> Cell:
        """Cache miss: decide the key under the candidate; the counter cell its requests increment.

        ``route`` is what ``routes.route_for`` gave for the request, ``live`` the live decision.
        """
        candidate_route = self.routes.candidate_of[route]
        if candidate_route.enabled:
            text = (origin.decode("latin-1"), method.decode("latin-1"), headers.decode("latin-1"))
            candidate = decision_label(decide(candidate_route, *text, pna))
        else:
            candidate = DISABLED
        live_label = decision_label(live)
        if candidate != live_label:
            self.log.disagreement(
                (route.name, candidate_route.name), (origin, method, headers, pna), live_label, candidate
            )
        return self.counters.cell(route.name, live_label, candidate)


class CandidateCollector(Collector):
    """The candidate's metric families; nothing at all when no candidate file is configured."""

    def __init__(self, counters: CandidateCounters, version: Callable[[], str | None]) -> None:
        self._counters = counters
        self._version = version

    def collect(self) -> Iterator[Metric]:
        version = self._version()
        if version is None:
            return
        decisions = CounterMetricFamily(
            "cors_candidate_decisions",
            "Preflights by the live policy's decision and the candidate policy's, per live route",
            labels=["route", "live", "candidate"],
        )
        for (route, live, candidate), cell in sorted(self._counters.cells.items()):
            decisions.add_metric([route, live, candidate], cell[0])
        yield decisions
        info = InfoMetricFamily(
            "cors_candidate", "The candidate policy evaluated beside the live one", labels=["version"]
        )
        info.add_metric([version], {})
        yield info
        reloads = CounterMetricFamily(
            "cors_candidate_reloads", "Candidate policy reloads, by result", labels=["result"]
        )
        for result, value in self._counters.reloads.items():
            reloads.add_metric([result], value)
        yield reloads


class CandidateSlot:
    """The candidate in force (or none) with its counters and log, shared by every Runtime of one app.

    The live policy and the candidate reload independently; each swap builds a new
    Runtime whose Shadow pairs the two policies then in force, with a fresh cache (the
    cached verdicts belong to the pair that decided them). Counters outlive reloads.
    """

    def __init__(self, path: str | None = None, policy: Policy | None = None) -> None:
        self.path = path
        self.policy = policy
        self.counters = CandidateCounters()
        self.log = DisagreementLog()

    def shadow(self, live: Policy) -> Shadow | None:
        if self.policy is None:
            return None
        self.counters.set_routes(route.name for route in live.all_routes())
        return Shadow(live, self.policy, self.counters, self.log)

    def install(self, policy: Policy) -> None:
        """A new candidate: its disagreements are news again."""
        self.policy = policy
        self.log = DisagreementLog()

    def version(self) -> str | None:
        return None if self.policy is None else self.policy.version

    def collector(self) -> CandidateCollector:
        return CandidateCollector(self.counters, self.version)
