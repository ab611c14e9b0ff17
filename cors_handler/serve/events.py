"""structlog set-up (JSON or console) and throttled logging for per-request events.

Allowed preflights are never logged one by one. Rejections and rate-limit
events are, but through a Throttle: at most ``limit`` lines per
``interval``; the next line that gets through carries how many were
suppressed, so an attack costs a bounded number of log lines.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import Any, TypeVar

import orjson
import structlog

from ..cors.limits import LOG_HEADERS_CHARS, LOG_METHOD_CHARS, LOG_ORIGIN_CHARS

Client = TypeVar("Client")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}  # fmt: skip


def _dumps(obj: Any, default: Callable[[Any], Any] | None = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def _drop_color_message(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """uvicorn adds an ANSI-coloured copy of each message; JSON logs don't want it."""
    event.pop("color_message", None)
    return event


class _ThrottleServerWarnings(logging.Filter):
    """uvicorn warns once per malformed request: under attack, one line per request. Throttle those."""

    def __init__(self) -> None:
        super().__init__()
        self._throttle = Throttle()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "uvicorn.error" or record.levelno != logging.WARNING:
            return True
        suppressed = self._throttle.admit()
        if suppressed is None:
            return False
        if suppressed:
            record.suppressed = suppressed
        return True


def _stderr_logger(*_: Any) -> structlog.PrintLogger:
    """Resolve sys.stderr when a logger is made, not at configure time (it may be replaced)."""
    return structlog.PrintLogger(sys.stderr)


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Route structlog and the stdlib (uvicorn's loggers) through one renderer on stderr."""
    numeric = _LEVELS.get(level, logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer(serializer=_dumps)
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _drop_color_message],
        )
    )
    handler.addFilter(_ThrottleServerWarnings())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True


def get_logger(name: str = "cors_handler") -> Any:
    return structlog.get_logger(name)


class Throttle:
    """Admit at most ``limit`` events per ``interval`` seconds; count the rest."""

    def __init__(self, limit: int = 10, interval: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.interval = interval
        self._clock = clock
        self._window_start = -interval
        self._admitted = 0
        self.suppressed = 0

    def admit(self) -> int | None:
        """None when this event must not be logged; else how many were suppressed before it."""
        now = self._clock()
        if now - self._window_start >= self.interval:
            self._window_start = now
            self._admitted = 0
        if self._admitted >= self.limit:
            self.suppressed += 1
            return None
        self._admitted += 1
        suppressed, self.suppressed = self.suppressed, 0
        return suppressed


class EventLog:
    """Throttled log lines for rejections and rate limiting."""

    def __init__(self, production: bool, throttle: Throttle | None = None) -> None:
        self._log = get_logger("cors_handler.requests")
        self._level = logging.INFO if production else logging.DEBUG
        self._throttle = throttle or Throttle()

    def _admit(self) -> dict[str, int] | None:
        """None when this event is not logged (throttled or level off); else the fields to add to it.

        The throttle is asked first: it is a few comparisons, while asking structlog's lazy
        logger binds a new logger every time, and a flood of refusals asks for every request.
        """
        suppressed = self._throttle.admit()
        if suppressed is None or not self._log.is_enabled_for(self._level):
            return None
        return {"suppressed": suppressed} if suppressed else {}

    def rejected(self, route: str, reason: str, origin: bytes, method: bytes, headers: str = "") -> None:
        """One rejection; ``headers``: the refused request headers (header_not_allowed), named in the line."""
        extra = self._admit()  # the fields are built only for a line that is written
        if extra is None:
            return
        fields = {"route": route, "reason": reason, "origin": origin[:LOG_ORIGIN_CHARS].decode("latin-1"),
                  "method": method[:LOG_METHOD_CHARS].decode("latin-1")}  # fmt: skip
        if headers:
            fields["headers"] = headers[:LOG_HEADERS_CHARS]
        self._log.log(self._level, "preflight rejected", **fields, **extra)

    def rate_limited(self, route: str, client: Client, describe: Callable[[Client], str]) -> None:
        """One refused client; ``describe`` formats it, only for a line that is written."""
        extra = self._admit()
        if extra is not None:
            self._log.log(self._level, "rate limited", route=route, client=describe(client), **extra)
