"""The one error model of the configuration, from command-line arguments to the compiled policy.

Every stage (arguments, the policy file, the environment, pydantic type checks,
policy validation, the linter) reports a ``Finding``: the setting it concerns
(``routes[1].max_age``, ``CORS_MAX_AGEE``, ``--port``), a stable ``code`` that
tests, scripts and ``check --format json`` can rely on, a severity, a message
for humans and, where one exists, a fix. A stage never raises on the first
problem: it adds to a ``Findings`` collection, and the caller raises one
``ConfigError`` carrying every finding of every stage, so one ``check`` run
shows everything to fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    ERROR = "error"  # the configuration is refused
    WARNING = "warning"  # accepted; logged at startup, fails ``check --strict``


@dataclass(frozen=True, slots=True)
class Finding:
    setting: str
    code: str
    severity: Severity
    message: str
    fix: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def __str__(self) -> str:
        text = f"{self.setting}: {self.message}"
        return f"{text}; fix: {self.fix}" if self.fix else text

    def as_dict(self) -> dict[str, Any]:
        """The ``check --format json`` shape: setting, code, severity, message, fix (null when none)."""
        return {
            "setting": self.setting,
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "fix": self.fix,
        }


class ConfigError(Exception):
    """The configuration is refused. ``findings`` holds every finding of every stage, warnings included."""

    def __init__(self, findings: Iterable[Finding]) -> None:
        self.findings = tuple(findings)
        super().__init__("; ".join(str(f) for f in self.errors))

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.is_error)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.is_error)


class Findings:
    """Collects findings while a stage runs; ``raise_if_errors`` ends a pipeline of stages."""

    def __init__(self) -> None:
        self._items: list[Finding] = []

    def error(self, setting: str, code: str, message: str, fix: str | None = None) -> None:
        self._items.append(Finding(setting, code, Severity.ERROR, message, fix))

    def warn(self, setting: str, code: str, message: str, fix: str | None = None) -> None:
        self._items.append(Finding(setting, code, Severity.WARNING, message, fix))

    def add(self, finding: Finding | None) -> None:
        if finding is not None:
            self._items.append(finding)

    def extend(self, findings: Iterable[Finding]) -> None:
        self._items.extend(findings)

    def __iter__(self) -> Iterator[Finding]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def has_errors(self) -> bool:
        return any(f.is_error for f in self._items)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self._items if not f.is_error)

    def raise_if_errors(self) -> None:
        if self.has_errors:
            raise ConfigError(self._items)
