"""Origin parsing, origin patterns and the compiled origin matcher.

An Origin header is the serialization of a tuple (scheme, host, port): no
path, no userinfo, no trailing slash (Fetch standard, "serializing an
origin"). We parse it strictly; anything else is a malformed preflight.

Matching compares a normalized form: scheme and host lower-cased, the
scheme's default port dropped, IPv6 hosts compressed. The response still
echoes the origin exactly as received, so the browser's byte-for-byte
comparison succeeds.

Pattern kinds, cheapest first: ``*``; exact origins (a frozenset lookup);
wildcard subdomains (``https://*.example.com``: a suffix on a dot boundary
with the scheme and port fixed, indexed by domain); RE2 regexes (linear
time, matched against the whole normalized origin, all in one RE2 set); and,
in staging/development only, loopback origins and IP literals inside the
configured private CIDRs (address arithmetic). No kind costs more with more
patterns: see ``OriginMatcher``.
The literal origin ``null`` is matched here only when listed exactly: no
wildcard, regex or development rule matches it. ``*`` in allow_origins covers it
too (docs/configuration.md), but that is decided in ``cors.decide``, where ``*`` is.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import InitVar, dataclass, field
from typing import NamedTuple, Protocol

import re2

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
NULL_ORIGIN = "null"
ANY_ORIGIN = "*"

_ORIGIN = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_\-.]+)"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
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


class ParsedOrigin(NamedTuple):
    """A tuple origin in normalized form; ``port`` is None for the scheme's default.

    A NamedTuple rather than a frozen dataclass: every cache miss parses one, and a
    tuple is built in one C call where a frozen dataclass sets each field in Python.
    """

    scheme: str
    host: str
    port: int | None

    def serialize(self) -> str:
        if self.port is None:
            return f"{self.scheme}://{self.host}"
        return f"{self.scheme}://{self.host}:{self.port}"


_new_parsed_origin = tuple.__new__  # NamedTuple's __new__ is Python code


def _valid_reg_name(host: str) -> bool:
    """Every dot-separated label non-empty and not starting with ``-`` (string tests, no split)."""
    return not (host[0] in ".-" or host[-1] == "." or ".." in host or ".-" in host)


def parse_origin(value: str) -> ParsedOrigin | None:
    """Parse a serialized origin (``scheme://host[:port]``); None when malformed.

    ``null`` is not a tuple origin: callers handle it before parsing.
    """
    m = _ORIGIN.fullmatch(value)
    if m is None:
        return None
    scheme, host, port_text = m.groups()
    return _normalized(scheme.lower(), host.lower(), port_text)


def _normalized(scheme: str, host: str, port_text: str | None) -> ParsedOrigin | None:
    """A matched origin's lower-cased parts as a ParsedOrigin: IPv6 compressed, labels checked, default port dropped."""
    if host.startswith("["):
        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return None
        host = f"[{address.compressed}]"
    elif not _valid_reg_name(host):
        return None
    port: int | None = None
    if port_text is not None:
        port = int(port_text)
        if port > 65535:
            return None
        if DEFAULT_PORTS.get(scheme) == port:
            port = None
    return _new_parsed_origin(ParsedOrigin, (scheme, host, port))


# Fetch's serialized-ipv6 (whatwg/fetch 301650c): lower-case hex without leading zeros, no dotted-quad
# tail, and "::" never for a single zero hextet (so at most six written hextets beside it).
_H16 = "(?:0|[1-9a-f][0-9a-f]{0,3})"
_SERIALIZED_IPV6 = re.compile(
    "|".join(
        [
            rf"(?:{_H16}:){{7}}{_H16}",
            rf"::(?:{_H16}:){{5}}{_H16}",
            *(rf"(?:(?:{_H16}:){{0,{left - 1}}}{_H16})?::(?:{_H16}:){{{5 - left}}}{_H16}" for left in range(1, 5)),
            rf"(?:(?:{_H16}:){{0,4}}{_H16})?::{_H16}",
            rf"(?:(?:{_H16}:){{0,5}}{_H16})?::",
        ]
    )
)


def parse_request_origin(value: str) -> ParsedOrigin | None:
    """An Origin request header as Fetch defines its values (``origin-or-null``, whatwg/fetch 301650c).

    Stricter than ``parse_origin`` (which reads configured patterns): a browser serializes
    the scheme and host in lower case, never percent-encodes, and writes an IPv6 address
    in its serialized form; any other spelling comes from no browser and is malformed
    (None: a 400). Host labels keep the URL host parser's ``_`` and hyphens, which
    browsers do send. ``null`` is not a tuple origin: callers handle it before parsing.
    """
    m = _ORIGIN.fullmatch(value)
    if m is None:
        return None
    scheme, host, port_text = m.groups()
    if scheme != scheme.lower() or host != host.lower():
        return None
    if host.startswith("[") and _SERIALIZED_IPV6.fullmatch(host, 1, len(host) - 1) is None:
        return None
    return _normalized(scheme, host, port_text)


def ipv4_literal(host: str) -> ipaddress.IPv4Address | None:
    """The host as an IPv4 address when it is strict dotted-decimal (``ipv4_int``), else None."""
    value = ipv4_int(host)
    return None if value is None else ipaddress.IPv4Address(value)


@dataclass(frozen=True, slots=True)
class WildcardPattern:
    """``scheme://*.suffix[:port]``: one or more labels in front of ``.suffix``."""

    text: str
    scheme: str
    suffix: str  # starts with "."
    port: int | None


class PatternError(ValueError):
    """An allow_origins entry that is not a valid origin pattern; ``fix``: how to write it, when that can be told."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix


def parse_pattern(text: str) -> str | WildcardPattern:
    """Parse one allow_origins entry into a normalized exact origin or a wildcard.

    Returns ``*`` or ``null`` unchanged. Raises PatternError with a message
    that says how to write the pattern correctly.
    """
    if text in (ANY_ORIGIN, NULL_ORIGIN):
        return text
    several = [part.strip() for part in text.split(",") if part.strip()]
    if len(several) > 1:
        raise PatternError(f"{text!r} holds {len(several)} origins separated by commas; each list item is one origin",
                           f"one item per origin: [{', '.join(several)}]")  # fmt: skip
    if "://" not in text:
        raise PatternError(f"{text!r} needs a scheme", f"use 'https://{text}'" if text else None)
    scheme, _, rest = text.partition("://")
    if "/" in rest or "?" in rest or "#" in rest:
        host = rest.split("/")[0].split("?")[0].split("#")[0]
        raise PatternError(f"{text!r} must be scheme://host[:port], without path or trailing slash",
                           f"use '{scheme}://{host}'" if host else None)  # fmt: skip
    if "*" in rest:
        if not rest.startswith("*.") or "*" in rest[2:]:
            raise PatternError(f"{text!r}: a wildcard must be the whole first label",
                               f"write '*.' then the domain, e.g. '{scheme}://*.example.com'")  # fmt: skip
        base = parse_origin(f"{scheme}://{rest[2:]}")
        if base is None or base.host.startswith("[") or ipv4_literal(base.host) is not None:
            raise PatternError(f"{text!r}: the part after '*.' must be a domain name",
                               "list IP-literal origins one by one")  # fmt: skip
        return WildcardPattern(text, base.scheme, "." + base.host, base.port)
    parsed = parse_origin(text)
    if parsed is None:
        raise PatternError(f"{text!r} is not a valid origin (scheme://host[:port])",
                           "write it as a browser sends it, e.g. 'https://app.example.com:8443'")  # fmt: skip
    return parsed.serialize()


def ipv4_int(host: str) -> int | None:
    """The host as a 32-bit int when it is strict dotted-decimal, else None: the one IPv4 parser.

    Four decimal octets of at most 255, no leading zeros, no hex or short forms
    (browsers never serialize an origin host that way), by arithmetic: the
    development check runs on every cache miss.
    """
    parts = host.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not (0 < len(part) <= 3 and part.isdigit() and part.isascii()) or (part[0] == "0" and len(part) > 1):
            return None
        octet = int(part)
        if octet > 255:
            return None
        value = value << 8 | octet
    return value


@dataclass(frozen=True, slots=True)
class DevelopmentOrigins:
    """Loopback and private-network origins allowed outside production.

    The CIDRs are indexed by prefix length (network address -> the first
    configured CIDR with it), so a check costs one mask and one dict lookup per
    distinct prefix length, whatever the number of CIDRs; among CIDRs that
    contain the address the first configured one names the rule, as a scan in
    order would.
    """

    cidrs: tuple[ipaddress.IPv4Network, ...]
    _by_length: tuple[tuple[int, dict[int, int]], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[int, dict[int, int]] = {}
        for position, network in enumerate(self.cidrs):
            index.setdefault(int(network.netmask), {}).setdefault(int(network.network_address), position)
        object.__setattr__(self, "_by_length", tuple(index.items()))

    def matches(self, origin: ParsedOrigin) -> str | None:
        if origin.scheme not in ("http", "https"):
            return None
        host = origin.host
        if host == "localhost" or host == _LOOPBACK_V6:
            return f"development: loopback {host}"
        address = ipv4_int(host)
        if address is None:
            return None
        if address >> 24 == 127:
            return "development: loopback 127.0.0.0/8"
        first = None
        for mask, networks in self._by_length:
            position = networks.get(address & mask)
            if position is not None and (first is None or position < first):
                first = position
        return None if first is None else f"development: private network {self.cidrs[first]}"


class _RegexSet:
    """Every allow_origin_regex of a route in one RE2 set, matched in one pass.

    RE2 runs one DFA over the origin for all patterns and reports which ones
    match the whole of it; the first configured one names the rule. The set
    has no NFA to fall back on: RE2 refuses to compile it when its DFA would
    lack memory, and a sentinel pattern (a NUL byte, which no parsed origin
    contains) is probed once to prove the compiled set answers. If either
    fails, the matcher tries the regexes in turn (the same answers, slower).
    """

    __slots__ = ("_sentinel", "_set")

    # Room for the DFA of a few thousand patterns; RE2 allocates it as states are built.
    MAX_MEMORY = 64 << 20

    def __init__(self, patterns: tuple[str, ...]) -> None:
        options = re2.Options()
        options.log_errors = False
        options.max_mem = self.MAX_MEMORY
        regex_set = re2.Set.FullMatchSet(options)
        for pattern in patterns:
            regex_set.Add(pattern)
        self._sentinel = regex_set.Add(r"\x00")
        regex_set.Compile()
        self._set = regex_set

    def usable(self) -> bool:
        return self._sentinel in (self._set.Match("\x00") or ())

    def first_match(self, text: str) -> int | None:
        matches = self._set.Match(text)
        return min(matches) if matches else None


@dataclass(frozen=True, slots=True)
class OriginMatcher:
    """The compiled origin rules of one route; immutable and shared across requests.

    A decision costs the same with one rule or twenty thousand: exact origins
    are a set lookup; wildcards are indexed by their domain, so an origin
    costs one dict lookup per label of its host (``a.b.example.com`` looks up
    ``.b.example.com``, ``.example.com`` and ``.com``); the regexes run as
    one RE2 set. When several rules of a kind match, the first configured one
    names the rule (what a scan in order would report).
    """

    allow_any: bool
    exact: frozenset[str]
    wildcards: tuple[WildcardPattern, ...]
    regexes: tuple[tuple[str, Regex], ...]
    development: DevelopmentOrigins | None
    # a matcher with the very same regexes (routes inheriting them): its RE2 set is shared, not built again
    shares_regexes_with: InitVar[OriginMatcher | None] = None
    # domain suffix ("." + domain) -> (scheme, port) -> position of the first wildcard with them
    _wildcard_index: dict[str, dict[tuple[str, int | None], int]] = field(init=False, repr=False, compare=False)
    _regex_set: _RegexSet | None = field(init=False, repr=False, compare=False)

    def __post_init__(self, shares_regexes_with: OriginMatcher | None) -> None:
        index: dict[str, dict[tuple[str, int | None], int]] = {}
        for position, wildcard in enumerate(self.wildcards):
            index.setdefault(wildcard.suffix, {}).setdefault((wildcard.scheme, wildcard.port), position)
        object.__setattr__(self, "_wildcard_index", index)
        regex_set = None
        if shares_regexes_with is not None and shares_regexes_with.regexes is self.regexes:
            regex_set = shares_regexes_with._regex_set
        elif self.regexes:
            try:
                regex_set = _RegexSet(tuple(text for text, _ in self.regexes))
            except re2.error:
                regex_set = None
            if regex_set is not None and not regex_set.usable():
                regex_set = None
        object.__setattr__(self, "_regex_set", regex_set)

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
        if self._wildcard_index:
            wildcard = self._first_wildcard(parsed)
            if wildcard is not None:
                return f"wildcard {wildcard.text}"
        if self.regexes:
            text = self._first_regex(normalized)
            if text is not None:
                return f"regex {text}"
        if self.development is not None:
            return self.development.matches(parsed)
        return None

    def _first_wildcard(self, parsed: ParsedOrigin) -> WildcardPattern | None:
        host, index = parsed.host, self._wildcard_index
        kind = (parsed.scheme, parsed.port)
        first = None
        dot = host.find(".")
        while dot > 0:  # a label in front of the suffix: never the apex
            by_kind = index.get(host[dot:])
            if by_kind is not None:
                position = by_kind.get(kind)
                if position is not None and (first is None or position < first):
                    first = position
            dot = host.find(".", dot + 1)
        return None if first is None else self.wildcards[first]

    def _first_regex(self, normalized: str) -> str | None:
        if self._regex_set is not None:
            position = self._regex_set.first_match(normalized)
            return None if position is None else self.regexes[position][0]
        for text, regex in self.regexes:
            if regex.fullmatch(normalized) is not None:
                return text
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
