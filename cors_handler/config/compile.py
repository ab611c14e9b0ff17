"""Validate settings and compile them into the immutable model of ``cors.model``.

Compilation happens once per (re)load, never per request: origin lists
become an ``OriginMatcher`` (exact origins, indexed wildcards, one RE2 set),
method and header lists become tuples and sets, routes one ``RouteTable``.
Every problem is collected (not just the first) and reported with the name
of the setting that caused it, in the one error model of ``config.errors``,
so one `cors-handler check` run shows an operator everything to fix.
``build`` runs every stage from the sources; ``compile_settings`` compiles
settings already gathered.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..cors.headers import is_token
from ..cors.model import (
    DEFAULT_ROUTE,
    DEVELOPMENT,
    PRODUCTION,
    STAGING,
    Policy,
    RateLimitPolicy,
    RoutePolicy,
    RouteTable,
)
from ..cors.origins import (
    ANY_ORIGIN,
    DevelopmentOrigins,
    OriginMatcher,
    PatternError,
    Regex,
    WildcardPattern,
    compile_regex,
    parse_pattern,
)
from . import lint
from .errors import Finding, Findings
from .settings import Settings, load

ENVIRONMENT_ALIASES = {
    "production": PRODUCTION,
    "prod": PRODUCTION,
    "staging": STAGING,
    "uat": STAGING,
    "development": DEVELOPMENT,
    "dev": DEVELOPMENT,
}
MAX_AGE_BROWSER_CAP = 86400
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("json", "console")
WILDCARD = "*"


def normalize_environment(value: str) -> tuple[str, Finding | None]:
    """Map a configured environment to its canonical name; unknown -> production, with a warning."""
    key = value.strip().lower()
    if not key:
        return PRODUCTION, None
    if key in ENVIRONMENT_ALIASES:
        return ENVIRONMENT_ALIASES[key], None
    return PRODUCTION, lint.warning(
        "environment",
        "environment_unknown",
        f"unrecognised value {value!r}; running as production (fail-safe)",
        "use production, staging or development",
    )


@dataclass(frozen=True, slots=True)
class _OriginList:
    """One written allow_origins list, parsed and linted once, whichever routes inherit it."""

    setting: str
    empty: bool
    exact: frozenset[str]
    wildcards: tuple[WildcardPattern, ...]
    any_at: str | None  # the setting of its '*' entry


@dataclass(frozen=True, slots=True)
class _RegexList:
    """One written allow_origin_regex list, compiled and linted once, whichever routes inherit it."""

    setting: str
    empty: bool
    compiled: tuple[tuple[str, Regex], ...]
    foreign: tuple[tuple[str, str, str], ...]  # (setting, pattern, a foreign origin it admits): '*' in disguise


def _origin_list(setting: str, origins: list[str], production: bool, out: Findings) -> _OriginList:
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
    return _OriginList(setting, not origins, frozenset(exact), tuple(wildcards), any_at)


def _regex_list(setting: str, regexes: list[str], out: Findings) -> _RegexList:
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
    return _RegexList(setting, not regexes, tuple(compiled), tuple(foreign))


class _Written(NamedTuple):
    """A route's values, each compiled once where it was written, and which of them the route wrote itself."""

    origins: _OriginList
    regexes: _RegexList
    methods: tuple[tuple[str, ...], str | None]  # (tokens, the setting of its '*')
    headers: tuple[tuple[str, ...], str | None]
    expose: tuple[tuple[str, ...], str | None]
    credentials: bool
    own: frozenset[str]  # the keys the route sets itself (every key for the top level)


def _tokens_list(setting: str, values: list[str], lower: bool, out: Findings) -> tuple[tuple[str, ...], str | None]:
    """Validate a method or header list; returns (unique tokens in order, the setting of its '*' or None)."""
    tokens: list[str] = []
    wildcard = None
    for i, raw in enumerate(values):
        value = raw.strip()
        if value == WILDCARD:
            wildcard = wildcard or f"{setting}[{i}]"
            continue
        if not is_token(value):
            out.error(f"{setting}[{i}]", "token_invalid", _token_message(raw), _token_fix(setting, raw))
            continue
        value = value.lower() if lower else value
        if value not in tokens:
            tokens.append(value)
    return tuple(tokens), wildcard


def _token_message(raw: str) -> str:
    if "," in raw:
        return f"{raw!r} holds several names separated by commas; each list item is one name"
    return f"{raw!r} is not a valid RFC 9110 token"


def _token_fix(setting: str, raw: str) -> str | None:
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if len(parts) > 1 and all(is_token(p) for p in parts):
        return f"one item per name: {setting.rpartition('.')[2]}: [{', '.join(parts)}]"
    return None


