"""structlog setup: JSON lines for journald, console on a terminal, levels, reconfiguration."""

from __future__ import annotations

import io
import json
import logging
import re

import structlog

from ambient.config import LoggingConfig
from ambient.logs import configure_logging, resolve_format


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_lines_with_level_logger_and_timestamp() -> None:
    out = io.StringIO()
    configure_logging(LoggingConfig(format="json", level="info"), stream=out)
    log = structlog.get_logger("ambient.test")
    log.info("hello", n=3)
    log.debug("not shown")
    logging.getLogger("some.library").warning("from stdlib %d", 7)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert len(lines) == 2
    assert lines[0]["event"] == "hello" and lines[0]["n"] == 3
    assert lines[0]["level"] == "info" and lines[0]["logger"] == "ambient.test"
    assert lines[0]["timestamp"].endswith("Z")
    assert lines[1] == {**lines[1], "event": "from stdlib 7", "level": "warning", "logger": "some.library"}


def test_exceptions_are_one_json_line_without_locals() -> None:
    out = io.StringIO()
    configure_logging(LoggingConfig(format="json"), stream=out)
    secret = "what the user said"  # noqa: F841 - a local that must not be logged
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger().exception("failed")
    (line,) = out.getvalue().splitlines()
    rec = json.loads(line)
    assert "RuntimeError: boom" in rec["exception"]
    assert "what the user said" not in line


def test_reconfiguring_changes_the_level_of_existing_loggers() -> None:
    out = io.StringIO()
    configure_logging(LoggingConfig(format="json", level="warning"), stream=out)
    log = structlog.get_logger("ambient.x")
    log.info("hidden")
    configure_logging(LoggingConfig(format="json", level="debug"), stream=out)
    log.debug("visible")
    assert [json.loads(x)["event"] for x in out.getvalue().splitlines()] == ["visible"]


def test_auto_format_is_console_on_a_terminal_and_json_elsewhere() -> None:
    assert resolve_format(LoggingConfig(format="auto"), _Tty()) == "console"
    assert resolve_format(LoggingConfig(format="auto"), io.StringIO()) == "json"
    assert resolve_format(LoggingConfig(format="json"), _Tty()) == "json"
    out = _Tty()
    configure_logging(LoggingConfig(), stream=out)
    structlog.get_logger("ambient.y").info("readable", k="v")
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())  # colours on a terminal
    assert "readable" in text and "k=v" in text and "[ambient.y]" in text and not text.startswith("{")
