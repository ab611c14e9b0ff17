"""The one request pipeline: every OPTIONS request, from either entry point, is answered here.

Both entry points hand over a request and write the Response they get back:
the protocol fast path (``http.fastpath``) while parsing, through
``Pipeline.answer_head`` (a whole head in one read) or ``Pipeline.answer``
(a parsed head); the ASGI app (``http.app``) through ``Pipeline.answer``.
The steps, in this order and nowhere else:

1. classify (``Runtime.prepare``): the preflight headers in one pass
   (``read_preflight_headers``, the headers of ``PIPELINE_HEADERS``), then the
   route for the Host and the path (``cors.model.RouteTable``);
2. rate-limit: the client's token is taken before anything else is consulted
   (a 429 is not a cache hit and leaves the cache untouched);
3. the fixed answers: not a preflight (204 + Allow), duplicate headers or
   oversized values (400), a disabled route (404);
4. the cache (``serve.cache``); on a miss the policy decides once for that key
   (``cors.decide``), ``serve.responses`` builds the finished response, and it
   is offered to the cache. With a candidate policy (``serve.shadow``) the miss
   also decides the key under the candidate, the response carries the counter
   cell of the two decisions, and every answer from the cache counts it.

A Runtime holds one compiled policy and everything derived from it; a reload
swaps the Pipeline's reference, so a request finishes on the policy it
started with. ``preview`` runs the same steps for ``explain`` and ``verify``.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from dataclasses import replace
from typing import NamedTuple

import httptools

from ..cors.decide import ORIGIN_NOT_ALLOWED, Decision, Violation, check_sizes, decide
from ..cors.hosts import request_host
from ..cors.limits import HEAD_MEMO_SIZE, HOST_MEMO_SIZE
from ..cors.model import PRODUCTION, Policy, RoutePolicy, RouteTable
from .cache import HeadMemo, Key, ResponseCache
from .events import EventLog
from .metrics import Metrics, Snapshot
from .ratelimit import ClientIdentifier, ClientKey, RateLimiter, describe_client, retry_after_seconds
from .responses import (
    REJECTED,
    AllowedAnswers,
    Response,
    internal_error,
    invalid,
    not_preflight,
    rate_limited,
    render,
    route_disabled,
)
from .shadow import CandidateSlot, PairedRoutes

# A request's headers as both entry points give them: lower-cased names, raw values.
RequestHeaders = list[tuple[bytes, bytes]]

# The request headers the pipeline reads: the one table, for ``read_preflight_headers`` and the fast path's
# head reader (``http.head``), which hands over only these.
ORIGIN = b"origin"
REQUEST_METHOD = b"access-control-request-method"
REQUEST_HEADERS = b"access-control-request-headers"
REQUEST_PRIVATE_NETWORK = b"access-control-request-private-network"
FORWARDED_FOR = b"x-forwarded-for"
HOST = b"host"
PIPELINE_HEADERS = (ORIGIN, REQUEST_METHOD, REQUEST_HEADERS, REQUEST_PRIVATE_NETWORK, FORWARDED_FOR, HOST)

INTERNAL_PATHS = ("/health", "/ready", "/metrics")


def route_path(target: bytes) -> str:
    """The path a request target is routed by: its path component, percent-decoded; query and fragment dropped.

    The one function for every entry point: the fast path (``http.fastpath``), and
    ``explain --path`` and ``verify --path`` through ``preview``. It is what uvicorn
    puts in the ASGI scope's ``path``, from which the ASGI app routes (httptools'
    URL parser, then ``urllib.parse.unquote``: ``/%61dmin/x?y#z`` is ``/admin/x``;
    an absolute-form target's path), so both server modes route alike
    (tests/e2e/test_route_path.py checks all three against the running service).
    Raises ValueError for what is not a request target (no path, or bytes the
    parser refuses: spaces, controls, anything not ASCII).
    """
    try:
        raw = httptools.parse_url(target).path
    except httptools.HttpParserInvalidURLError:
        raw = None
    if raw is None:
        raise ValueError(f"{target!r} is not a request target with a path")
    return percent_decoded(raw)


def percent_decoded(raw_path: bytes) -> str:
    """``route_path``'s last step, for a path component already split from its query (the fast path's head reader)."""
    path = raw_path.decode("ascii")
    return urllib.parse.unquote(path) if "%" in path else path


class Prepared(NamedTuple):
    """What a request's head decides before the limiter: the same for every request with the same head.

    ``fixed`` is the answer when it does not come from the cache (not a
    preflight, duplicate headers, a disabled route, oversized values), else
    ``key`` is the cache key. ``client`` is the bucket key when X-Forwarded-For
    decides it (``by_forwarded``); otherwise the TCP peer does, per request.
    """

    path: str
    route: RoutePolicy
    fixed: Response | None
    key: Key | None
    by_forwarded: bool
    client: ClientKey | None
    located: tuple[int, int] | None  # the forwarded client's place in the limiter (RateLimiter.locate)


_new_prepared = tuple.__new__  # NamedTuple's own __new__ is Python code, run once per cache miss


class Runtime:
    """One compiled policy with everything derived from it: cache, limiter, fixed responses.

    Immutable once built; a reload builds a new Runtime and swaps one
    reference, so no response ever mixes two policies.
    """

    def __init__(
        self, policy: Policy, limiter: RateLimiter | None = None, candidate: CandidateSlot | None = None
    ) -> None:
        self.policy = policy
        self.candidate = candidate
        # With a candidate, routes come from the table merging both policies (live routes, or twins of them).
        self.shadow = candidate.shadow(policy) if candidate is not None else None
        self.routes: RouteTable | PairedRoutes = policy.table if self.shadow is None else self.shadow.routes
        self.cache = ResponseCache(policy.cache_size)
        self.answers = AllowedAnswers(policy)  # each route's fixed text, shared by its cached allowed answers
        rl = policy.rate_limit
        self.limiter: RateLimiter | None = None
        if rl.enabled:
            self.limiter = limiter or RateLimiter(rl.average, rl.period, rl.burst, rl.max_clients)
        self.clients = ClientIdentifier(rl.depth, rl.excluded)
        # By name: a candidate's twin of a disabled route answers as the route does.
        self.disabled = {r.name: route_disabled(policy, r) for r in policy.all_routes() if not r.enabled}
        self.not_preflight = not_preflight(policy, "OPTIONS")
        self.not_preflight_internal = not_preflight(policy, "GET, HEAD, OPTIONS")
        self.duplicate_header = invalid(policy, "Origin and Access-Control-Request-Method must each appear once")
        self.events = EventLog(policy.environment == PRODUCTION)
        self._origin_refusals: dict[tuple[RoutePolicy | bool, int], Response] = {}
        self.heads: HeadMemo[Prepared] = HeadMemo(min(policy.cache_size, HEAD_MEMO_SIZE))
        self._hosts: dict[bytes, str | None] = {}  # Host header -> the host it names (``_host``)
        self.decide = decide  # the one decision; ``preview`` wraps it to show explain what was decided

    def successor(self, policy: Policy) -> Runtime:
        """A Runtime for ``policy`` that keeps the buckets when the limits are unchanged."""
        same_limits = self.limiter is not None and policy.rate_limit == self.policy.rate_limit
        return Runtime(policy, self.limiter if same_limits else None, self.candidate)

    def answer(self, path: str, headers: RequestHeaders, peer: str | None) -> tuple[RoutePolicy, Response]:
        """The pipeline's steps for one OPTIONS request (see the module docstring)."""
        return self.answer_prepared(self.prepare(path, headers), peer)

    def prepare(self, path: str, headers: RequestHeaders) -> Prepared:
        """Step 1 and what steps 3 and 4 need: everything the head alone decides (nothing is counted yet)."""
        origin, method, joined, pna, forwarded, host, duplicate = read_preflight_headers(headers)
        routes = self.routes
        route = (
            routes.route_for(path, self._host(host)) if routes.hosted and host is not None else routes.route_for(path)
        )
        by_forwarded, client = self.clients.forwarded_key(forwarded)
        fixed: Response | None = None
        key: Key | None = None
        if origin is None or method is None:
            fixed = self.not_preflight_internal if path in INTERNAL_PATHS else self.not_preflight
        elif duplicate:
            fixed = self.duplicate_header
        elif not route.enabled:
            fixed = self.disabled[route.name]
        else:
            too_large = check_sizes(origin, method, joined)
            if too_large is not None:
                fixed = invalid(self.policy, too_large.message)
            else:
                key = (route, origin, method, joined, pna)
        limiter = self.limiter
        located = limiter.locate(client) if limiter is not None and by_forwarded and client is not None else None
        return _new_prepared(Prepared, (path, route, fixed, key, by_forwarded, client, located))

    def _host(self, raw: bytes) -> str | None:
        """``request_host`` of a Host header, remembered (at most HOST_MEMO_SIZE values, emptied when full)."""
        memo = self._hosts
        if raw in memo:
            return memo[raw]
        if len(memo) >= HOST_MEMO_SIZE:
            memo.clear()
        host = memo[raw] = request_host(raw)
        return host

    def answer_prepared(self, prepared: Prepared, peer: str | None) -> tuple[RoutePolicy, Response]:
        """Steps 2 to 4 for a prepared head: the limiter, then the fixed answer or the cache."""
        _, route, fixed, key, by_forwarded, client, located = prepared
        limiter = self.limiter
        if limiter is not None:
            if not by_forwarded:
                client = self.clients.peer_key(peer)
                located = None if client is None else limiter.locate(client)
            if located is not None:
                wait = limiter.hit_located(*located)
                if wait:
                    assert client is not None  # located is None without a client
                    self.events.rate_limited(route.name, client, describe_client)
                    return route, rate_limited(self.policy, retry_after_seconds(wait))
        if fixed is not None:
            return route, fixed
        assert key is not None
        response = self.cache.get(key)
        if response is None:
            response = self.compute(*key)
            self.cache.store(key, response)
        tally = response.tally
        if tally is not None:
            tally[0] += 1
        if response.result == REJECTED:
            self.events.rejected(route.name, response.reason, key[1], key[2], response.detail)
        return route, response

    def remember(self, head: bytes, prepared: Prepared) -> None:
        """Offer a raw head to the memo: only one whose answer is cached (or fixed) is worth remembering."""
        key = prepared.key
        if key is None or key in self.cache:
            self.heads.offer(head, prepared)

    def compute(self, route: RoutePolicy, origin: bytes, method: bytes, headers: bytes, pna: bool) -> Response:
        """Cache miss: decide once for this key and build the finished response.

        A refused origin gets the same response whatever the origin and route (but its
        Vary, and in debug), so every cache entry of a random-origin flood shares one
        Response (per candidate verdict). With a candidate, the key is decided under it here too, and the
        response carries the counter cell of the pair of decisions.
        """
        text_origin = origin.decode("latin-1")
        decision = self.decide(route, text_origin, method.decode("latin-1"), headers.decode("latin-1"), pna)
        tally = None if self.shadow is None else self.shadow.judge(route, origin, method, headers, pna, decision)
        if isinstance(decision, Violation) and decision.error_type == ORIGIN_NOT_ALLOWED:
            # the same bytes for every route but in debug (which names the route's rules) and for its Vary
            key = (route if self.policy.debug else route.allow_private_network, id(tally))
            shared = self._origin_refusals.get(key)
            if shared is None:
                shared = render(self.policy, route, origin, method, decision, self.answers)
                shared = self._origin_refusals[key] = shared if tally is None else replace(shared, tally=tally)
            return shared
        response = render(self.policy, route, origin, method, decision, self.answers)
        return response if tally is None else replace(response, tally=tally)

    def snapshot(self) -> Snapshot:
        hits, misses, entries = self.cache.stats()
        clients = len(self.limiter) if self.limiter is not None else 0
        policy = self.policy
        return Snapshot(hits, misses, entries, clients, policy.environment, policy.version, policy.source_valid)