class _Judge:
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


def _judge_origins(judge: _Judge, written: _Written) -> None:
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
        elif own_regexes:
            out.warn(name, "regex_any_host", f"{message}: it is judged like '*'", fix)


def _judge_tokens(judge: _Judge, written: _Written) -> None:
    if not written.credentials:
        return
    for key, (_, wildcard) in (("allow_methods", written.methods), ("allow_headers", written.headers),
                               ("expose_headers", written.expose)):  # fmt: skip
        if wildcard is not None and (where := judge.where(key, wildcard)) is not None:
            judge.out.error(where, "wildcard_with_credentials",
                            f"'*' cannot be used with allow_credentials{judge.inherited(key, wildcard)}",
                            "list the names instead")  # fmt: skip


def _compile_route(
    name: str,
    prefix: str,
    setting: str,
    written: _Written,
    values: dict[str, Any],
    enabled: bool,
    environment: str,
    matchers: dict[tuple[int, int], OriginMatcher],
    development: DevelopmentOrigins | None,
    out: Findings,
) -> RoutePolicy:
    own = written.own
    credentials = written.credentials
    judge = _Judge(setting, environment == PRODUCTION, own, out)
    if credentials and environment == DEVELOPMENT and "allow_credentials" in own:
        out.add(lint.check_credentials_in_development(f"{setting}allow_credentials"))
    _judge_origins(judge, written)
    _judge_tokens(judge, written)
    methods, any_method = written.methods[0], written.methods[1] is not None
    if any_method and methods and "allow_methods" in own:
        out.error(f"{setting}allow_methods", "method_wildcard_not_alone", "'*' must be the only entry",
                  "remove '*' to list the methods, or keep only '*'")  # fmt: skip
    expose = written.expose[0]
    if written.expose[1] is not None:
        expose = ("*", *expose)
    max_age = values["max_age"]
    if "max_age" in own:
        if max_age < 0:
            out.error(f"{setting}max_age", "max_age_negative", "must be >= 0 seconds", "max_age: 0 (no caching)")
        elif max_age > MAX_AGE_BROWSER_CAP:
            out.warn(
                f"{setting}max_age",
                "max_age_above_browser_cap",
                f"{max_age} is above {MAX_AGE_BROWSER_CAP}: Firefox caps at 86400 s and Chromium at 7200 s",
                f"max_age: {MAX_AGE_BROWSER_CAP}",
            )
    # One matcher per pair of written lists: routes that inherit both share the top level's (and its RE2 set).
    key = (id(written.origins), id(written.regexes))
    origins = matchers.get(key)
    if origins is None:
        base = next((m for (_, r), m in matchers.items() if r == key[1]), None)
        origins = OriginMatcher(
            written.origins.any_at is not None,
            written.origins.exact,
            written.origins.wildcards,
            written.regexes.compiled,
            development,
            base,
        )
        matchers[key] = origins
    return RoutePolicy(
        name=name,
        path_prefix=prefix,
        enabled=enabled,
        origins=origins,
        methods=methods,
        any_method=any_method,
        headers=written.headers[0],
        any_header=written.headers[1] is not None,
        expose_headers=expose,
        allow_credentials=credentials,
        max_age=max_age,
        allow_private_network=bool(values["allow_private_network"]),
    )


_ROUTE_KEYS = (
    "allow_origins",
    "allow_origin_regex",
    "allow_methods",
    "allow_headers",
    "expose_headers",
    "allow_credentials",
    "max_age",
    "allow_private_network",
)


def _normalize_prefix(prefix: str) -> str:
    return prefix.rstrip("/") or "/"


def _written(
    setting: str, values: dict[str, Any], own: frozenset[str], top: _Written | None, production: bool, out: Findings
) -> _Written:
    """Compile the lists the route (or the top level, ``top`` None) writes itself; take the top level's otherwise."""

    def tokens(key: str, lower: bool) -> tuple[tuple[str, ...], str | None]:
        return _tokens_list(f"{setting}{key}", values[key], lower, out)

    origins = values["allow_origins"]
    regexes = values["allow_origin_regex"]
    return _Written(
        origins=_origin_list(f"{setting}allow_origins", origins, production, out)
        if top is None or "allow_origins" in own
        else top.origins,
        regexes=_regex_list(f"{setting}allow_origin_regex", regexes, out)
        if top is None or "allow_origin_regex" in own
        else top.regexes,
        methods=tokens("allow_methods", False) if top is None or "allow_methods" in own else top.methods,
        headers=tokens("allow_headers", True) if top is None or "allow_headers" in own else top.headers,
        expose=tokens("expose_headers", False) if top is None or "expose_headers" in own else top.expose,
        credentials=bool(values["allow_credentials"]),
        own=own,
    )


