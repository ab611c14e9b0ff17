"""Raw settings: CLI flags > ``CORS_*`` environment > YAML policy file > defaults.

This module only gathers and type-checks values. What the values *mean* —
origin patterns, tokens, the production rules — is checked in ``config.compile``.
Both stages report into one ``errors.Findings`` (setting, code, severity,
message, fix), and neither stops at the first problem: a value that fails
here (an unknown key, a wrong type, malformed JSON in an environment
variable) is reported and set aside, the rest is still validated and
compiled, so ``check`` lists the typo in the file *and* the bad regex *and*
the broken ``CORS_ROUTES`` in one run (``load`` returns which settings were
set aside, so the policy stage does not report on values it never saw).

The policy file is read once per load, completely, by ``config.policyfile``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, get_args

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from ..cors.limits import MAX_CACHE_SIZE, MAX_RATE_LIMIT_CLIENTS, MAX_SETTING_INT
from .errors import Findings
from .policyfile import PolicyFileError, parse_policy_file, policy_file_path, read_policy_file

ENV_PREFIX = "CORS_"

DEFAULT_ORIGINS = ["https://app.example.com"]
DEFAULT_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
DEFAULT_HEADERS = ["content-type", "authorization"]
DEFAULT_DEV_CIDRS = ["172.16.21.0/24", "172.16.19.0/24", "192.168.1.0/24"]

# Every integer setting fits 64 bits; the tables allocated up front have their own, lower bound (cors.limits).
Int = Annotated[int, Field(ge=-MAX_SETTING_INT - 1, le=MAX_SETTING_INT)]
CacheSize = Annotated[int, Field(le=MAX_CACHE_SIZE)]
MaxClients = Annotated[int, Field(le=MAX_RATE_LIMIT_CLIENTS)]
# Why a bounded setting has its bound (the finding's fix).
_BOUND_REASONS = {
    "cache_size": "the response cache's admission filter is allocated up front, 64 bytes per entry",
    "rate_limit.max_clients": "the limiter's table is allocated up front, 32 bytes per client",
}


class _Strict(BaseModel):
    # No infinite or NaN seconds (a NaN compares false with every bound).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RateLimitSettings(_Strict):
    enabled: bool = True
    average: Int = 1200
    period: float = 60
    burst: Int = 300
    depth: Int = 0
    excluded_ips: list[str] = []
    max_clients: MaxClients = 100_000


class RouteSettings(_Strict):
    """A per-host and per-path override; a None field inherits the top-level value.

    ``name`` defaults to the hosts and the path prefix. ``path_exact``: the
    prefix is an exact path (what a Gateway API ``Exact`` path match becomes).
    """

    name: str | None = None
    hosts: list[str] | None = None
    path_prefix: str
    path_exact: bool = False
    enabled: bool = True
    allow_origins: list[str] | None = None
    allow_origin_regex: list[str] | None = None
    allow_methods: list[str] | None = None
    allow_headers: list[str] | None = None
    expose_headers: list[str] | None = None
    allow_credentials: bool | None = None
    max_age: Int | None = None
    allow_private_network: bool | None = None


class RouteSourceSettings(_Strict):
    """What the platform team grants one route source (a file of the routes directory): the hosts it may serve."""

    hosts: list[str] = []


class Settings(_Strict):
    """Every setting of the design's table, with its default."""

    policy_file: str | None = None
    # A second policy decided beside the live one, never enforced (serve.shadow).
    candidate_policy_file: str | None = None
    # A directory of route sources, one file per team (config.sources).
    routes_dir: str | None = None
    environment: str = "production"
    allow_origins: list[str] = Field(default_factory=lambda: list(DEFAULT_ORIGINS))
    allow_origin_regex: list[str] = []
    allow_methods: list[str] = Field(default_factory=lambda: list(DEFAULT_METHODS))
    allow_headers: list[str] = Field(default_factory=lambda: list(DEFAULT_HEADERS))
    expose_headers: list[str] = []
    allow_credentials: bool = False
    max_age: Int = 86400
    allow_private_network: bool = False
    dev_private_cidrs: list[str] = Field(default_factory=lambda: list(DEFAULT_DEV_CIDRS))
    routes: list[RouteSettings] = []
    route_sources: dict[str, RouteSourceSettings] = {}
    security_headers: bool = True
    rate_limit: RateLimitSettings = RateLimitSettings()
    cache_size: CacheSize = 10_000
    debug: bool = False
    log_level: str = "info"
    log_format: str = "json"
    shutdown_delay: float = 5
    client_timeout: float = 10
    keep_alive_timeout: float = 5

    def uses_builtin_origins(self) -> bool:
        return self.allow_origins == DEFAULT_ORIGINS and not self.allow_origin_regex

    def fingerprint(self) -> str:
        """Canonical JSON of the effective settings: the input of the policy version hash."""
        where = {"policy_file", "candidate_policy_file", "routes_dir"}
        data = self.model_dump(exclude=where | {"log_level", "log_format"})
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()


