"""The values a policy writes, each read and judged once where it was written.

An origin list, a regex list, a method or header list is parsed once per
place it is written (the top level, or a route that names its own), with its
findings at that place; a route that inherits a value shares the parsed one
(``config.compile``). Findings that depend on two values together (``*``
origins or exposed headers and credentials, a regex that admits foreign
domains and credentials, the production rules) are judged by ``Judge`` once, at the setting where the
mistake was written, never again for every route that inherits it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..cors.headers import is_token
from ..cors.origins import ANY_ORIGIN, PatternError, Regex, WildcardPattern, compile_regex, parse_pattern
from . import lint
from .errors import Findings

WILDCARD = "*"


@dataclass(frozen=True, slots=True)
class OriginList:
    """One written allow_origins list, parsed and linted once, whichever routes inherit it."""

    setting: str
    empty: bool
    exact: frozenset[str]
    wildcards: tuple[WildcardPattern, ...]
    any_at: str | None  # the setting of its '*' entry


@dataclass(frozen=True, slots=True)
class RegexList:
    """One written allow_origin_regex list, compiled and linted once, whichever routes inherit it."""

    setting: str
    empty: bool
    compiled: tuple[tuple[str, Regex], ...]
    foreign: tuple[tuple[str, str, str], ...]  # (setting, pattern, a foreign origin it admits): '*' in disguise


def origin_list(setting: str, origins: list[str], production: bool, out: Findings) -> OriginList:
    """Parse and lint the entries (what does not depend on credentials or on who inherits them)."""
    exact: set[str] = set()
    wildcards: list[WildcardPattern] = []
    any_at = None
    for i, text in enumerate(origins):
        name = f"{setting}[{i}]"
        try:
            pattern = parse_pattern(text.strip())
        except PatternError as exc:
            out.error(name, "origin_invalid", str(exc), exc.fix)
            continue
        if pattern == ANY_ORIGIN:
            any_at = any_at or name
        elif isinstance(pattern, WildcardPattern):
            wildcards.append(pattern)
            out.add(lint.check_wildcard(name, pattern))
        else:
            exact.add(pattern)
            out.add(lint.check_origin(name, pattern, production))
    return OriginList(setting, not origins, frozenset(exact), tuple(wildcards), any_at)


def regex_list(setting: str, regexes: list[str], out: Findings) -> RegexList:
    """Compile and lint the regexes; which foreign origins each admits is judged per route (credentials)."""
    compiled: list[tuple[str, Regex]] = []
    foreign: list[tuple[str, str, str]] = []
    for i, text in enumerate(regexes):
        name = f"{setting}[{i}]"
        try:
            regex = compile_regex(text)
        except ValueError as exc:
            out.error(name, "regex_invalid", f"does not compile under RE2: {exc}",
                      "escape the character RE2 names, or write the origins in allow_origins")  # fmt: skip
            continue
        compiled.append((text, regex))
        misused = lint.check_regex(name, text)
        if misused is not None:  # misused dots: an error with its own fix; the probe judges the others
            out.add(misused)
            continue
        admitted = lint.foreign_admitted(text, regex)
        if admitted is not None:
            foreign.append((name, text, admitted))
    return RegexList(setting, not regexes, tuple(compiled), tuple(foreign))


class Written(NamedTuple):
    """A route's values, each compiled once where it was written, and which of them the route wrote itself."""

    origins: OriginList
    regexes: RegexList
    methods: tuple[tuple[str, ...], str | None]  # (tokens, the setting of its '*')
    headers: tuple[tuple[str, ...], str | None]
    expose: tuple[tuple[str, ...], str | None]
    credentials: bool
    own: frozenset[str]  # the keys the route sets itself (every key for the top level)


def tokens_list(
    setting: str, values: list[str], lower: bool, out: Findings, keep_wildcard: bool = False
) -> tuple[tuple[str, ...], str | None]:
    """Validate a method or header list; returns (unique tokens in order, the setting of its '*' or None).

    ``keep_wildcard`` leaves '*' among the tokens where it was written (expose_headers is sent as written).
    """
    tokens: list[str] = []
    wildcard = None
    for i, raw in enumerate(values):
        value = raw.strip()
        if value == WILDCARD:
            wildcard = wildcard or f"{setting}[{i}]"
            if keep_wildcard and value not in tokens:
                tokens.append(value)
            continue
        if not is_token(value):
            out.error(f"{setting}[{i}]", "token_invalid", token_message(raw), token_fix(setting, raw))
            continue
        value = value.lower() if lower else value
        if value not in tokens:
            tokens.append(value)
    return tuple(tokens), wildcard


