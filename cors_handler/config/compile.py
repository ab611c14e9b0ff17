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
from typing import Any, NamedTuple

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
    DevelopmentOrigins,
    OriginMatcher,
)
from . import lint
from .errors import Finding, Findings
from .settings import Settings, load
from .values import (
    Judge,
    Written,
    judge_origins,
    judge_tokens,
    origin_list,
    regex_list,
    tokens_list,
)

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


def _compile_route(
    name: str,
    prefix: str,
    setting: str,
    written: Written,
    values: dict[str, Any],
    enabled: bool,
    environment: str,
    matchers: dict[tuple[int, int], OriginMatcher],
    development: DevelopmentOrigins | None,
    out: Findings,
) -> RoutePolicy:
    own = written.own
    credentials = written.credentials
    judge = Judge(setting, environment == PRODUCTION, own, out)
    if credentials and environment == DEVELOPMENT and "allow_credentials" in own:
        out.add(lint.check_credentials_in_development(f"{setting}allow_credentials"))
    judge_origins(judge, written)
    judge_tokens(judge, written)
    methods, any_method = written.methods[0], written.methods[1] is not None
    if any_method and methods and "allow_methods" in own:
        out.error(f"{setting}allow_methods", "method_wildcard_not_alone", "'*' must be the only entry",
                  "remove '*' to list the methods, or keep only '*'")  # fmt: skip
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
        expose_headers=written.expose[0],
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
    setting: str, values: dict[str, Any], own: frozenset[str], top: Written | None, production: bool, out: Findings
) -> Written:
    """Compile the lists the route (or the top level, ``top`` None) writes itself; take the top level's otherwise."""

    def tokens(key: str, lower: bool) -> tuple[tuple[str, ...], str | None]:
        return tokens_list(f"{setting}{key}", values[key], lower, out, keep_wildcard=key == "expose_headers")

    origins = values["allow_origins"]
    regexes = values["allow_origin_regex"]
    return Written(
        origins=origin_list(f"{setting}allow_origins", origins, production, out)
        if top is None or "allow_origins" in own
        else top.origins,
        regexes=regex_list(f"{setting}allow_origin_regex", regexes, out)
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
    top_written: Written,
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