class _EnvView(BaseSettings, Settings):
    """Settings as the environment source sees them (``CORS_`` prefix, ``__`` for nested keys)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")


def _is_str_list(annotation: Any) -> bool:
    candidates = get_args(annotation) or (annotation,)
    return any(c == list[str] for c in candidates) or annotation == list[str]


class _EnvSource(EnvSettingsSource):
    """The ``CORS_*`` environment: lists as JSON *or* comma-separated text; bad JSON is a finding.

    ``CORS_ALLOW_ORIGINS=https://a.com,https://b.com`` and
    ``CORS_ALLOW_ORIGINS='["https://a.com"]'`` mean the same; so do the nested
    forms such as ``CORS_RATE_LIMIT__EXCLUDED_IPS=10.0.0.0/8,127.0.0.1/32``.
    A value that must be JSON and is not (``CORS_ROUTES='[{"name": "x",'``) is
    reported with its variable and left out, instead of ending the load.
    """

    def __init__(self, findings: Findings) -> None:
        super().__init__(_EnvView)
        self.findings = findings
        self.rejected: set[str] = set()

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            if isinstance(value, str) and field is not None and _is_str_list(field.annotation):
                return [item.strip() for item in value.split(",") if item.strip()]
            raise

    def prepare_field_value(self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool) -> Any:
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError as exc:
            variable = f"{ENV_PREFIX}{field_name.upper()}"
            example = '[{"path_prefix": "/api/v2", "allow_origins": ["https://a.example"]}]'
            self.findings.error(
                field_name,
                "env_invalid_json",
                f"{variable} is not valid JSON ({exc}); the variable is ignored",
                f"{variable}='{example}'" if field_name == "routes" else f"give {variable} a complete JSON value",
            )
            self.rejected.add(field_name)
            return None


# Variables of this project's own tools (load tests, test suites), read by them, never by the service.
TOOL_ENV_PREFIXES = ("CORS_LOCUST_", "CORS_TEST_", "CORS_DIFFERENTIAL_")
# Kubernetes service links (CORS_HANDLER_SERVICE_HOST, CORS_HANDLER_PORT_8080_TCP_ADDR, ...): not ours.
_SERVICE_LINK = re.compile(r".+_(SERVICE_HOST|SERVICE_PORT(_.+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_.+)?)?)")


def _known_env_vars() -> dict[str, str]:
    """Every ``CORS_*`` variable that sets something, mapped to the setting it sets."""
    known = {f"{ENV_PREFIX}{name.upper()}": name for name in Settings.model_fields}
    for name in RateLimitSettings.model_fields:
        known[f"{ENV_PREFIX}RATE_LIMIT__{name.upper()}"] = f"rate_limit.{name}"
    return known


def check_environment(environ: Mapping[str, str], findings: Findings) -> None:
    """Warn about ``CORS_*`` variables that set nothing (``CORS_MAX_AGEE``), naming the closest setting.

    Unknown keys below a nested setting (``CORS_RATE_LIMIT__BRUST``) are the
    type check's errors, like unknown keys in the file.
    """
    known = _known_env_vars()
    nested_prefixes = tuple(f"{ENV_PREFIX}{name.upper()}__" for name in ("rate_limit", "routes"))
    for variable in sorted(environ):
        upper = variable.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known or upper.startswith(nested_prefixes):
            continue
        if _SERVICE_LINK.fullmatch(upper) or upper.startswith(TOOL_ENV_PREFIXES):
            continue
        close = difflib.get_close_matches(upper, list(known), n=1, cutoff=0.6)
        fix = f"rename it to {close[0]} (setting {known[close[0]]})" if close else None
        findings.warn(variable, "env_unknown", f"{variable} is not a cors-handler setting and is ignored", fix)


def _setting_name(loc: tuple[int | str, ...]) -> str:
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or "settings"


def _merge(low: dict[str, Any], high: dict[str, Any]) -> dict[str, Any]:
    """``high`` over ``low``; nested mappings (rate_limit) merge key by key."""
    merged = dict(low)
    for key, value in high.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _set_aside(data: dict[str, Any], loc: tuple[int | str, ...]) -> str:
    """Remove the value a validation error points at; returns the setting path removed.

    The innermost *mapping key* on the path is removed (``routes[0].maxage``
    drops that key; ``allow_origins[2]`` drops ``allow_origins``, so list
    indices of later findings stay true; a missing required key drops its
    parent setting).
    """
    container: Any = data
    removable: tuple[dict[str, Any], str, int] | None = None
    for depth, part in enumerate(loc):
        if isinstance(container, dict) and isinstance(part, str) and part in container:
            removable = (container, part, depth)
            container = container[part]
        elif isinstance(container, list) and isinstance(part, int) and 0 <= part < len(container):
            container = container[part]
        else:
            break
    if removable is None:
        return _setting_name(loc[:1])
    parent, key, depth = removable
    del parent[key]
    return _setting_name(loc[: depth + 1])


def _fields_at(loc: tuple[int | str, ...]) -> list[str]:
    """The setting names valid where an unknown key was found (for a did-you-mean)."""
    parent = [p for p in loc[:-1] if isinstance(p, str)]
    if parent[-1:] == ["rate_limit"]:
        return list(RateLimitSettings.model_fields)
    if parent[-1:] == ["routes"]:
        return list(RouteSettings.model_fields)
    return list(Settings.model_fields)


_ROUTE_ONLY_KEYS = frozenset(RouteSettings.model_fields) - frozenset(Settings.model_fields)
_SECONDS = frozenset({"max_age", "period", "shutdown_delay", "client_timeout", "keep_alive_timeout"})
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|min|h|d)\s*", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def _unknown_message(loc: tuple[int | str, ...]) -> tuple[str, str | None]:
    """An unknown key: a route's key dedented to the top level says so; else the closest setting."""
    key = str(loc[-1])
    if len(loc) == 1 and key in _ROUTE_ONLY_KEYS:
        return (f"{key!r} is a route setting, found at the top level: it was probably dedented out of its route",
                f"indent {key!r} under its item in routes (past the '- ')")  # fmt: skip
    close = difflib.get_close_matches(key, _fields_at(loc), n=1)
    return "unknown setting", f"did you mean {close[0]!r}?" if close else None


