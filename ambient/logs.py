"""Diagnostic logging with structlog: JSON lines for journald, key=value on a terminal.

``configure_logging(cfg)`` may be called again at any time (SIGHUP) to change the level or the
format; loggers obtained with ``structlog.get_logger()`` follow the new configuration because
they are not cached. Every line carries ``timestamp`` (UTC, ISO 8601), ``level``, ``logger`` (when
the logger was named) and ``event``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from ambient.config import LoggingConfig

__all__ = ["configure_logging", "resolve_format"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def resolve_format(cfg: LoggingConfig, stream: TextIO) -> str:
    """``json`` or ``console``: ``auto`` means console on a terminal (a person), JSON otherwise
    (journald, a file, a pipe)."""
    if cfg.format != "auto":
        return cfg.format
    try:
        return "console" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # a closed or unusual stream
        return "json"


class _NamedPrintLogger(structlog.PrintLogger):
    """A PrintLogger that remembers the name given to ``structlog.get_logger(name)``."""

    def __init__(self, file: TextIO, name: str | None) -> None:
        super().__init__(file)
        self.name = name


class _NamedPrintLoggerFactory:
    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedPrintLogger:
        name = args[0] if args and isinstance(args[0], str) else None
        return _NamedPrintLogger(self._file, name)


def _add_logger_name(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    record = event_dict.get("_record")  # a standard-library record rendered by ProcessorFormatter
    name = record.name if isinstance(record, logging.LogRecord) else getattr(logger, "name", None)
    if name:
        event_dict.setdefault("logger", name)
    return event_dict


def configure_logging(cfg: LoggingConfig, *, stream: TextIO | None = None) -> None:
    """Set up structlog, and render records of the standard ``logging`` module (asyncio, libraries)
    in the same format and at the same level."""
    out = stream if stream is not None else sys.stderr
    fmt = resolve_format(cfg, out)
    level = _LEVELS[cfg.level]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        # A plain string: no locals in the traceback (they may hold transcripts).
        tail: list[Any] = [structlog.processors.format_exc_info, renderer]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=_colors(out), exception_formatter=structlog.dev.plain_traceback)
        tail = [renderer]
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *tail],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_NamedPrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def _colors(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
