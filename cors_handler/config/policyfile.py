"""The policy file: found, read once and completely, parsed into a mapping of settings.

A file that changes while it is read is read again, then refused, never used
half-written; a reload applies a file only once it has been quiet for a while
(see QUIET_SECONDS); an empty file is an error, not "all defaults"; a YAML
error names the file, the line and the column. Every refusal is a
PolicyFileError with the finding's code, reported at the setting ``policy_file``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from .errors import ConfigError, Findings

POLICY_FILE_ENV = "CORS_POLICY_FILE"
CANDIDATE_POLICY_FILE_ENV = "CORS_CANDIDATE_POLICY_FILE"

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


Identity = tuple[int, int, int, int]  # (device, inode, size, modification time)


def _identity(stat: os.stat_result) -> Identity:
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def file_identity(path: str) -> Identity | None:
    """What the path leads to now, symlinks followed: its identity, None if nothing."""
    try:
        return _identity(os.stat(path))
    except OSError:
        return None


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
        loaded = load_yaml(text)
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


# libyaml's safe loader where PyYAML was built with it: a platform's main policy (a thousand route_sources) and
# a thousand team files parse in a tenth of the time. Its error messages are libyaml's: a file that fails is
# parsed again by the Python loader, whose messages (and marks) the findings quote.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load``, fast; a YAMLError is the Python loader's."""
    try:
        return yaml.load(text, Loader=_FAST_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        return yaml.safe_load(text)


def load_yaml_all(text: str) -> list[Any]:
    """``yaml.safe_load_all``, fast; a YAMLError is the Python loader's."""
    try:
        return list(yaml.load_all(text, Loader=_FAST_LOADER))
    except yaml.YAMLError:
        return list(yaml.safe_load_all(text))


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