def value_message(loc: tuple[int | str, ...], message: str, value: Any) -> tuple[str, str | None]:
    """Pydantic's message, or a plainer one for the mistakes YAML invites (off read as false, 2h for seconds)."""
    key = str(next((part for part in reversed(loc) if isinstance(part, str)), ""))
    if isinstance(value, bool) and "valid string" in message:
        word = "off, no or false" if value is False else "on, yes or true"
        return (f"YAML read this as the boolean {str(value).lower()} (an unquoted {word}); it must be text",
                f'quote the word you wrote, e.g. {key}: "{"off" if value is False else "yes"}"')  # fmt: skip
    if isinstance(value, str) and key in _SECONDS and ("valid integer" in message or "valid number" in message):
        duration = _DURATION.fullmatch(value)
        if duration is not None:
            seconds = float(duration.group(1)) * _UNIT_SECONDS[duration.group(2).lower()]
            whole = int(seconds) if seconds == int(seconds) else seconds
            return f"{value!r} is not a number of seconds: {key} takes a plain number of seconds", f"{key}: {whole}"
        return f"{value!r} is not a number: {key} is a number of seconds", f"{key}: 3600"
    return message, None


def _out_of_range(setting: str, value: object, bound: Mapping[str, object]) -> tuple[str, str]:
    """The message and fix of a value past its bound (a value of any length is shown cut short)."""
    shown = str(value) if len(str(value)) <= 24 else f"{str(value)[:20]}... ({len(str(value))} digits)"
    if "le" in bound:
        reason = _BOUND_REASONS.get(setting, "integer settings are 64-bit")
        return f"{shown} is above the maximum {bound['le']} ({reason})", f"set {setting} to at most {bound['le']}"
    return f"{shown} is below the minimum {bound['ge']} (integer settings are 64-bit)", f"set {setting} to >= 0"


