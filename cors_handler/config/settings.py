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

The policy file is read once per load, completely (``read_policy_file``): a
file that changes while it is read is read again, then refused, never used
half-written; an empty file is an error, not "all defaults".
"""

from __future__ import annotations

import difflib
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, get_args

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from ..cors.limits import MAX_CACHE_SIZE, MAX_RATE_LIMIT_CLIENTS, MAX_SETTING_INT
from .errors import ConfigError, Findings

ENV_PREFIX = "CORS_"
POLICY_FILE_ENV = "CORS_POLICY_FILE"
CANDIDATE_POLICY_FILE_ENV = "CORS_CANDIDATE_POLICY_FILE"

DEFAULT_ORIGINS = ["https://app.example.com"]
DEFAULT_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
DEFAULT_HEADERS = ["content-type", "authorization"]
DEFAULT_DEV_CIDRS = ["172.16.21.0/24", "172.16.19.0/24", "192.168.1.0/24"]

# Attempts at reading a policy file that is being rewritten before giving up on it, and how long
# a file must stay unchanged after it was read: an editor that truncates, then writes, leaves a
# complete-looking half file for a moment.
READ_ATTEMPTS = 3
SETTLE_SECONDS = 0.02
# A reload (the watcher, SIGHUP) applies a file only once it has not been written for this long: a writer
# that pauses mid-file (a slow copy, an editor saving in place, a script writing in steps) leaves a file
# that may parse, and may be more permissive than both versions (a route whose own allow_origins is not
# written yet inherits the top level's). A file renamed into place was written before: its last write is
# as old as it is. How long the wait may last in all, in quiet periods, before the file is refused:
QUIET_SECONDS = 2.0
QUIET_PATIENCE = 5


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
    """A per-path override; a None field inherits the top-level value. ``name`` defaults to the path prefix."""

    name: str | None = None
    path_prefix: str
    enabled: bool = True
    allow_origins: list[str] | None = None
    allow_origin_regex: list[str] | None = None
    allow_methods: list[str] | None = None
    allow_headers: list[str] | None = None
    expose_headers: list[str] | None = None
    allow_credentials: bool | None = None
    max_age: Int | None = None
    allow_private_network: bool | None = None


class Settings(_Strict):
    """Every setting of the design's table, with its default."""

    policy_file: str | None = None
    # A second policy decided beside the live one, never enforced (serve.shadow).
    candidate_policy_file: str | None = None
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
        data = self.model_dump(exclude={"policy_file", "candidate_policy_file", "log_level", "log_format"})
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


