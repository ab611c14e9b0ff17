"""Host names: the request's Host header read once, and the host patterns routes are scoped by.

A route may name ``hosts``: exact names (``api.acme.io``) and ``*.`` wildcards
(``*.acme.io``: one or more labels under the suffix, never the apex itself), as
Envoy's virtual hosts, Traefik's ``Host()`` and the Gateway API's ``hostnames``
scope routes. Matching is on the Host header lower-cased, its port dropped
(RFC 9110 section 7.2: the authority a request was sent to); an IP literal
matches only an exact entry. A Host that is not a host name (two of them, none,
bytes outside a reg-name, an empty label) is no host at all: only host-agnostic
routes can answer it, on both server paths alike.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# RFC 1035/1123 labels, plus '_' (seen in real internal names): letters, digits, '-', '_'.
_NAME = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_IPV6 = re.compile(r"\[[0-9a-f:.]+\]")
MAX_HOST_CHARS = 253


def _ip_literal(host: str) -> bool:
    """An IPv6 literal in brackets, or a name whose last label is all digits (IPv4: no TLD is numeric)."""
    return host.startswith("[") or host.rpartition(".")[2].isdigit()


def request_host(value: bytes | None) -> str | None:
    """The host a request's Host header names: lower-cased, port and one trailing dot dropped; None if not a host."""
    if value is None or len(value) > MAX_HOST_CHARS + 7:
        return None
    text = value.decode("latin-1").lower()
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[: end + 1], text[end + 1 :]
        if end < 0 or not _IPV6.fullmatch(host):
            return None
    else:
        host, colon, rest = text.partition(":")
        rest = colon + rest
        if host.endswith("."):
            host = host[:-1]
        if len(host) > MAX_HOST_CHARS or not _NAME.fullmatch(host):
            return None
    if rest and not (rest[0] == ":" and rest[1:].isdigit() and rest[1:].isascii()):
        return None
    return host


class HostPattern(NamedTuple):
    """A route's host entry: ``exact`` is the host name, or None and ``suffix`` is a wildcard's (``*.`` dropped)."""

    text: str  # as normalized: the form check, explain and the names show
    exact: str | None
    suffix: str | None


def parse_host_pattern(text: str) -> HostPattern | str:
    """A configured host entry, or why it is not one (the finding's message)."""
    host = text.strip().lower()
    if host.endswith("."):
        host = host[:-1]
    if host.startswith("*."):
        suffix = host[2:]
        if "*" in suffix or not _NAME.fullmatch(suffix) or len(suffix) > MAX_HOST_CHARS:
            return f"{text!r}: a wildcard is '*.' followed by a host name, e.g. '*.acme.io'"
        if _ip_literal(suffix):
            return f"{text!r}: an IP address takes no wildcard; list it exactly"
        if "." not in suffix:
            return f"{text!r} covers every name under a top-level domain; name the domain, e.g. '*.acme.{suffix}'"
        return HostPattern(host, None, suffix)
    if "*" in host:
        return f"{text!r}: '*' may only stand alone as the first label, e.g. '*.acme.io'"
    if request_host(host.encode("latin-1", "replace")) != host:
        return f"{text!r} is not a host name (no scheme, port or path: e.g. 'api.acme.io')"
    return HostPattern(host, host, None)


def pattern_covers(pattern: HostPattern, host: str) -> bool:
    """Whether ``pattern`` matches the (normalized) ``host``: for ownership checks, not the request path."""
    if pattern.exact is not None:
        return host == pattern.exact
    assert pattern.suffix is not None
    return host.endswith("." + pattern.suffix) and not _ip_literal(host)


def pattern_within(pattern: HostPattern, owned: tuple[HostPattern, ...]) -> bool:
    """Whether every host ``pattern`` matches is matched by one of ``owned`` (a source's allowed hosts)."""
    for own in owned:
        if pattern.exact is not None and pattern_covers(own, pattern.exact):
            return True
        suffix, under = pattern.suffix, own.suffix
        if suffix is not None and under is not None and (suffix == under or suffix.endswith("." + under)):
            return True
    return False


def suffixes(host: str, most_labels: int) -> list[str]:
    """The wildcard suffixes ``host`` may fall under, longest first, at most ``most_labels`` labels each.

    The apex is never one (a wildcard needs a label before its suffix), and an
    IP literal has none. The walk is bounded by the policy's longest wildcard,
    not by the request: a Host of a thousand labels costs what a short one does.
    """
    if _ip_literal(host):
        return []
    found: list[str] = []
    end = len(host)
    for _ in range(most_labels):
        end = host.rfind(".", 0, end)
        if end <= 0:
            break
        found.append(host[end + 1 :])
    found.reverse()
    return found