def _validate(data: dict[str, Any], findings: Findings, set_aside: set[str]) -> Settings:
    """Validate, reporting every error and setting the offending values aside until the rest passes."""
    for _ in range(10):
        try:
            return Settings.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(err["loc"])
                name = _setting_name(loc)
                if err["type"] == "extra_forbidden":
                    findings.error(name, "unknown_setting", *_unknown_message(loc))
                elif err["type"] == "missing":
                    example = "e.g. '- path_prefix: /api'" if loc[-1] == "path_prefix" else None
                    findings.error(
                        name, "missing_setting", "is required", example and f"give the route a path_prefix, {example}"
                    )
                elif err["type"] in ("less_than_equal", "greater_than_equal"):
                    findings.error(name, "out_of_range", *_out_of_range(name, err["input"], err.get("ctx", {})))
                else:
                    findings.error(name, "invalid_value", *value_message(loc, err["msg"], err.get("input")))
                set_aside.add(_set_aside(data, loc))
    set_aside.add("settings")
    return Settings()


@dataclass(frozen=True, slots=True)
class Loaded:
    """The outcome of the settings stage: what could be validated, and what was set aside."""

    settings: Settings
    set_aside: frozenset[str]  # setting paths whose values were not usable (their findings are in ``findings``)


def load(
    overrides: Mapping[str, Any],
    findings: Findings,
    policy_data: bytes | None = None,
) -> Loaded:
    """Gather flags (``overrides``, None = not given), environment and file into Settings.

    Every problem goes into ``findings``; nothing is raised. ``policy_data``
    is the policy file's content when the caller has read it already (a
    reload reads the file once and uses exactly those bytes).
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    set_aside: set[str] = set()
    file_data: dict[str, Any] = {}
    path = policy_file_path(given)
    if path:
        try:
            file_data = parse_policy_file(path, read_policy_file(path) if policy_data is None else policy_data)
        except PolicyFileError as exc:
            findings.error("policy_file", exc.code, exc.message, exc.fix)
    source = _EnvSource(findings)
    env_data = source()
    set_aside |= source.rejected
    check_environment(os.environ, findings)
    data = _merge(_merge(file_data, env_data), given)
    settings = _validate(data, findings, set_aside)
    return Loaded(settings, frozenset(set_aside))


def load_settings(**overrides: Any) -> Settings:
    """Settings from every source; raises ConfigError listing every finding of this stage."""
    findings = Findings()
    loaded = load(overrides, findings)
    findings.raise_if_errors()
    return loaded.settings
