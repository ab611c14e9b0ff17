"""Raw settings: CLI flags > ``CORS_*`` environment > YAML policy file > defaults.

This module only gathers and type-checks values (pydantic-settings). What the
values *mean* — origin patterns, tokens, the production rules — is checked in
``policy``, which collects every error at once. Both report errors as
``ConfigError(setting, message)`` so ``check`` and startup can list them all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "CORS_"
POLICY_FILE_ENV = "CORS_POLICY_FILE"
CANDIDATE_POLICY_FILE_ENV = "CORS_CANDIDATE_POLICY_FILE"

DEFAULT_ORIGINS = ["https://app.example.com"]
DEFAULT_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
DEFAULT_HEADERS = ["content-type", "authorization"]
DEFAULT_DEV_CIDRS = ["172.16.21.0/24", "172.16.19.0/24", "192.168.1.0/24"]


@dataclass(frozen=True, slots=True)
class ConfigError:
    """One problem with the configuration, named by its setting path (``routes[1].max_age``)."""

    setting: str
    message: str

    def __str__(self) -> str:
        return f"{self.setting}: {self.message}"


class SettingsError(Exception):
    """Settings could not be loaded; ``errors`` lists every problem found."""

    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateLimitSettings(_Strict):
    enabled: bool = True
    average: int = 1200
    period: float = 60
    burst: int = 300
    depth: int = 0
    excluded_ips: list[str] = []
    max_clients: int = 100_000


class RouteSettings(_Strict):
    """A per-path override; a None field inherits the top-level value."""

    name: str
    path_prefix: str
    enabled: bool = True
    allow_origins: list[str] | None = None
    allow_origin_regex: list[str] | None = None
    allow_methods: list[str] | None = None
    allow_headers: list[str] | None = None
    expose_headers: list[str] | None = None
    allow_credentials: bool | None = None
    max_age: int | None = None
    allow_private_network: bool | None = None


class _ListFriendlyEnvSource(EnvSettingsSource):
    """Environment source that accepts lists as JSON *or* comma-separated text.

    ``CORS_ALLOW_ORIGINS=https://a.com,https://b.com`` and
    ``CORS_ALLOW_ORIGINS='["https://a.com"]'`` mean the same; so do the nested
    forms such as ``CORS_RATE_LIMIT__EXCLUDED_IPS=10.0.0.0/8,127.0.0.1/32``.
    """

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            if isinstance(value, str) and field is not None and _is_str_list(field.annotation):
                return [item.strip() for item in value.split(",") if item.strip()]
            raise


def _is_str_list(annotation: Any) -> bool:
    candidates = get_args(annotation) or (annotation,)
    return any(c == list[str] for c in candidates) or annotation == list[str]


class _PolicyFileSource(PydanticBaseSettingsSource):
    """The YAML policy file: same keys as the settings, in lower case."""

    def __init__(self, settings_cls: type[BaseSettings], path: str | None) -> None:
        super().__init__(settings_cls)
        self._data = load_policy_file(path) if path else {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class PolicyFileError(Exception):
    """The policy file cannot be read or is not a YAML mapping."""


def load_policy_file(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyFileError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PolicyFileError(f"{path} must hold a YAML mapping of settings")
    for key in ("policy_file", "candidate_policy_file"):
        if key in data:
            raise PolicyFileError(f"{path}: {key!r} cannot be set inside the policy file")
    return data


class Settings(BaseSettings):
    """Every setting of the design's table, with its default."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    policy_file: str | None = None
    # A second policy decided beside the live one, never enforced (cors_handler.candidate).
    candidate_policy_file: str | None = None
    environment: str = "production"
    allow_origins: list[str] = Field(default_factory=lambda: list(DEFAULT_ORIGINS))
    allow_origin_regex: list[str] = []
    allow_methods: list[str] = Field(default_factory=lambda: list(DEFAULT_METHODS))
    allow_headers: list[str] = Field(default_factory=lambda: list(DEFAULT_HEADERS))
    expose_headers: list[str] = []
    allow_credentials: bool = False
    max_age: int = 86400
    allow_private_network: bool = False
    dev_private_cidrs: list[str] = Field(default_factory=lambda: list(DEFAULT_DEV_CIDRS))
    routes: list[RouteSettings] = []
    security_headers: bool = True
    rate_limit: RateLimitSettings = RateLimitSettings()
    cache_size: int = 10_000
    debug: bool = False
    log_level: str = "info"
    log_format: str = "json"
    shutdown_delay: float = 5
    client_timeout: float = 10

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        init_kwargs = getattr(init_settings, "init_kwargs", {})
        path = init_kwargs.get("policy_file") or os.environ.get(POLICY_FILE_ENV) or None
        return (init_settings, _ListFriendlyEnvSource(settings_cls), _PolicyFileSource(settings_cls, path))

    def uses_builtin_origins(self) -> bool:
        return self.allow_origins == DEFAULT_ORIGINS and not self.allow_origin_regex

    def fingerprint(self) -> str:
        """Canonical JSON of the effective settings: the input of the policy version hash."""
        data = self.model_dump(exclude={"policy_file", "candidate_policy_file", "log_level", "log_format"})
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()


def _setting_name(loc: tuple[int | str, ...]) -> str:
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or "settings"


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from all sources; CLI flags arrive as ``overrides`` (None = not given).

    Raises SettingsError listing every problem, each with its setting name.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except PolicyFileError as exc:
        raise SettingsError([ConfigError("policy_file", str(exc))]) from None
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            message = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"]
            errors.append(ConfigError(_setting_name(err["loc"]), message))
        raise SettingsError(errors) from None
