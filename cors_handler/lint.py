"""The misconfiguration linter: insecure policies are hard to write.

Run by ``compile_policy`` (so at startup, on reload and by ``check``). Each
finding names its setting and ends with a one-line fix. Errors refuse the
policy; warnings are logged and printed.

* A wildcard over a public suffix (``https://*.com``, ``https://*.co.uk``,
  ``https://*.github.io``) lets anyone who registers a name there in: error.
  The list is Mozilla's Public Suffix List, as shipped by the maintained
  ``publicsuffixlist`` package (ICANN and private sections).
* A regex with an unescaped ``.`` meant literally (``app.example.com`` also
  matches ``appxexample.com``), a wildcard with no dot boundary before the
  domain (``.*example\\.com`` matches ``evilexample.com``), or a trailing
  ``.*`` that lets the host go on (``example\\.com.*`` matches
  ``example.com.evil.net``): error, with the corrected pattern.
* ``null`` allowed, ``http://`` origins, loopback or private-network origins
  listed in production, credentials in development: warnings.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import cache

from publicsuffixlist import PublicSuffixList

from .origins import NULL_ORIGIN, WildcardPattern, ipv4_literal, parse_origin

_QUANTIFIERS = "*+?{"


@dataclass(frozen=True, slots=True)
class Finding:
    setting: str
    message: str
    error: bool


@cache
def _public_suffixes() -> PublicSuffixList:
    return PublicSuffixList()


def is_public_suffix(domain: str) -> bool:
    return bool(_public_suffixes().is_public(domain.lower()))


def check_wildcard(setting: str, pattern: WildcardPattern) -> Finding | None:
    domain = pattern.suffix.lstrip(".")
    if not is_public_suffix(domain):
        return None
    return Finding(
        setting,
        f"{pattern.text!r} allows every site registered under the public suffix {domain!r}; "
        f"fix: list your own origins, e.g. '{pattern.scheme}://yourapp.{domain}'",
        True,
    )


def _tokens(pattern: str) -> list[tuple[str, str]]:
    """Split an RE2 pattern into (kind, text) tokens: ``dot`` (a lone ``.``), ``wildcard``
    (``.`` with a quantifier, e.g. ``.*``, ``.+?``, ``.{1,3}``) and ``other`` (escapes,
    character classes, literals, groups). Just enough syntax to find misused dots.
    """
    tokens: list[tuple[str, str]] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "\\":
            tokens.append(("other", pattern[i : i + 2]))
            i += 2
        elif char == "[":
            j = i + 1
            j += pattern[j : j + 1] == "^"
            j += pattern[j : j + 1] == "]"
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            tokens.append(("other", pattern[i : j + 1]))
            i = j + 1
        elif char == "." and i + 1 < n and pattern[i + 1] in _QUANTIFIERS:
            j = (pattern.find("}", i) + 1 or n) if pattern[i + 1] == "{" else i + 2
            j += pattern[j : j + 1] == "?"
            tokens.append(("wildcard", pattern[i:j]))
            i = j
        else:
            tokens.append(("dot" if char == "." else "other", char))
            i += 1
    return tokens


def check_regex(setting: str, pattern: str) -> Finding | None:
    tokens = _tokens(pattern)
    # the last token that can match host characters (closing '$' and ')' do not)
    last = max((i for i, (_, text) in enumerate(tokens) if text not in ("$", ")")), default=-1)
    problems: dict[str, None] = {}
    fixed: list[str] = []
    for i, (kind, text) in enumerate(tokens):
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "dot":
            problems["an unescaped '.' matches any character (appxexample.com)"] = None
            fixed.append("\\.")
        elif kind == "wildcard" and i == last:
            problems[f"the trailing {text!r} lets the host continue (example.com.evil.net)"] = None
            fixed.append("(:[0-9]+)?")
        elif kind == "wildcard" and following[:1].isalnum():
            problems[f"{text!r} has no dot boundary before the domain (evilexample.com)"] = None
            fixed.append("([a-z0-9-]+\\.)*")
        else:
            fixed.append(text)
    if not problems:
        return None
    return Finding(setting, f"'{pattern}': {'; '.join(problems)}; fix: '{''.join(fixed)}'", True)


def _is_local_or_private(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    if host.startswith("["):
        try:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
    else:
        v4 = ipv4_literal(host)
        if v4 is None:
            return False
        address = v4
    return address.is_private or address.is_loopback or address.is_link_local


def check_origin(setting: str, origin: str, production: bool) -> Finding | None:
    """Warnings for one exact origin entry (already validated)."""
    if origin == NULL_ORIGIN:
        return Finding(
            setting,
            "'null' is sent by sandboxed iframes, data: URLs and local files, so any site can produce it; "
            "fix: remove 'null' and serve the page from a real origin",
            False,
        )
    parsed = parse_origin(origin)
    if parsed is None or not production:
        return None
    if _is_local_or_private(parsed.host):
        return Finding(
            setting,
            f"{origin!r} is a loopback or private-network origin in production; "
            "fix: remove it (staging/development allow these through dev_private_cidrs)",
            False,
        )
    if parsed.scheme == "http":
        return Finding(
            setting,
            f"{origin!r} is plain http in production: anyone on the network path can act as it; "
            f"fix: use 'https://{origin.partition('://')[2]}'",
            False,
        )
    return None


def check_credentials_in_development(setting: str) -> Finding:
    return Finding(
        setting,
        "credentials are allowed while development mode also allows localhost and private networks; "
        "fix: set allow_credentials only where the origins are fully trusted, or use environment: production",
        False,
    )