def read_preflight_headers(
    headers: RequestHeaders,
) -> tuple[bytes | None, bytes | None, bytes, bool, bytes | None, bytes | None, bool]:
    """(origin, method, request headers joined, PNA flag, X-Forwarded-For, Host, duplicate) in one pass.

    Two Host headers are no Host (only host-agnostic routes answer), as is none.
    """
    origin = method = forwarded = host = None
    request_headers: list[bytes] = []
    duplicate = pna = two_hosts = False
    for name, value in headers:
        if name == ORIGIN:
            duplicate |= origin is not None
            origin = value
        elif name == REQUEST_METHOD:
            duplicate |= method is not None
            method = value
        elif name == REQUEST_HEADERS:
            request_headers.append(value)
        elif name == REQUEST_PRIVATE_NETWORK:
            pna = value.lower() == b"true"
        elif name == FORWARDED_FOR:
            forwarded = value if forwarded is None else forwarded + b"," + value
        elif name == HOST:
            two_hosts |= host is not None
            host = value
    joined = request_headers[0] if len(request_headers) == 1 else b",".join(request_headers)
    return origin, method, joined, pna, forwarded, None if two_hosts else host, duplicate


class Pipeline:
    """The current Runtime and the counters: what the fast path and the ASGI app both call."""

    def __init__(self, policy: Policy, metrics_enabled: bool = True, candidate: CandidateSlot | None = None) -> None:
        self.candidate = candidate or CandidateSlot()
        self.runtime = Runtime(policy, candidate=self.candidate)
        self.metrics = Metrics(r.name for r in policy.all_routes())
        self.metrics_enabled = metrics_enabled

    def swap(self, policy: Policy) -> None:
        """Install a new compiled policy atomically (one reference assignment)."""
        old = self.runtime
        new = old.successor(policy)
        self.metrics.set_routes(r.name for r in policy.all_routes())
        hits, misses, _ = old.cache.stats()
        self.runtime = new
        self.metrics.retire_cache(hits, misses)

    def swap_candidate(self, candidate: Policy) -> None:
        """Install a new candidate: a new Runtime on the same live policy (fresh cache, same buckets)."""
        previous = self.candidate.policy, self.candidate.log
        self.candidate.install(candidate)
        try:
            self.swap(self.runtime.policy)
        except BaseException:  # the new Runtime could not be built: the slot keeps the candidate in force
            self.candidate.policy, self.candidate.log = previous
            raise

    def answer(self, path: str, headers: RequestHeaders, peer: str | None, fast_path: bool = False) -> Response:
        """Every OPTIONS request, timed and counted; never raises (a 500 carries an error_id).

        ``fast_path``: the fast path answers it (counted in cors_fast_path_responses_total).
        """
        runtime = self.runtime
        start = time.perf_counter()
        if fast_path:
            self.metrics.fast_path += 1
        try:
            prepared = runtime.prepare(path, headers)
        except Exception as exc:
            return internal_error(exc, path)
        return self.answer_prepared(runtime, prepared, peer, start)

    def answer_head(
        self, head: bytes, read: Callable[[bytes], tuple[str, RequestHeaders] | None], peer: str | None
    ) -> Response | None:
        """``answer`` for a raw head the fast path read whole; None: ``read`` refused it (the parser decides).

        A head the Runtime's memo knows skips ``read`` and ``prepare``; another
        is read, prepared, answered, then offered to the memo (``Runtime.remember``).
        """
        runtime = self.runtime
        start = time.perf_counter()
        prepared = runtime.heads.get(head)
        if prepared is not None:
            self.metrics.fast_path += 1
            return self.answer_prepared(runtime, prepared, peer, start)
        request = read(head)
        if request is None:
            return None
        try:
            prepared = runtime.prepare(*request)
        except Exception:
            return None  # the ASGI app answers it (a 500, logged there)
        self.metrics.fast_path += 1
        response = self.answer_prepared(runtime, prepared, peer, start)
        runtime.remember(head, prepared)
        return response

    def answer_prepared(self, runtime: Runtime, prepared: Prepared, peer: str | None, start: float) -> Response:
        """Steps 2 to 4 for a head ``runtime`` has prepared, timed from ``start`` and counted."""
        try:
            route, response = runtime.answer_prepared(prepared, peer)
            if self.metrics_enabled:
                self.metrics.record(route.name, response.result, response.reason, time.perf_counter() - start)
            return response
        except Exception as exc:
            return internal_error(exc, prepared.path)


def preview(policy: Policy, target: str, headers: RequestHeaders) -> tuple[RoutePolicy, Response, Decision | None]:
    """What ``serve`` answers for this request under ``policy`` (never rate limited): for ``explain`` and ``verify``.

    ``target`` is the request target as sent (``/admin?x=1``, ``/%61dmin``), routed
    by ``route_path`` as ``serve`` routes it (ValueError when it is not one).

    Also the decision the pipeline took on its way (None when a fixed answer
    came first: not a preflight, a disabled route, oversized values). The
    response's wire bytes are ``serve.responses.encode(response)`` plus the Date line.
    """
    if not target.isascii():
        raise ValueError(f"{target!r} is not a request target: percent-encode it ({urllib.parse.quote(target)!r})")
    path = route_path(target.encode("ascii"))
    runtime = Runtime(policy)
    runtime.limiter = None
    decided: list[Decision] = []

    def recording(
        route: RoutePolicy, origin: str, method: str, request_headers: str, private_network: bool
    ) -> Decision:
        decided.append(decide(route, origin, method, request_headers, private_network))
        return decided[-1]

    runtime.decide = recording
    route, response = runtime.answer(path, headers, None)
    return route, response, decided[-1] if decided else None
