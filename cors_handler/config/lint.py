"""The misconfiguration linter: insecure policies are hard to write.

Run by ``config.compile`` (so at startup, on reload and by ``check``). Each
finding (``errors.Finding``) names its setting and a stable code, and carries a fix. Errors refuse the
policy; warnings are logged and printed.

* A wildcard over a public suffix (``https://*.com``, ``https://*.co.uk``,
  ``https://*.github.io``) lets anyone who registers a name there in: error.
  The list is Mozilla's Public Suffix List, as shipped by the maintained
  ``publicsuffixlist`` package (ICANN and private sections).
* A regex with an unescaped ``.`` meant literally (``app.example.com`` also
  matches ``appxexample.com``), a wildcard with no dot boundary before the
  domain (``.*example\\.com`` matches ``evilexample.com``), or a trailing
  ``.*`` that lets the host go on (``example\\.com.*`` matches
  ``example.com.evil.net``): error. The corrected pattern is printed only
  after it was checked to match every origin the original was meant for
  (``meant_origins``) and none of the foreign probes.
* A regex that admits hosts under domains the policy does not name (random
  hosts under ``.invalid``, registrable look-alikes around each literal domain:
  ``1example.com``, ``evil-example.com``, ``example.com.<random>.invalid``):
  ``*`` in disguise, judged like ``*`` by ``config.compile`` (an error with
  allow_credentials and at the top level in production, a warning elsewhere).
* ``null`` allowed, ``http://`` origins, loopback or private-network origins
  listed in production, credentials in development: warnings.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from functools import cache, lru_cache

from publicsuffixlist import PublicSuffixList

from ..cors.origins import NULL_ORIGIN, Regex, WildcardPattern, compile_regex, ipv4_literal, parse_origin
from .errors import Finding, Severity

_QUANTIFIERS = "*+?{"


def error(setting: str, code: str, message: str, fix: str | None = None) -> Finding:
    return Finding(setting, code, Severity.ERROR, message, fix)


def warning(setting: str, code: str, message: str, fix: str | None = None) -> Finding:
    return Finding(setting, code, Severity.WARNING, message, fix)


@cache
def _public_suffixes() -> PublicSuffixList:
    return PublicSuffixList()


def release_public_suffixes() -> None:
    """Drop the public suffix list until a lint needs it again: ``serve`` calls it once a policy is built.

    Loaded it holds 1.6 MiB for the life of the process, for a check that runs only when a
    policy is built; loading it again costs about 40 ms, per reload (issue 27).
    """
    _public_suffixes.cache_clear()


def is_public_suffix(domain: str) -> bool:
    return bool(_public_suffixes().is_public(domain.lower()))


def check_wildcard(setting: str, pattern: WildcardPattern) -> Finding | None:
    domain = pattern.suffix.lstrip(".")
    if not is_public_suffix(domain):
        return None
    return error(
        setting,
        "wildcard_public_suffix",
        f"{pattern.text!r} allows every site registered under the public suffix {domain!r}",
        "list your own origins instead",
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


_HOST_TEXT = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)+")
_LABEL_TEXT = re.compile(r"[a-z0-9][a-z0-9-]*")


def _literal_text(tokens: list[tuple[str, str]]) -> str:
    """The pattern's literal characters, a NUL where anything else stands (``\\.`` and a lone ``.`` read as dots)."""
    parts = []
    for kind, text in tokens:
        if kind == "dot" or text == "\\.":
            parts.append(".")
        elif kind == "other" and len(text) == 1 and (text.isalnum() or text in "-:/"):
            parts.append(text.lower())
        elif kind == "other" and len(text) == 2 and text[0] == "\\" and text[1] in "-/:":
            parts.append(text[1])
        else:
            parts.append("\0")
    return "".join(parts)


@lru_cache(maxsize=4096)
def named_domain(pattern: str) -> str | None:
    """The host (or domain) a regex is written for: its last literal dotted name, e.g. ``example.com``."""
    literal = _literal_text(_tokens(pattern))
    host_part = literal.rpartition("://")[2] if "://" in literal else literal
    runs = [m.group().strip(".-") for m in _HOST_TEXT.finditer(host_part)]
    runs = [r for r in runs if "." in r]
    return runs[-1] if runs else None


