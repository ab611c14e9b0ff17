"""The preflights ``cors-handler verify`` sends: derived from the policy, route by route.

Only the requests are made here. What the answer must be is never decided
here: ``verify`` asks the service's own pipeline (``pipeline.preview``) for
every case. Each case still records the generator's ``intent`` ("allow",
"refuse", or None when the pipeline alone decides, e.g. an upper-case origin,
which the service normalizes): the tests hold the generator to it, so a
lookalike that is accidentally an allowed origin is caught.

Per enabled route: each exact origin; two hosts per wildcard pattern (one
label, several labels) and its apex; lookalikes that a matcher bug would let
through (``evil<host>``, ``<host>.evil.test``, the other scheme, another port,
upper case, ``null``); outside production, loopback origins and the first
address of each private CIDR. The first allowed origin of each kind is asked
with every allowed method (the others with the first method), every allowed
origin once with the allowed headers together; the first allowed origin
also with one refused method, one refused header (with ``*`` headers and
credentials none is refused: it asks ``authorization`` instead, which ``*``
then covers), the other credentials mode and Private Network Access. A regex has no canonical member, so
``allow_origin_regex`` entries get no allowed case (only ``null`` and the other
rules' lookalikes). A disabled route gets one case (its answer is a 404).
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..cors.model import Policy, RoutePolicy
from ..cors.origins import NULL_ORIGIN, OriginMatcher, ParsedOrigin, parse_origin
from ..serve.pipeline import route_path

ALLOW, REFUSE = "allow", "refuse"
ANY_ORIGIN_SAMPLE = "https://any-origin.verify.test"
LOOKALIKE_DOMAIN = "evil.test"
REFUSED_HEADER = "x-verify-refused"
# a method to refuse: the first of these the route does not allow (GET, HEAD and POST always pass)
REFUSED_METHOD_CHOICES = ("PUT", "DELETE", "PATCH", "PURGE")
ANY_METHOD_SAMPLE = "PUT"
ANY_HEADER_SAMPLE = "x-verify-any"
# development mode allows loopback on any port: one origin per kind of loopback
# what a path prefix keeps unencoded when it is asked as a request target (RFC 3986 pchar and "/", "%" encoded)
PATH_SAFE = "/!$&'()*+,;=:@"
DEVELOPMENT_SAMPLES = ("http://localhost:3000", "http://127.0.0.1:8080", "http://[::1]:5173")


@dataclass(frozen=True, slots=True)
class Case:
    """One request to send. ``id`` is stable and readable: route, origin kind, origin, method, extras."""

    id: str
    route: str
    path: str
    origin: str
    method: str
    request_headers: str | None
    credentials: bool  # the browser's credentials mode ("include") when it reads the answer
    private_network: bool
    intent: str | None  # what the generator meant (ALLOW, REFUSE, None); never the expected answer
    actual: bool = False  # an actual GET (the edge's CORS headers), not a preflight
    host: str | None = None  # the Host it is asked on (a route scoped by hosts); None: the URL's authority

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The request's CORS headers, lower-case names, as the pipeline reads them."""
        pairs = [(b"origin", self.origin.encode("latin-1"))]
        if self.host is not None:
            pairs.append((b"host", self.host.encode("ascii")))
        if self.actual:
            return pairs
        pairs.append((b"access-control-request-method", self.method.encode("latin-1")))
        if self.request_headers:
            pairs.append((b"access-control-request-headers", self.request_headers.encode("latin-1")))
        if self.private_network:
            pairs.append((b"access-control-request-private-network", b"true"))
        return pairs


@dataclass(frozen=True, slots=True)
class Sample:
    """An origin to ask with, the kind of rule it exercises, and whether it is meant to pass."""

    kind: str
    origin: str
    intent: str | None
    first_of_kind: bool = False  # asked with every allowed method (the others with the first one)


def _serialize(scheme: str, host: str, port: int | None) -> str:
    return ParsedOrigin(scheme, host, port).serialize()


