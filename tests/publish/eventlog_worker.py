"""Subprocess half of the event-log crash and disk-full tests (run as a script, not collected).

eventlog_worker.py loop LOG      append large finals forever (the test kills it with SIGKILL)
eventlog_worker.py fsize LOG N   append under RLIMIT_FSIZE=N until appends fail, lift the
                                 limit, append again; print a JSON summary on stdout
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

from structlog.testing import capture_logs

from ambient.config import EventLogConfig
from ambient.publish.eventlog import EventLog
from ambient.publish.protocol import Final, WordInfo


def make_final(n: int, words: int) -> Final:
    t = 1_700_000_000.0 + n
    return Final(
        utterance_id=f"u{n}",
        text=" ".join(f"w{n}x{i}" for i in range(words)),
        words=tuple(
            WordInfo(word=f"w{n}x{i}", start=t, end=t + 0.1, offset_start=0.0, offset_end=0.1, confidence=0.5)
            for i in range(words)
        ),
        start=t,
        end=t + 1,
        offset_start=0.0,
        offset_end=1.0,
        confidence=0.5,
        reason="silence",
    )


def loop(path: Path) -> None:
    cfg = EventLogConfig(path=path, fsync="never", rotate_bytes=1 << 40, retention_days=None, rotate_days=None)
    log = EventLog(cfg)
    n = 0
    while True:
        # lines of ~10-60 KB span page boundaries, so SIGKILL can land inside one write()
        if not log.append(make_final(n, 100 + (n % 7) * 80)):
            sys.exit(f"append {n} failed: {log.last_error}")
        n += 1


def fsize(path: Path, limit: int) -> None:
    transitions: list[list[object]] = []
    cfg = EventLogConfig(path=path, fsync="always", rotate_bytes=1 << 30, retention_days=None, rotate_days=None)
    _soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    with capture_logs() as logs:
        log = EventLog(cfg, on_health_change=lambda ok, why: transitions.append([ok, why]))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        written = 0
        while written < 10_000 and log.append(make_final(written, 5)):
            written += 1
        size_after_failure = path.stat().st_size
        clean_after_failure = path.read_bytes().endswith(b"\n")  # before any reopen could repair it
        retry_ok = log.append(make_final(written, 5))  # still full: fails again, logged once only
        healthy_while_full = log.healthy
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        recovered_ok = log.append(make_final(written + 1, 5))
        log.close()
    errors = [e for e in logs if e["log_level"] == "error"]
    print(
        json.dumps(
            {
                "written": written,
                "size_after_failure": size_after_failure,
                "clean_after_failure": clean_after_failure,
                "retry_ok": retry_ok,
                "healthy_while_full": healthy_while_full,
                "recovered_ok": recovered_ok,
                "healthy_after": log.healthy,
                "transitions": transitions,
                "error_logs": len(errors),
                "failures": log.failures,
            }
        )
    )


if __name__ == "__main__":
    mode, log_path = sys.argv[1], Path(sys.argv[2])
    if mode == "loop":
        loop(log_path)
    elif mode == "fsize":
        fsize(log_path, int(sys.argv[3]))
    else:
        sys.exit(f"unknown mode {mode}")