class PolicyFileError(Exception):
    """The policy file cannot be used; ``code`` is the finding's code."""

    def __init__(self, code: str, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fix = fix

    def as_config_error(self) -> ConfigError:
        """The refusal as the one error model has it (the setting is ``policy_file``)."""
        findings = Findings()
        findings.error("policy_file", self.code, self.message, self.fix)
        return ConfigError(findings)


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def read_policy_file(
    path: str,
    attempts: int = READ_ATTEMPTS,
    after_read: Callable[[], object] | None = None,
    quiet: float = 0.0,
) -> bytes:
    """The file's complete content, read once; raises PolicyFileError.

    The open file is stat'ed before the read, and again once it has stayed
    untouched for ``SETTLE_SECONDS`` after it: if it was truncated or written
    meanwhile (an editor saving in place), the bytes may be half of one
    version, so they are discarded and the file read again, up to
    ``attempts`` times; then it is refused. A file *replaced* after it was
    opened (a rename, a ConfigMap's symlink swap) is fine: the bytes are the
    complete old version, and the new one is another change, another reload.

    ``quiet`` (a reload passes QUIET_SECONDS): the bytes are returned only
    once the file has not been written for that long, its modification time
    that old and nothing changed since the read; a file still being written
    is waited for (up to QUIET_PATIENCE quiet periods), then refused.
    ``after_read`` runs between the read and the checks (the tests change the file there).
    """
    patience = time.monotonic() + quiet * QUIET_PATIENCE
    attempt = 0
    while True:
        try:
            with open(path, "rb") as handle:
                before = os.fstat(handle.fileno())
                data = handle.read()
                if after_read is not None:
                    after_read()
                time.sleep(SETTLE_SECONDS)
                after = os.fstat(handle.fileno())
                complete = _identity(before) == _identity(after) and len(data) == after.st_size
                quiet_now = _quiet_since(handle.fileno(), after, quiet, patience) if complete and quiet else complete
                if quiet_now is None:
                    continue  # written during the wait, with patience left: read it again
        except OSError as exc:
            raise PolicyFileError("policy_file_unreadable", f"cannot read {path}: {exc.strerror or exc}") from None
        if quiet_now:
            return data
        attempt += 1
        if attempt >= attempts or complete:  # complete but not quiet: the patience has run out
            break
        time.sleep(0.02 * attempt)
    how = (
        f"did not stay unchanged for {quiet:g} s within {quiet * QUIET_PATIENCE:g} s"
        if complete
        else (f"was written while it was read ({attempts} attempts)")
    )
    raise PolicyFileError(
        "policy_file_changing",
        f"{path} {how}; it was not applied",
        "write the file atomically (write a temporary file, then rename it over the policy)",
    )


def _quiet_since(fd: int, stat: os.stat_result, quiet: float, patience: float) -> bool | None:
    """Whether the open file has not been written for ``quiet`` seconds, waiting for that if it can.

    True: quiet (its modification time is that old, or the file stayed the same through a wait
    until it was). None: written during the wait: read it again. False: the wait would end after
    ``patience`` (a monotonic time).
    """
    age = time.time() - stat.st_mtime_ns / 1e9
    if age >= quiet:
        return True
    wait = quiet - age if age >= 0 else quiet  # a time stamp in the future: wait a whole quiet period
    if time.monotonic() + wait > patience:
        return False
    time.sleep(wait)
    return True if _identity(os.fstat(fd)) == _identity(stat) else None


def parse_policy_file(path: str, data: bytes) -> dict[str, Any]:
    """The settings mapping in a policy file's bytes; raises PolicyFileError."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyFileError("policy_file_encoding", f"{path} is not UTF-8 text ({exc.reason})") from None
    if not text.strip():
        raise PolicyFileError(
            "policy_file_empty",
            "policy file is empty",
            f"write the policy into {path}, or unset --policy/{POLICY_FILE_ENV} to run on the defaults",
        )
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        message, fix = _yaml_error(path, exc)
        raise PolicyFileError("policy_file_yaml", message, fix) from None
    if loaded is None:
        raise PolicyFileError(
            "policy_file_empty", "policy file is empty (it holds only comments)", f"write the policy into {path}"
        )
    if not isinstance(loaded, dict):
        raise PolicyFileError("policy_file_not_mapping", f"{path} must hold a YAML mapping of settings")
    for key in ("policy_file", "candidate_policy_file"):
        if key in loaded:
            raise PolicyFileError("policy_file_nested", f"{key!r} cannot be set inside the policy file")
    return loaded


def _yaml_error(path: str, exc: yaml.YAMLError) -> tuple[str, str | None]:
    """The YAML error as one message naming the file and line (PyYAML's own names "<unicode string>")."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return f"{path} is not valid YAML: {exc}", None
    mark, start = exc.problem_mark, exc.context_mark
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}"
    line = mark.buffer.splitlines()[mark.line] if mark.buffer else ""
    fix = None
    if exc.context == "while parsing a block collection" and start is not None and line.strip():
        # a key dedented out of its list item: "- name: x" then "path_prefix: /x" at the dash's column
        key = line.strip().partition(":")[0]
        message = (f"{where}: {key!r} is at the column of the '- ' items of the list at line {start.line + 1}, "
                   "so it belongs to no item")  # fmt: skip
        fix = f"indent {key!r} to column {start.column + 3}, under the first key of its item"
        return message, fix
    problem = exc.problem or "not valid YAML"
    context = f" ({exc.context} that starts at line {start.line + 1}, column {start.column + 1})" if (
        exc.context and start is not None) else ""  # fmt: skip
    if exc.context == "while parsing a flow sequence":
        fix = f"close the [ ... ] list opened at line {start.line + 1}, or write one item per line with '- '" if (
            start is not None) else None  # fmt: skip
    elif exc.context == "while parsing a flow mapping":
        fix = "close the { ... } mapping, or write one key per line"
    elif "mapping values are not allowed" in problem:
        fix = "quote a value that holds ': ' (a URL with a port is fine: no space after its colon)"
    return f"{where}: {problem}{context}", fix


def policy_file_path(overrides: Mapping[str, Any]) -> str | None:
    """The policy file in use: the ``--policy`` flag, else ``CORS_POLICY_FILE``."""
    return overrides.get("policy_file") or os.environ.get(POLICY_FILE_ENV) or None


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


def _value_message(loc: tuple[int | str, ...], message: str, value: Any) -> tuple[str, str | None]:
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
                    findings.error(name, "invalid_value", *_value_message(loc, err["msg"], err.get("input")))
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