def lookalikes(kind: str, origin: ParsedOrigin) -> list[Sample]:
    """Origins one edit away from an allowed one, which a sloppy matcher lets through.

    The prefix and suffix tricks need a domain name (an IPv6 literal has no
    labels to extend). Upper case has no intent: no browser sends it (Fetch's
    grammar), the service answers it 400, and the pipeline decides it.
    """
    scheme, host, port = origin.scheme, origin.host, origin.port
    out = []
    if not host.startswith("["):
        out.append(Sample(f"{kind}-prefix", _serialize(scheme, "evil" + host, port), REFUSE))
        out.append(Sample(f"{kind}-suffix", _serialize(scheme, f"{host}.{LOOKALIKE_DOMAIN}", port), REFUSE))
    other_scheme = "http" if scheme == "https" else "https"
    out.append(Sample(f"{kind}-scheme", _serialize(other_scheme, host, port), REFUSE))
    other_port = (8443 if scheme == "https" else 8080) if port is None else (port + 1 if port < 65535 else port - 1)
    out.append(Sample(f"{kind}-port", _serialize(scheme, host, other_port), REFUSE))
    out.append(Sample(f"{kind}-uppercase", _serialize(scheme, host.upper(), port), None))
    return out


def origin_samples(matcher: OriginMatcher) -> list[Sample]:
    """The route's origins to ask with: allowed ones first, then the ones meant to be refused, no repeats."""
    allowed: list[Sample] = []
    refused: list[Sample] = []
    if matcher.allow_any:
        allowed.append(Sample("any", ANY_ORIGIN_SAMPLE, ALLOW))
    for text in sorted(matcher.exact):
        parsed = None if text == NULL_ORIGIN else parse_origin(text)
        allowed.append(Sample("exact", text, ALLOW))
        if parsed is not None:
            refused += lookalikes("exact", parsed)
    for wildcard in matcher.wildcards:
        apex = wildcard.suffix[1:]
        one = ParsedOrigin(wildcard.scheme, "one" + wildcard.suffix, wildcard.port)
        allowed.append(Sample("wildcard", one.serialize(), ALLOW))
        allowed.append(
            Sample("wildcard", _serialize(wildcard.scheme, "two.levels" + wildcard.suffix, wildcard.port), ALLOW)
        )
        refused.append(Sample("wildcard-apex", _serialize(wildcard.scheme, apex, wildcard.port), REFUSE))
        refused.append(Sample("wildcard-prefix", _serialize(wildcard.scheme, "evil" + apex, wildcard.port), REFUSE))
        refused += [s for s in lookalikes("wildcard", one) if not s.kind.endswith("-prefix")]
    if matcher.development is not None:
        allowed += [Sample("development", origin, ALLOW) for origin in DEVELOPMENT_SAMPLES]
        for network in matcher.development.cidrs:
            first = network.network_address + 1 if network.num_addresses > 1 else network.network_address
            allowed.append(Sample("development-cidr", f"http://{ipaddress.IPv4Address(first)}", ALLOW))
        refused.append(Sample("development-suffix", f"http://localhost.{LOOKALIKE_DOMAIN}:3000", REFUSE))
    if NULL_ORIGIN not in matcher.exact:
        refused.append(Sample("null", NULL_ORIGIN, REFUSE))
    if matcher.allow_any:  # '*' allows every lookalike, and null too (cors.decide): the pipeline decides them
        refused = [replace(s, intent=None) for s in refused]
    seen: set[str] = set()
    kinds: set[str] = set()
    samples = []
    for sample in allowed + refused:
        if sample.origin not in seen:
            seen.add(sample.origin)
            samples.append(replace(sample, first_of_kind=sample.kind not in kinds))
            kinds.add(sample.kind)
    return samples


def _refused_method(route: RoutePolicy) -> str | None:
    if route.any_method:
        return None
    return next((m for m in REFUSED_METHOD_CHOICES if m not in route.method_set), None)


def _refused_header(route: RoutePolicy) -> str | None:
    if not route.any_header:
        return REFUSED_HEADER if REFUSED_HEADER not in route.header_set else None
    if route.allow_credentials:  # with credentials '*' covers every header, authorization included
        return None
    return "authorization" if "authorization" not in route.header_set else None  # without, '*' never covers it


