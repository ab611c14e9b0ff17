"""Origin parsing, origin patterns and the compiled origin matcher.

An Origin header is the serialization of a tuple (scheme, host, port): no
path, no userinfo, no trailing slash (Fetch standard, "serializing an
origin"). We parse it strictly; anything else is a malformed preflight.

Matching compares a normalized form: scheme and host lower-cased, the
scheme's default port dropped, IPv6 hosts compressed. The response still
echoes the origin exactly as received, so the browser's byte-for-byte
comparison succeeds.

Pattern kinds, cheapest first: ``*``; exact origins (a frozenset lookup);
wildcard subdomains (``https://*.example.com``: a suffix test on a dot
boundary with the scheme and port fixed); RE2 regexes (linear time, matched
against the whole normalized origin); and, in staging/development only,
loopback origins and IP literals inside the configured private CIDRs.
The literal origin ``null`` is matched only when listed exactly: no pattern,
not even ``*``, matches it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Protocol

import re2

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
NULL_ORIGIN = "null"
ANY_ORIGIN = "*"

_ORIGIN = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_\-.]+)"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_DOTTED_DECIMAL = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_LOOPBACK_V4 = ipaddress.IPv4Network("127.0.0.0/8")
_LOOPBACK_V6 = "[::1]"


class Regex(Protocol):
    """The part of a compiled RE2 pattern we use."""

    def fullmatch(self, text: str) -> object | None: ...


def compile_regex(pattern: str) -> Regex:
    """Compile with RE2 (linear-time matching, no backtracking blow-ups).

    Raises ValueError with RE2's own message. RE2's stderr logging is turned
    off: the caller reports the error, naming the setting.
    """
    options = re2.Options()
    options.log_errors = False
    try:
        compiled: Regex = re2.compile(pattern, options)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(detail) from None
    return compiled


@dataclass(frozen=True, slots=True)
class ParsedOrigin:
    """A tuple origin in normalized form; ``port`` is None for the scheme's default."""

    scheme: str
    host: str
    port: int | None

    def serialize(self) -> str:
        if self.port is None:
            return f"{self.scheme}://{self.host}"
        return f"{self.scheme}://{self.host}:{self.port}"


def _valid_reg_name(host: str) -> bool:
    return all(label and not label.startswith("-") for label in host.split("."))


def parse_origin(value: str) -> ParsedOrigin | None:
    """Parse a serialized origin (``scheme://host[:port]``); None when malformed.

    ``null`` is not a tuple origin: callers handle it before parsing.
    """
    m = _ORIGIN.fullmatch(value)
    if m is None:
        return None
    scheme = m["scheme"].lower()
    host = m["host"].lower()
    if host.startswith("["):
        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return None
        host = f"[{address.compressed}]"
    elif not _valid_reg_name(host):
        return None
    port: int | None = None
    if m["port"] is not None:
        port = int(m["port"])
        if port > 65535:
            return None
        if DEFAULT_PORTS.get(scheme) == port:
            port = None
    return ParsedOrigin(scheme, host, port)


def ipv4_literal(host: str) -> ipaddress.IPv4Address | None:
    """The host as an IPv4 address when it is strict dotted-decimal, else None.

    Leading zeros, hex and short forms are refused (ipaddress already refuses
    them); browsers never serialize an origin host that way.
    """
    if _DOTTED_DECIMAL.fullmatch(host) is None:
        return None
    try:
        return ipaddress.IPv4Address(host)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class WildcardPattern:
    """``scheme://*.suffix[:port]``: one or more labels in front of ``.suffix``."""

    text: str
    scheme: str
    suffix: str  # starts with "."
    port: int | None

    def matches(self, origin: ParsedOrigin) -> bool:
        return (
            origin.scheme == self.scheme
            and origin.port == self.port
            and origin.host.endswith(self.suffix)
            and len(origin.host) > len(self.suffix)
        )


class PatternError(ValueError):
    """An allow_origins entry that is not a valid origin pattern."""


def parse_pattern(text: str) -> str | WildcardPattern:
    """Parse one allow_origins entry into a normalized exact origin or a wildcard.

    Returns ``*`` or ``null`` unchanged. Raises PatternError with a message
    that says how to write the pattern correctly.
    """
    if text in (ANY_ORIGIN, NULL_ORIGIN):
        return text
    if "://" not in text:
        raise PatternError(f"{text!r} needs a scheme, e.g. 'https://{text}'")
    scheme, _, rest = text.partition("://")
    if "/" in rest or "?" in rest or "#" in rest:
        raise PatternError(f"{text!r} must be scheme://host[:port], without path or trailing slash")
    if "*" in rest:
        if not rest.startswith("*.") or "*" in rest[2:]:
            raise PatternError(f"{text!r}: a wildcard must be the whole first label, e.g. 'https://*.example.com'")
        base = parse_origin(f"{scheme}://{rest[2:]}")
        if base is None or base.host.startswith("[") or ipv4_literal(base.host) is not None:
            raise PatternError(f"{text!r}: the part after '*.' must be a domain name")
        return WildcardPattern(text, base.scheme, "." + base.host, base.port)
    parsed = parse_origin(text)
    if parsed is None:
        raise PatternError(f"{text!r} is not a valid origin (scheme://host[:port])")
    return parsed.serialize()


@dataclass(frozen=True, slots=True)
class DevelopmentOrigins:
    """Loopback and private-network origins allowed outside production."""

    cidrs: tuple[ipaddress.IPv4Network, ...]

    def matches(self, origin: ParsedOrigin) -> str | None:
        if origin.scheme not in ("http", "https"):
            return None
        host = origin.host
        if host == "localhost" or host == _LOOPBACK_V6:
            return f"development: loopback {host}"
        address = ipv4_literal(host)
        if address is None:
            return None
        if address in _LOOPBACK_V4:
            return "development: loopback 127.0.0.0/8"
        for network in self.cidrs:
            if address in network:
                return f"development: private network {network}"
        return None


@dataclass(frozen=True, slots=True)
class OriginMatcher:
    """The compiled origin rules of one route; immutable and shared across requests."""

    allow_any: bool
    exact: frozenset[str]
    wildcards: tuple[WildcardPattern, ...]
    regexes: tuple[tuple[str, Regex], ...]
    development: DevelopmentOrigins | None

    def match(self, origin: str, parsed: ParsedOrigin | None) -> str | None:
        """Return a description of the rule that allows ``origin``, or None.

        ``parsed`` is None only for the ``null`` origin.
        """
        if parsed is None:
            return "exact null" if origin == NULL_ORIGIN and NULL_ORIGIN in self.exact else None
        if self.allow_any:
            return "any origin (*)"
        normalized = parsed.serialize()
        if normalized in self.exact:
            return f"exact {normalized}"
        for wildcard in self.wildcards:
            if wildcard.matches(parsed):
                return f"wildcard {wildcard.text}"
        for text, regex in self.regexes:
            if regex.fullmatch(normalized) is not None:
                return f"regex {text}"
        if self.development is not None:
            return self.development.matches(parsed)
        return None

    def describe(self) -> list[str]:
        """The configured rules, for `check`, `explain` and debug 403 bodies."""
        rules = ["*"] if self.allow_any else []
        rules += sorted(self.exact)
        rules += [w.text for w in self.wildcards]
        rules += [f"regex:{text}" for text, _ in self.regexes]
        if self.development is not None:
            rules.append("development: localhost, 127.0.0.0/8, [::1]")
            rules += [f"development: {n}" for n in self.development.cidrs]
        return rules
