"""``SafeStream``, the daemon's diagnostic-log stream: a broken stream costs lines, never raises,
and works again when the stream does (the daemon-level behaviour is in test_eventlog_faults.py)."""

from __future__ import annotations

import contextlib
import io
import os
from typing import TextIO, cast

import structlog

from ambient.config import LoggingConfig
from ambient.daemon.logstream import SafeStream
from ambient.logs import configure_logging


class _Flaky(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.broken = False

    def write(self, s: str) -> int:
        if self.broken:
            raise OSError(27, "File too large")
        return super().write(s)


def test_a_broken_pipe_costs_lines_and_never_raises() -> None:
    r, w = os.pipe()
    os.close(r)  # nobody reads: every write fails with EPIPE
    raw = os.fdopen(w, "w")
    stream = SafeStream(raw)
    for _ in range(3):
        assert stream.write("a line\n") == len("a line\n")
        stream.flush()
    assert stream.failures >= 3
    assert stream.isatty() is False
    with contextlib.suppress(BrokenPipeError):
        raw.close()


def test_logging_through_it_survives_and_resumes() -> None:
    flaky = _Flaky()
    stream = SafeStream(cast(TextIO, flaky))
    configure_logging(LoggingConfig(level="info", format="json"), stream=cast(TextIO, stream))
    log = structlog.get_logger("test")
    log.info("before")
    flaky.broken = True
    log.info("lost")  # would raise OSError into the caller without SafeStream
    log.error("lost too", error="x")
    flaky.broken = False
    log.info("after")
    lines = flaky.getvalue().splitlines()
    assert [line.split('"event": "')[1].split('"')[0] for line in lines] == ["before", "after"]
    assert stream.failures >= 2


def test_a_closed_stream_is_not_an_error() -> None:
    raw = io.StringIO()
    stream = SafeStream(raw)
    raw.close()
    stream.write("x")
    stream.flush()
    assert stream.failures >= 1
