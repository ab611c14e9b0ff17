"""The candidate policy: the next policy, decided beside the live one on real traffic, never enforced.

A policy change is what breaks pages; the rejection alerts only see it after
the fact. A candidate is a second, complete policy file. Every distinct cache
key is decided under it once, when the live decision is computed, and the
pair of decisions is stored in the live cache entry as a counter cell: a
cache hit then costs one more integer increment, whatever the candidate says.
The live policy alone builds every response byte.

Paths: the cache key's route component must tell apart every path the two
policies route differently (the candidate may add, remove or move a prefix),
so ``RouteTable`` merges both route lists into one longest-prefix table of
``RoutePair`` (live route, candidate route); the key uses the pair.

Labels are bounded: ``route`` is a live route name (configuration), ``live``
and ``candidate`` come from ``DECISIONS``. A newly seen disagreeing key gets
one throttled log line (route, origin, method, request headers, both
decisions); the memory of keys already logged is bounded by ``MAX_LOGGED_KEYS``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from .logs import Throttle, get_logger
from .policy import Policy, RoutePolicy, compile_policy
from .preflight import (
    HEADER_NOT_ALLOWED,
    METHOD_NOT_ALLOWED,
    ORIGIN_NOT_ALLOWED,
    PRIVATE_NETWORK_NOT_ALLOWED,
    Allowed,
    Decision,
    Violation,
    decide,
)
from .responses import ALLOWED, INVALID, REJECTED, Response
from .settings import load_settings

# Label values of cors_candidate_decisions_total{live, candidate}. DISABLED only ever appears as
# the candidate's: the live policy's disabled routes answer 404 before any decision is made.
DISABLED = "disabled"
DECISIONS = (
    ALLOWED,
    ORIGIN_NOT_ALLOWED,
    METHOD_NOT_ALLOWED,
    HEADER_NOT_ALLOWED,
    PRIVATE_NETWORK_NOT_ALLOWED,
    INVALID,
    DISABLED,
)
RELOAD_RESULTS = ("success", "failure")
MAX_LOGGED_KEYS = 4096

Cell = list[int]  # one counter, shared by every cache entry with the same (route, live, candidate)


def load_candidate(path: str, overrides: Mapping[str, Any]) -> Policy:
    """Compile the candidate from the same sources as the live policy, its file in place of the live one.

    Flags and ``CORS_*`` variables apply to both policies (they would still apply after
    the candidate file is promoted), so the candidate predicts the policy a promotion
    puts in force. Raises SettingsError or PolicyError listing every error, like the live load.
    """
    return compile_policy(load_settings(**{**overrides, "policy_file": path}))


def decision_label(decision: Decision) -> str:
    if isinstance(decision, Allowed):
        return ALLOWED
    if isinstance(decision, Violation):
        return decision.error_type
    return INVALID


def response_label(response: Response) -> str:
    """The live decision as a label, read from the finished live response."""
    if response.result == ALLOWED:
        return ALLOWED
    if response.result == REJECTED:
        return response.reason
    return INVALID


@dataclass(frozen=True, slots=True, eq=False)
class RoutePair:
    """The live and the candidate route of a path; hashed by identity (part of the cache key)."""

    live: RoutePolicy
    candidate: RoutePolicy


class RouteTable:
    """Both policies' prefixes in one longest-prefix table, so one lookup finds both routes.

    Prefixes match on path-segment boundaries, so the prefixes covering a path are
    nested: the longest one of the union determines the longest one of each policy.
    """

    def __init__(self, live: Policy, candidate: Policy) -> None:
        pairs: dict[str, RoutePair] = {}
        probes: dict[str, RoutePolicy] = {}
        for route in (*live.routes, *candidate.routes):
            prefix = route.path_prefix
            if prefix not in pairs:
                pairs[prefix] = RoutePair(live.route_for(prefix), candidate.route_for(prefix))
                probes[prefix] = route
        ordered = sorted(pairs, key=len, reverse=True)
        self._entries = tuple((probes[prefix], pairs[prefix]) for prefix in ordered)
        self.default = RoutePair(live.default, candidate.default)
        self.pairs = (self.default, *(pair for _, pair in self._entries))

    def route_for(self, path: str) -> RoutePair:
        for probe, pair in self._entries:
            if probe.covers(path):
                return pair
        return self.default


class CandidateCounters:
    """cors_candidate_decisions_total as plain ints in shared cells, plus the candidate's reload counts."""

    def __init__(self) -> None:
        self.cells: dict[tuple[str, str, str], Cell] = {}
        self.reloads = dict.fromkeys(RELOAD_RESULTS, 0)

    def set_routes(self, routes: Iterable[str]) -> None:
        """Keep the counts of routes still configured; pre-create what the alert divides by.

        Every (route, live=allowed, candidate=*) series exists from the start, so a rate over
        them sees the first disagreement; the rest appear when first counted.
        """
        names = set(routes)
        kept = {key: cell for key, cell in self.cells.items() if key[0] in names}
        for route in names:
            for candidate in DECISIONS:
                kept.setdefault((route, ALLOWED, candidate), [0])
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

    def disagreement(self, pair: RoutePair, key: tuple[bytes, bytes, bytes, bool], live: str, candidate: str) -> None:
        if not self._log.is_enabled_for(logging.INFO):
            return
        digest = hash((pair.live.name, pair.candidate.name, *key))
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
            route=pair.live.name,
            candidate_route=pair.candidate.name,
            origin=origin[:128].decode("latin-1"),
            method=method[:32].decode("latin-1"),
            request_headers=headers[:256].decode("latin-1"),
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
        self.routes = RouteTable(live, candidate)
        self.counters = counters
        self.log = log

    @property
    def version(self) -> str:
        return self.candidate.version

    def judge(self, pair: RoutePair, origin: bytes, method: bytes, headers: bytes, pna: bool, live: Response) -> Cell:
        """Cache miss: the candidate's decision for this key, as the counter cell its requests increment."""
        route = pair.candidate
        if route.enabled:
            text = (origin.decode("latin-1"), method.decode("latin-1"), headers.decode("latin-1"))
            candidate = decision_label(decide(route, *text, pna))
        else:
            candidate = DISABLED
        live_label = response_label(live)
        if candidate != live_label:
            self.log.disagreement(pair, (origin, method, headers, pna), live_label, candidate)
        return self.counters.cell(pair.live.name, live_label, candidate)


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
