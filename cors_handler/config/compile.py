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
from collections.abc import Mapping
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
from .settings import RouteSettings, Settings, load

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


def _compile_origins(
    setting: str,
    origins: list[str],
    regexes: list[str],
    credentials: bool,
    environment: str,
    dev_cidrs: tuple[ipaddress.IPv4Network, ...],
    out: Findings,
) -> OriginMatcher:
    exact: set[str] = set()
    wildcards: list[WildcardPattern] = []
    allow_any = False
    if not origins and not regexes:
        out.error(
            f"{setting}allow_origins",
            "no_origin",
            "no origin can be allowed: allow_origins and allow_origin_regex are both empty",
            "set allow_origins or allow_origin_regex (routes[].enabled: false refuses every preflight on a path)",
        )
    for i, text in enumerate(origins):
        name = f"{setting}allow_origins[{i}]"
        try:
            pattern = parse_pattern(text.strip())
        except PatternError as exc:
            out.error(name, "origin_invalid", str(exc))
            continue
        if pattern == ANY_ORIGIN:
            allow_any = True
            if credentials:
                out.error(name, "any_origin_with_credentials", "'*' cannot be used with allow_credentials",
                          "list the origins instead")  # fmt: skip
            if environment == PRODUCTION:
                out.error(name, "any_origin_in_production", "'*' is not allowed in production",
                          "list the origins instead")  # fmt: skip
        elif isinstance(pattern, WildcardPattern):
            wildcards.append(pattern)
            out.add(lint.check_wildcard(name, pattern))
        else:
            exact.add(pattern)
            out.add(lint.check_origin(name, pattern, environment == PRODUCTION))
    compiled: list[tuple[str, Regex]] = []
    for i, text in enumerate(regexes):
        name = f"{setting}allow_origin_regex[{i}]"
        try:
            compiled.append((text, compile_regex(text)))
        except ValueError as exc:
            out.error(name, "regex_invalid", f"does not compile under RE2: {exc}")
            continue
        misused = lint.check_regex(name, text)
        # a regex with misused dots has its own error (and fix); the probe judges the others
        out.add(misused or lint.probe_regex(name, text, compiled[-1][1], credentials))
    development = DevelopmentOrigins(dev_cidrs) if environment != PRODUCTION else None
    return OriginMatcher(allow_any, frozenset(exact), tuple(wildcards), tuple(compiled), development)


def _compile_tokens(
    setting: str, values: list[str], credentials: bool, lower: bool, out: Findings
) -> tuple[tuple[str, ...], bool]:
    """Validate a method or header list; returns (unique tokens in order, wildcard given)."""
    tokens: list[str] = []
    wildcard = False
    for i, raw in enumerate(values):
        value = raw.strip()
        if value == WILDCARD:
            wildcard = True
            if credentials:
                out.error(f"{setting}[{i}]", "wildcard_with_credentials", "'*' cannot be used with allow_credentials",
                          "list the names instead")  # fmt: skip
            continue
        if not is_token(value):
            out.error(f"{setting}[{i}]", "token_invalid", f"{raw!r} is not a valid RFC 9110 token")
            continue
        value = value.lower() if lower else value
        if value not in tokens:
            tokens.append(value)
    return tuple(tokens), wildcard


def _compile_route(
    name: str,
    prefix: str,
    setting: str,
    values: dict[str, Any],
    enabled: bool,
    environment: str,
    dev_cidrs: tuple[ipaddress.IPv4Network, ...],
    out: Findings,
) -> RoutePolicy:
    credentials = bool(values["allow_credentials"])
    if credentials and environment == DEVELOPMENT:
        out.add(lint.check_credentials_in_development(f"{setting}allow_credentials"))
    origins = _compile_origins(
        setting,
        values["allow_origins"],
        values["allow_origin_regex"],
        credentials,
        environment,
        dev_cidrs,
        out,
    )
    methods, any_method = _compile_tokens(f"{setting}allow_methods", values["allow_methods"], credentials, False, out)
    if any_method and methods:
        out.error(f"{setting}allow_methods", "method_wildcard_not_alone", "'*' must be the only entry")
    headers, any_header = _compile_tokens(f"{setting}allow_headers", values["allow_headers"], credentials, True, out)
    expose, any_expose = _compile_tokens(f"{setting}expose_headers", values["expose_headers"], credentials, False, out)
    if any_expose:
        expose = ("*", *expose)
    max_age = values["max_age"]
    if max_age < 0:
        out.error(f"{setting}max_age", "max_age_negative", "must be >= 0 seconds")
    elif max_age > MAX_AGE_BROWSER_CAP:
        out.warn(
            f"{setting}max_age",
            "max_age_above_browser_cap",
            f"{max_age} is above {MAX_AGE_BROWSER_CAP}: Firefox caps at 86400 s and Chromium at 7200 s",
        )
    return RoutePolicy(
        name=name,
        path_prefix=prefix,
        enabled=enabled,
        origins=origins,
        methods=methods,
        any_method=any_method,
        headers=headers,
        any_header=any_header,
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


def _compile_overrides(
    settings: Settings,
    top: dict[str, Any],
    environment: str,
    dev_cidrs: tuple[ipaddress.IPv4Network, ...],
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
                      f"{route.path_prefix!r} must be a path starting with '/'")  # fmt: skip
        elif prefix in prefixes:
            out.error(f"{setting}path_prefix", "path_prefix_duplicate", f"{prefix!r} is used by another route")
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
        values = _inherit(route, top)
        routes.append(_compile_route(name, prefix, setting, values, route.enabled, environment, dev_cidrs, out))
    return tuple(routes)


def _inherit(route: RouteSettings, top: dict[str, Any]) -> dict[str, Any]:
    own = {key: getattr(route, key) for key in _ROUTE_KEYS}
    return {key: top[key] if own[key] is None else own[key] for key in _ROUTE_KEYS}


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
    default = _compile_route(DEFAULT_ROUTE, "/", "", top, True, environment, dev_cidrs, out)
    routes = _compile_overrides(settings, top, environment, dev_cidrs, out)
    excluded = _compile_networks("rate_limit.excluded_ips", settings.rate_limit.excluded_ips, out, False)
    _check_ranges(settings, out)
    if settings.uses_builtin_origins():
        out.warn(
            "allow_origins",
            "builtin_origin",
            "the built-in example origin https://app.example.com is in use",
            "set allow_origins for your site",
        )
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


def compile_settings(settings: Settings) -> Compiled:
    """Validate ``settings`` and compile them; raises ConfigError listing every finding."""
    out = Findings()
    policy = _compile(settings, out)
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
    out.raise_if_errors()
    return Compiled(policy, out.warnings)


def build_policy(overrides: Mapping[str, Any], policy_data: bytes | None = None) -> Policy:
    """``build`` without the warnings."""
    return build(overrides, policy_data).policy
