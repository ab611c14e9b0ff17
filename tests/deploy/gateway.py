"""Which HTTPRoute rule a Gateway API implementation must pick for a request, as the specification states it.

An independent statement of the rules in kubernetes-sigs/gateway-api ``apis/v1/httproute_types.go``, written
from its text and not from any implementation:

- ``HTTPRouteSpec.Hostnames``: a route without hostnames matches every host (its listener's); ``*.`` is a
  suffix match of one or more labels, never the apex. "In the event that multiple HTTPRoutes specify
  intersecting hostnames ..., precedence must be given to rules from the HTTPRoute with the largest number
  of: characters in a matching non-wildcard hostname; characters in a matching hostname."
- ``HTTPRouteRule.Matches``: a rule matches when any of its matches does (no matches: PathPrefix ``/``).
  "Across all rules specified on applicable Routes, precedence must be given to the match having: Exact path
  match; Prefix path match with largest number of characters; method match; largest number of header
  matches; largest number of query param matches", then "the oldest Route based on creation timestamp", then
  "the Route appearing first in alphabetical order by {namespace}/{name}", then "the FIRST matching rule (in
  list order)".
- ``HTTPPathMatch``: PathPrefix matches element by element (``/abc`` matches ``/abc`` and ``/abc/def``, not
  ``/abcd``; a trailing slash in the value is ignored); header names compare case-insensitively.

Hostname precedence is applied as Envoy-based implementations do it (one virtual host per hostname): a
request is decided among the routes of its most specific matching hostname only, and no rule of a less
specific one answers when none of those match. That is the stricter reading: a rule that wins under it
wins under the looser one (every matching rule ranked by hostname first) too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Request:
    host: str
    path: str
    method: str
    headers: dict[str, str] = field(default_factory=dict)  # names in any case
    query: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Winner:
    route: str  # namespace/name
    rule: int


def host_matches(hostname: str, host: str) -> bool:
    host = host.lower()
    if hostname.startswith("*."):
        suffix = hostname[1:]
        return host.endswith(suffix) and len(host) > len(suffix)
    return host == hostname


def hostname_rank(route: dict[str, Any], host: str) -> tuple[int, int] | None:
    """(characters of the longest matching non-wildcard hostname, of the longest matching one); None: no match."""
    hostnames = route["spec"].get("hostnames") or []
    if not hostnames:
        return (0, 0)
    matching = [h for h in hostnames if host_matches(h, host)]
    if not matching:
        return None
    exact = [len(h) for h in matching if not h.startswith("*.")]
    return (max(exact, default=0), max(len(h) for h in matching))


def path_matches(match: dict[str, Any], path: str) -> bool:
    spec = match.get("path") or {"type": "PathPrefix", "value": "/"}
    kind, value = spec.get("type", "PathPrefix"), spec.get("value", "/")
    if kind == "Exact":
        return bool(path == value)
    if kind != "PathPrefix":
        raise ValueError(f"path match {kind}: implementation-specific, not modelled")
    prefix = value.rstrip("/")
    return path == prefix or path.startswith(prefix + "/") or prefix == ""


def value_matches(spec: dict[str, Any], actual: str | None) -> bool:
    if actual is None:
        return False
    if spec.get("type", "Exact") == "Exact":
        return bool(actual == spec["value"])
    return re.search(spec["value"], actual) is not None  # RegularExpression: implementation-specific dialect


def match_matches(match: dict[str, Any], request: Request) -> bool:
    if not path_matches(match, request.path):
        return False
    if "method" in match and match["method"] != request.method:
        return False
    headers = {name.lower(): value for name, value in request.headers.items()}
    if not all(value_matches(h, headers.get(h["name"].lower())) for h in match.get("headers", [])):
        return False
    return all(value_matches(q, request.query.get(q["name"])) for q in match.get("queryParams", []))


def match_rank(match: dict[str, Any]) -> tuple[int, int, int, int, int]:
    """Larger is more specific: Exact path, prefix length, method, header matches, query matches. The prefix
    length counts the characters as written ("/api/" one more than "/api", though a trailing "/" is ignored in
    matching): the reading under which the chart's rules are hardest to win with."""
    spec = match.get("path") or {"type": "PathPrefix", "value": "/"}
    exact = spec.get("type", "PathPrefix") == "Exact"
    return (int(exact), 0 if exact else len(spec.get("value", "/")), int("method" in match),
            len(match.get("headers", [])), len(match.get("queryParams", [])))  # fmt: skip


def route_id(route: dict[str, Any]) -> str:
    meta = route["metadata"]
    return f"{meta.get('namespace', 'default')}/{meta['name']}"


def winner(routes: list[dict[str, Any]], request: Request) -> Winner | None:
    """The rule that answers ``request`` (None: 404). Routes may carry metadata.creationTimestamp (RFC 3339)."""
    ranked = [(rank, route) for route in routes if (rank := hostname_rank(route, request.host)) is not None]
    if not ranked:
        return None
    best_host = max(rank for rank, _ in ranked)
    candidates = []
    for _, route in (item for item in ranked if item[0] == best_host):
        for index, rule in enumerate(route["spec"].get("rules", [])):
            matches = rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]
            ranks = [match_rank(m) for m in matches if match_matches(m, request)]
            if ranks:
                created = route["metadata"].get("creationTimestamp", "")
                # larger match rank first; then older; then alphabetical; then list order
                candidates.append((tuple(-r for r in max(ranks)), created, route_id(route), index))
    if not candidates:
        return None
    _, _, name, index = min(candidates)
    return Winner(name, index)