def route_cases(route: RoutePolicy, path: str) -> list[Case]:
    """Every case for one route, asked on ``path`` (see the module docstring)."""

    def case(
        sample: Sample,
        method: str,
        intent: str | None,
        headers: str | None = None,
        credentials: bool = route.allow_credentials,
        pna: bool = False,
    ) -> Case:
        parts = [route.name, sample.kind, sample.origin, method]
        if headers:
            parts.append(f"headers={headers.replace(', ', ',')}")
        if credentials:
            parts.append("credentials")
        if pna:
            parts.append("pna")
        return Case(" ".join(parts), route.name, path, sample.origin, method, headers, credentials, pna, intent)

    samples = origin_samples(route.origins)
    allowed = [s for s in samples if s.intent == ALLOW]
    methods = [ANY_METHOD_SAMPLE] if route.any_method else list(route.methods) or ["GET"]
    if not route.enabled:
        return [case(s, methods[0], REFUSE) for s in (allowed or samples)[:1]]
    listed = ", ".join(route.headers) or (ANY_HEADER_SAMPLE if route.any_header else "")
    cases = []
    for sample in allowed:
        asked = methods if sample.first_of_kind else methods[:1]
        cases += [case(sample, method, ALLOW) for method in asked]
        if listed:
            cases.append(case(sample, methods[0], ALLOW, listed))
    if allowed:
        first = allowed[0]
        refused_method, refused_header = _refused_method(route), _refused_header(route)
        if refused_method:
            cases.append(case(first, refused_method, REFUSE))
        if refused_header:
            cases.append(case(first, methods[0], REFUSE, refused_header))
        elif route.any_header and "authorization" not in route.header_set:  # '*' with credentials covers it
            cases.append(case(first, methods[0], ALLOW, f"authorization, {ANY_HEADER_SAMPLE}"))
        # the other credentials mode: without, a credentialed route still passes; with, others must fail
        flip = not route.allow_credentials
        cases.append(case(first, methods[0], ALLOW if not flip else REFUSE, credentials=flip))
        cases.append(case(first, methods[0], ALLOW if route.allow_private_network else REFUSE, pna=True))
    cases += [case(s, methods[0], s.intent) for s in samples if s.intent != ALLOW]
    return cases


def actual_cases(route: RoutePolicy, path: str) -> list[Case]:
    """A GET per origin: the edge's CORS headers on the actual response must follow the preflight's decision.

    Upper-case origins are left out: no browser sends one (the service answers
    their preflight 400), so no actual request follows.
    """
    if not route.enabled:
        return []
    return [
        Case(
            f"{route.name} {s.kind} {s.origin} GET actual",
            route.name,
            path,
            s.origin,
            "GET",
            None,
            route.allow_credentials,
            False,
            s.intent,
            actual=True,
        )
        for s in origin_samples(route.origins)
        if not s.kind.endswith("-uppercase")
    ]


def host_sample(pattern: str) -> str:
    """A host a route's host entry matches: the name itself, or a label under a wildcard's suffix."""
    return f"cors-verify.{pattern[2:]}" if pattern.startswith("*.") else pattern


def targets(policy: Policy, paths: Sequence[str] = ()) -> list[tuple[RoutePolicy, str, str | None]]:
    """(route, target, host) triples: each given target with the route serving it, else each route on its own prefix.

    A target is routed as ``serve`` routes it (``route_path``: percent-decoded, query and
    fragment dropped); a prefix is asked %-encoded where a request target needs it. A
    route scoped by hosts is asked on each of its hosts that reaches it (a wildcard
    through a name under it), in the order written; the others without a Host of their
    own. A route that no host reaches on its prefix (the default under a route for ``/``)
    has no case.
    """
    if paths:
        given = dict.fromkeys(paths)
        return [(policy.route_for(route_path(target.encode("ascii"))), target, None) for target in given]
    found: list[tuple[RoutePolicy, str, str | None]] = []
    for route in policy.all_routes():
        target = urllib.parse.quote(route.path_prefix, safe=PATH_SAFE)
        path = route_path(target.encode("ascii"))
        hosts: list[str | None] = [host_sample(pattern) for pattern in route.hosts] or [None]
        found += [(route, target, host) for host in hosts if policy.route_for(path, host) is route]
    return found


def generate(policy: Policy, paths: Sequence[str] = (), actual: bool = False) -> list[Case]:
    """Every case for the policy, in a stable order, ids unique."""
    cases: dict[str, Case] = {}
    found = targets(policy, paths)
    asked: set[tuple[int, str]] = set()
    for route, path, host in found:
        many = sum(1 for other, other_path, _ in found if other is route and other_path != path) > 0
        every = route_cases(route, path) + (actual_cases(route, path) if actual else [])
        if (id(route), path) in asked:
            # the route's further hosts: that each reaches the route is what is left to show, with one case
            first = next((case for case in every if case.intent == ALLOW), every[0])
            cases.setdefault(f"{first.id} @{host}", replace(first, id=f"{first.id} @{host}", host=host))
            continue
        asked.add((id(route), path))
        for case in every:
            # two paths on one route: the path tells their cases apart
            key = f"{case.id} {path}" if many else case.id
            cases.setdefault(key, replace(case, id=key, host=host))
    return list(cases.values())