def meant_origins(pattern: str, regex: Regex) -> list[str]:
    """Origins the author evidently meant: those the regex matches under the domain it names.

    Candidates are the named domain itself, one- and two-label subdomains
    (generic labels and the labels written in the pattern), each with http and
    https, with and without a port. An empty list: the intent cannot be told.
    """
    domain = named_domain(pattern)
    if domain is None:
        return []
    literal = _literal_text(_tokens(pattern)).rpartition("://")[2]
    labels = {"app", "api", "www", *(m.group() for m in _LABEL_TEXT.finditer(literal))}
    hosts = [domain, *(f"{label}.{domain}" for label in sorted(labels)), f"a.b.{domain}"]
    candidates = [f"{scheme}://{host}{port}" for scheme in ("https", "http") for host in hosts
                  for port in ("", ":8443")]  # fmt: skip
    return [c for c in candidates if regex.fullmatch(c) is not None]


_HEX_TO_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def _random_label() -> str:
    """Ten random lower-case letters (what any host-matching regex accepts as a label)."""
    return secrets.token_hex(5).translate(_HEX_TO_LETTERS)


def _named_domains(pattern: str) -> list[str]:
    """Every literal dotted name in the regex (``(app|api)\\.example\\.com|b\\.net``: example.com, b.net), in order."""
    literal = _literal_text(_tokens(pattern))
    runs = [m.group().strip(".-") for m in _HOST_TEXT.finditer(literal.replace("://", "\0"))]
    return list(dict.fromkeys(r for r in runs if "." in r))


def _registrable(name: str) -> str:
    """The registrable domain of a name (``app.example.co.uk`` -> ``example.co.uk``), else the name itself."""
    return _public_suffixes().privatesuffix(name) or name


def foreign_origins(pattern: str) -> list[str]:
    """Origins under domains no policy names: random hosts, and look-alikes around each literal domain.

    Random hosts under the reserved ``.invalid``; then, for each literal name in the pattern
    (and its registrable domain), registrable look-alikes a regex may let in: a prefix glued
    to the domain (``1example.com``, ``evilexample.com``, ``evil-example.com``), the host going
    on past it (``example.com.evil.invalid``, ``example.com-evil.invalid``), a dot replaced
    (``appxexample.com``); each with http and https, and with each port the pattern names.
    """
    a, b = _random_label(), _random_label()
    digits = str(secrets.randbelow(9000) + 1000)
    probes = [
        f"https://{a}.invalid", f"http://{a}.invalid", f"https://{a}.{b}.invalid", f"https://{a}.invalid:8443",
        f"http://{b}.{a}.invalid:3000",
    ]  # fmt: skip
    ports = ["", *dict.fromkeys(f":{p}" for p in re.findall(r":([0-9]{1,5})", _literal_text(_tokens(pattern))))]
    for name in _named_domains(pattern):
        hosts = []
        for domain in dict.fromkeys((name, _registrable(name))):
            hosts += [f"{a}{domain}", f"{digits}{domain}", f"{a}-{domain}", f"{domain}.{a}.invalid",
                      f"{domain}-{a}.invalid", f"{domain}{a}.invalid"]  # fmt: skip
        hosts += [name.replace(".", c, 1) for c in "x-"]  # app.example.com -> appxexample.com
        probes += [f"{scheme}://{host}{port}" for host in hosts for scheme in ("https", "http") for port in ports]
    return list(dict.fromkeys(probes))


def foreign_admitted(pattern: str, regex: Regex) -> str | None:
    """A foreign origin (``foreign_origins``) the regex admits, or None: then it is not ``*`` in disguise."""
    return next((origin for origin in foreign_origins(pattern) if regex.fullmatch(origin) is not None), None)