_KEY_ORDER = ("name", "path_prefix", *_ROUTE_KEYS)
_SETTING = re.compile(r"(?:routes\[[0-9]+\]\.)?([a-z_]+)(?:\[([0-9]+)\])?")


def _in_written_order(found: Findings) -> list[Finding]:
    """One route's findings in the order of its keys and list entries (a judgement comes after its entry's syntax)."""

    def position(finding: Finding) -> tuple[int, int]:
        m = _SETTING.fullmatch(finding.setting)
        if m is None or m.group(1) not in _KEY_ORDER:
            return len(_KEY_ORDER), 0
        return _KEY_ORDER.index(m.group(1)), int(m.group(2) or 0)

    return sorted(found, key=position)


def _compile_overrides(
    settings: Settings,
    top: dict[str, Any],
    top_written: _Written,
    environment: str,
    matchers: dict[tuple[int, int], OriginMatcher],
    development: DevelopmentOrigins | None,
    out: Findings,
) -> tuple[RoutePolicy, ...]:
    routes: list[RoutePolicy] = []
    names: set[str] = {DEFAULT_ROUTE}
    prefixes: set[str] = set()
    for i, route in enumerate(settings.routes):
        setting = f"routes[{i}]."
        prefix = _normalize_prefix(route.path_prefix.strip())
        if not prefix.startswith("/") or any(c in prefix for c in "?# \t"):
            out.error(f"{setting}path_prefix", "path_prefix_invalid",
                      f"{route.path_prefix!r} must be a path starting with '/'",
                      f"path_prefix: /{prefix.strip('/')}" if prefix.strip("/") and not any(
                          c in prefix for c in "?# \t") else None)  # fmt: skip
        elif prefix in prefixes:
            out.error(f"{setting}path_prefix", "path_prefix_duplicate", f"{prefix!r} is used by another route",
                      "merge the two routes, or give one another path_prefix")  # fmt: skip
        prefixes.add(prefix)
        # A route without a name is named after its prefix (the metrics' route label, bounded like the routes).
        name = prefix if route.name is None else route.name
        if not name.strip():
            out.error(f"{setting}name", "route_name_empty", "route name is empty",
                      "give it a name, or leave name out to use the path prefix")  # fmt: skip
        elif name in names:
            out.error(f"{setting}name", "route_name_duplicate", f"route name {name!r} is already used",
                      "names must be unique and not 'default'")  # fmt: skip
        names.add(name)
        own = frozenset(key for key in _ROUTE_KEYS if getattr(route, key) is not None)
        values = {key: getattr(route, key) if key in own else top[key] for key in _ROUTE_KEYS}
        found = Findings()
        written = _written(setting, values, own, top_written, environment == PRODUCTION, found)
        routes.append(_compile_route(name, prefix, setting, written, values, route.enabled, environment, matchers,
                                     development, found))  # fmt: skip
        out.extend(_in_written_order(found))
    return tuple(routes)


