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

from ..cors.model import DEFAULT_ROUTE, DEVELOPMENT, PRODUCTION, STAGING, Policy, RateLimitPolicy, RouteTable
from ..cors.origins import DevelopmentOrigins
from . import lint
from .errors import Finding, Findings
from .routes import (
    ROUTE_KEYS,
    Matchers,
    RouteScope,
    Taken,
    TopLevel,
    compile_owners,
    compile_route,
    compile_routes,
    in_written_order,
    written_lists,
)
from .settings import Settings, load
from .sources import SourceBook, SourceReport, compile_sources

ENVIRONMENT_ALIASES = {
    "production": PRODUCTION,
    "prod": PRODUCTION,
    "staging": STAGING,
    "uat": STAGING,
    "development": DEVELOPMENT,
    "dev": DEVELOPMENT,
}
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
    sources: tuple[SourceReport, ...] = ()  # each file of the routes directory: in force or not, and why
    routes_dir: str | None = None  # the routes directory it was built from (the watcher watches it)


def _compile(
    settings: Settings, out: Findings, book: SourceBook | None = None, quiet: float = 0.0
) -> tuple[Policy, tuple[SourceReport, ...]]:
    """Validate and compile ``settings``, every finding into ``out``; the result is only valid without errors.

    With a routes directory, each of its sources is compiled on its own (``config.sources``):
    their findings are in their reports, not in ``out``; ``book`` keeps their last good
    versions across reloads, ``quiet`` is how long a file must be unwritten to be read.
    """
    environment, env_warning = normalize_environment(settings.environment)
    out.add(env_warning)
    dev_cidrs = tuple(
        n
        for n in _compile_networks("dev_private_cidrs", settings.dev_private_cidrs, out, True)
        if isinstance(n, ipaddress.IPv4Network)
    )
    top = {key: getattr(settings, key) for key in ROUTE_KEYS}
    development = DevelopmentOrigins(dev_cidrs) if environment != PRODUCTION else None
    matchers: Matchers = {}
    found = Findings()
    written = written_lists("", top, frozenset(ROUTE_KEYS), None, environment == PRODUCTION, found)
    default = compile_route(DEFAULT_ROUTE, "/", "", written, top, True, environment, matchers, development, found)
    out.extend(in_written_order(found))
    taken = Taken({DEFAULT_ROUTE: ""}, {})
    top_level = TopLevel(top, written, environment, matchers, development, default)
    routes = compile_routes(settings.routes, RouteScope(lambda i: f"routes[{i}]."), taken, top_level, out)
    owners = compile_owners(settings, out)
    reports: list[SourceReport] = []
    if settings.routes_dir and not out.has_errors:  # the main policy is fail-fast: sources only on a valid one
        try:
            from_sources, reports = compile_sources(settings.routes_dir, owners, top_level, taken, book or SourceBook(),
                                             quiet)  # fmt: skip
            routes += from_sources
        except OSError as exc:
            out.error("routes_dir", "routes_dir_unreadable", f"cannot list {settings.routes_dir}: {exc.strerror}",
                      "mount the directory, or unset --routes-dir / CORS_ROUTES_DIR")  # fmt: skip
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
    sources = "".join(f"\n{r.name} {r.digest}" for r in reports)  # the version covers every source in force
    digest = hashlib.sha256(f"{environment}\n{settings.fingerprint()}{sources}".encode()).hexdigest()
    policy = Policy(
        environment=environment,
        version=digest[:12],
        table=RouteTable(default, routes),
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
        source_valid=tuple((r.name, r.valid) for r in reports),
    )
    return policy, tuple(reports)


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
    policy, reports = _compile(settings, out)
    _builtin_origin(settings, out)
    out.raise_if_errors()
    return Compiled(policy, out.warnings, reports)


def _within(setting: str, paths: frozenset[str]) -> bool:
    return any(setting == p or setting.startswith((f"{p}.", f"{p}[")) for p in paths)


def build(
    overrides: Mapping[str, Any], policy_data: bytes | None = None, book: SourceBook | None = None, quiet: float = 0.0
) -> Compiled:
    """Every stage, from the sources (flags as ``overrides``, environment, file) to the compiled policy.

    Raises ConfigError carrying every finding of every stage; else the policy and
    the warnings. A value the settings stage set aside (a wrong type, bad JSON in
    its variable) is compiled as its default, and what the policy stage says
    about that default is left out: the finding that matters is the first one.
    ``policy_data`` is the policy file's content when the caller has read it; ``book``
    and ``quiet`` are for the routes directory's sources (see ``_compile``).
    """
    out = Findings()
    loaded = load(overrides, out, policy_data)
    compiled = Findings()
    policy, reports = _compile(loaded.settings, compiled, book, quiet)
    if "settings" not in loaded.set_aside:  # nothing validated: the defaults were compiled, say nothing of them
        out.extend(f for f in compiled if not _within(f.setting, loaded.set_aside))
    _builtin_origin(loaded.settings, out)
    out.raise_if_errors()
    return Compiled(policy, out.warnings, reports, loaded.settings.routes_dir)


def build_policy(overrides: Mapping[str, Any], policy_data: bytes | None = None) -> Policy:
    """``build`` without the warnings."""
    return build(overrides, policy_data).policy