def token_message(raw: str) -> str:
    if "," in raw:
        return f"{raw!r} holds several names separated by commas; each list item is one name"
    return f"{raw!r} is not a valid RFC 9110 token"


def token_fix(setting: str, raw: str) -> str | None:
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if len(parts) > 1 and all(is_token(p) for p in parts):
        return f"one item per name: {setting.rpartition('.')[2]}: [{', '.join(parts)}]"
    return None


class Judge:
    """Emits each finding that depends on a combination of values once, at a setting where it was written.

    A route that inherits both values of a combination ('*' and credentials, a foreign regex and
    credentials) adds nothing: the top level, which has the same two, already said it. A route
    that writes one of them gets the finding at the one it wrote (its origin entry when it wrote
    both), so one mistake is one finding.
    """

    def __init__(self, route: str, production: bool, own: frozenset[str], out: Findings) -> None:
        self.route, self.production, self.own, self.out = route, production, own, out

    def where(self, key: str, entry: str | None) -> str | None:
        """The setting to report at: the entry when the route wrote ``key``, else its allow_credentials."""
        if key in self.own:
            return entry
        return f"{self.route}allow_credentials" if "allow_credentials" in self.own else None

    def inherited(self, key: str, entry: str) -> str:
        return "" if key in self.own else f" (inherited from {entry})"


def judge_origins(judge: Judge, written: Written) -> None:
    """'*' and regexes that admit foreign domains ('*' in disguise): judged by credentials and level."""
    out, top = judge.out, judge.route == ""
    origins, regexes = written.origins, written.regexes
    own_origins, own_regexes = "allow_origins" in judge.own, "allow_origin_regex" in judge.own
    if origins.empty and regexes.empty and (own_origins or own_regexes):
        out.error(
            f"{judge.route}allow_origins",
            "no_origin",
            "no origin can be allowed: allow_origins and allow_origin_regex are both empty",
            "set allow_origins or allow_origin_regex (routes[].enabled: false refuses every preflight on a path)",
        )
    if origins.any_at is not None:
        at = origins.any_at
        if written.credentials and (where := judge.where("allow_origins", at)) is not None:
            out.error(where, "any_origin_with_credentials",
                      f"'*' cannot be used with allow_credentials{judge.inherited('allow_origins', at)}",
                      "list the origins instead")  # fmt: skip
        if top and judge.production:
            out.error(at, "any_origin_in_production", "'*' is not allowed at the top level in production",
                      "list the origins, or name '*' on the route that is a public endpoint")  # fmt: skip
        elif not top and judge.production and own_origins and not written.credentials:
            out.warn(at, "public_route", "'*' makes this route a public endpoint: any site may call it, "
                     "without credentials", "list the origins unless the route is meant to be public")  # fmt: skip
    for name, pattern, admitted in regexes.foreign:
        message = f"'{pattern}' admits origins under domains the policy does not name, e.g. {admitted}"
        fix = "list the origins in allow_origins, or anchor the regex to your own domain"
        if written.credentials and (where := judge.where("allow_origin_regex", name)) is not None:
            out.error(where, "regex_any_host_with_credentials",
                      f"{message}{judge.inherited('allow_origin_regex', name)}: with allow_credentials "
                      "this is '*' with credentials", fix)  # fmt: skip
        elif top and judge.production:
            out.error(name, "regex_any_host_in_production",
                      f"{message}: at the top level in production this is '*'", fix)  # fmt: skip
        elif not top and judge.production and own_regexes:
            out.warn(name, "public_route", f"{message}: like '*', it makes this route a public endpoint, "
                     "without credentials", f"{fix}, unless the route is meant to be public")  # fmt: skip
        elif own_regexes:
            out.warn(name, "regex_any_host", f"{message}: it is judged like '*'", fix)


def judge_tokens(judge: Judge, written: Written) -> None:
    """'*' in expose_headers with credentials: a credentialed browser reads it as a header named '*'.

    '*' in allow_methods and allow_headers is allowed with credentials (the answer echoes the
    request, which a browser reads as names); the exposed headers of an actual response cannot
    echo anything, so a credentialed '*' there would expose nothing while seeming to expose all.
    """
    _, wildcard = written.expose
    if written.credentials and wildcard is not None and (where := judge.where("expose_headers", wildcard)):
        judge.out.error(where, "wildcard_with_credentials",
                        f"'*' in expose_headers is read as a header named '*' when credentials are allowed, "
                        f"so it exposes nothing{judge.inherited('expose_headers', wildcard)}",
                        "list the names to expose")  # fmt: skip