def verified_fix(pattern: str, fixed: str) -> str | None:
    """``fixed`` when it still matches every origin ``pattern`` was meant for and no foreign one, else None.

    The linter prints a pattern only after this check: a fix that matched
    nothing (``https://(:[0-9]+)?`` for ``https://.*``) would be worse than none.
    """
    try:
        original, candidate = compile_regex(pattern), compile_regex(fixed)
    except ValueError:
        return None
    meant = meant_origins(pattern, original)
    if not meant or any(candidate.fullmatch(origin) is None for origin in meant):
        return None
    if any(candidate.fullmatch(origin) is not None for origin in foreign_origins(pattern)):
        return None
    return fixed


def _reaches_registrable_domain(tokens: list[tuple[str, str]]) -> bool:
    """Whether a wildcard before these tokens can run into the registrable domain (``.*example\\.com``).

    The literal name that follows it is that domain itself (or cannot be told):
    then the wildcard can prepend to the domain's own label (evilexample.com).
    A longer name (``.*test\\.example\\.com``) keeps the wildcard inside a
    subdomain label of a fixed domain: no bypass there.
    """
    literal = _literal_text(tokens).partition("\0")[0]
    name = literal.partition(":")[0].strip(".")
    if "." not in name:
        return True
    registrable = _public_suffixes().privatesuffix(name.lower())
    return registrable is None or registrable == name


def check_regex(setting: str, pattern: str) -> Finding | None:
    """Misused dots: an unescaped ``.``, a wildcard before the domain, a trailing wildcard after the host."""
    tokens = _tokens(pattern)
    # the last token that can match host characters (closing '$' and ')' do not)
    last = max((i for i, (_, text) in enumerate(tokens) if text not in ("$", ")")), default=-1)
    problems: dict[str, str] = {}
    fixed: list[str] = []
    for i, (kind, text) in enumerate(tokens):
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        preceding = tokens[i - 1][1] if i > 0 else ""
        if kind == "dot":
            problems["regex_unescaped_dot"] = "an unescaped '.' matches any character (appxexample.com)"
            fixed.append("\\.")
        elif kind == "wildcard" and i == last and (preceding[-1:].isalnum() or preceding in (")", "\\.")):
            # After the host: the host may go on. (A wildcard that *is* the host is probe_regex's business.)
            problems["regex_trailing_wildcard"] = f"the trailing {text!r} lets the host continue (example.com.evil.net)"
            fixed.append("(:[0-9]+)?")
        elif kind == "wildcard" and following[:1].isalnum() and _reaches_registrable_domain(tokens[i + 1 :]):
            problems["regex_no_dot_boundary"] = f"{text!r} has no dot boundary before the domain (evilexample.com)"
            fixed.append("([a-z0-9-]+\\.)*")
        else:
            fixed.append(text)
    if not problems:
        return None
    code = next(iter(problems))
    fix = verified_fix(pattern, "".join(fixed))
    return error(
        setting,
        code,
        f"'{pattern}': {'; '.join(problems.values())}",
        f"use '{fix}'" if fix else "escape literal dots as '\\.' and let only whole labels vary before the domain",
    )


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
        return warning(
            setting,
            "null_origin",
            "'null' is sent by sandboxed iframes, data: URLs and local files, so any site can produce it",
            "remove 'null' and serve the page from a real origin",
        )
    parsed = parse_origin(origin)
    if parsed is None or not production:
        return None
    if _is_local_or_private(parsed.host):
        return warning(
            setting,
            "private_origin_in_production",
            f"{origin!r} is a loopback or private-network origin in production",
            "remove it (staging/development allow these through dev_private_cidrs)",
        )
    if parsed.scheme == "http":
        return warning(
            setting,
            "http_origin_in_production",
            f"{origin!r} is plain http in production: anyone on the network path can act as it",
            f"use 'https://{origin.partition('://')[2]}'",
        )
    return None


def check_credentials_in_development(setting: str) -> Finding:
    return warning(
        setting,
        "credentials_in_development",
        "credentials are allowed while development mode also allows localhost and private networks",
        "set allow_credentials only where the origins are fully trusted, or use environment: production",
    )