def _compile_networks(
    setting: str, values: list[str], out: Findings, ipv4_only: bool
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for i, text in enumerate(values):
        try:
            network = ipaddress.ip_network(text.strip())
        except ValueError as exc:
            out.error(f"{setting}[{i}]", "cidr_invalid", f"{text!r} is not a CIDR ({exc})")
            continue
        if ipv4_only and network.version != 4:
            out.error(f"{setting}[{i}]", "cidr_not_ipv4", f"{text!r}: only IPv4 CIDRs are supported here")
            continue
        networks.append(network)
    return networks


def _check_ranges(settings: Settings, out: Findings) -> None:
    rl = settings.rate_limit
    for name, value, minimum in (
        ("rate_limit.average", rl.average, 1),
        ("rate_limit.burst", rl.burst, 1),
        ("rate_limit.depth", rl.depth, 0),
        ("rate_limit.max_clients", rl.max_clients, 1),
        ("cache_size", settings.cache_size, 1),
    ):
        if value < minimum:
            out.error(name, "out_of_range", f"must be >= {minimum}")
    if rl.period <= 0:
        out.error("rate_limit.period", "out_of_range", "must be > 0 seconds")
    if settings.shutdown_delay < 0:
        out.error("shutdown_delay", "out_of_range", "must be >= 0 seconds")
    if settings.client_timeout <= 0:
        out.error("client_timeout", "out_of_range", "must be > 0 seconds")
    if settings.keep_alive_timeout <= 0:
        out.error("keep_alive_timeout", "out_of_range", "must be > 0 seconds")
    if settings.log_level.lower() not in LOG_LEVELS:
        out.error("log_level", "invalid_choice", f"must be one of {', '.join(LOG_LEVELS)}")
    if settings.log_format.lower() not in LOG_FORMATS:
        out.error("log_format", "invalid_choice", f"must be one of {', '.join(LOG_FORMATS)}")


class Compiled(NamedTuple):
    """A compiled policy and the warnings of every stage that built it (logged at startup and reload)."""

    policy: Policy
    warnings: tuple[Finding, ...]


def _compile(settings: Settings, out: Findings) -> Policy:
    """Validate and compile ``settings``, every finding into ``out``; the result is only valid without errors."""
    environment, env_warning = normalize_environment(settings.environment)
    out.add(env_warning)
    dev_cidrs = tuple(
        n
        for n in _compile_networks("dev_private_cidrs", settings.dev_private_cidrs, out, True)
        if isinstance(n, ipaddress.IPv4Network)
    )
    top = {key: getattr(settings, key) for key in _ROUTE_KEYS}
    development = DevelopmentOrigins(dev_cidrs) if environment != PRODUCTION else None
    matchers: dict[tuple[int, int], OriginMatcher] = {}
    found = Findings()
    written = _written("", top, frozenset(_ROUTE_KEYS), None, environment == PRODUCTION, found)
    default = _compile_route(DEFAULT_ROUTE, "/", "", written, top, True, environment, matchers, development, found)
    out.extend(_in_written_order(found))
    routes = _compile_overrides(settings, top, written, environment, matchers, development, out)
    excluded = _compile_networks("rate_limit.excluded_ips", settings.rate_limit.excluded_ips, out, False)
    _check_ranges(settings, out)
    if settings.debug and environment == PRODUCTION:
        out.warn(
            "debug",
            "debug_in_production",
            "debug is on in production: 403 bodies disclose the allowed origins, methods and headers",
            "set debug: false",
        )
    rl = settings.rate_limit
    digest = hashlib.sha256(f"{environment}\n{settings.fingerprint()}".encode()).hexdigest()
    return Policy(
        environment=environment,
        version=digest[:12],
        table=RouteTable(default, ((route.path_prefix, route) for route in routes)),
        security_headers=settings.security_headers,
        debug=settings.debug,
        rate_limit=RateLimitPolicy(
            enabled=rl.enabled,
            average=rl.average,
            period=rl.period,
            burst=rl.burst,
            depth=rl.depth,
            excluded=tuple(excluded),
            max_clients=rl.max_clients,
        ),
        cache_size=settings.cache_size,
        log_level=settings.log_level.lower(),
        log_format=settings.log_format.lower(),
        shutdown_delay=settings.shutdown_delay,
        client_timeout=settings.client_timeout,
        keep_alive_timeout=settings.keep_alive_timeout,
        dev_cidrs=dev_cidrs,
    )


def _builtin_origin(settings: Settings, out: Findings) -> None:
    """The example origin is in force only in a configuration that is accepted: say so only then."""
    if settings.uses_builtin_origins() and not out.has_errors:
        out.warn(
            "allow_origins",
            "builtin_origin",
            "the built-in example origin https://app.example.com is in use",
            "set allow_origins for your site",
        )


def compile_settings(settings: Settings) -> Compiled:
    """Validate ``settings`` and compile them; raises ConfigError listing every finding."""
    out = Findings()
    policy = _compile(settings, out)
    _builtin_origin(settings, out)
    out.raise_if_errors()
    return Compiled(policy, out.warnings)


def _within(setting: str, paths: frozenset[str]) -> bool:
    return any(setting == p or setting.startswith((f"{p}.", f"{p}[")) for p in paths)


def build(overrides: Mapping[str, Any], policy_data: bytes | None = None) -> Compiled:
    """Every stage, from the sources (flags as ``overrides``, environment, file) to the compiled policy.

    Raises ConfigError carrying every finding of every stage; else the policy and
    the warnings. A value the settings stage set aside (a wrong type, bad JSON in
    its variable) is compiled as its default, and what the policy stage says
    about that default is left out: the finding that matters is the first one.
    ``policy_data`` is the policy file's content when the caller has read it.
    """
    out = Findings()
    loaded = load(overrides, out, policy_data)
    compiled = Findings()
    policy = _compile(loaded.settings, compiled)
    if "settings" not in loaded.set_aside:  # nothing validated: the defaults were compiled, say nothing of them
        out.extend(f for f in compiled if not _within(f.setting, loaded.set_aside))
    _builtin_origin(loaded.settings, out)
    out.raise_if_errors()
    return Compiled(policy, out.warnings)


def build_policy(overrides: Mapping[str, Any], policy_data: bytes | None = None) -> Policy:
    """``build`` without the warnings."""
    return build(overrides, policy_data).policy
