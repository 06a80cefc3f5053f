"""The event log under real failures in a subprocess: SIGKILL mid-write, and a file-size limit
(RLIMIT_FSIZE, the same errors as a full disk)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from publish_helpers import final

from ambient.config import EventLogConfig
from ambient.publish.eventlog import EventLog, read_events

WORKER = Path(__file__).resolve().parent / "eventlog_worker.py"
GUARD_S = 60.0  # hang guard only


def _ids(path: Path) -> list[int]:
    return [int(e["utterance_id"][1:]) for e in read_events(path)]


@pytest.mark.parametrize("min_bytes", [300_000, 1_000_000, 2_500_000])
def test_kill_9_while_writing_leaves_a_parseable_log(sock_dir: Path, min_bytes: int) -> None:
    path = sock_dir / "events.jsonl"
    proc = subprocess.Popen([sys.executable, str(WORKER), "loop", str(path)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + GUARD_S
        while not path.exists() or path.stat().st_size < min_bytes:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
            assert time.monotonic() < deadline, "worker never wrote enough"
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    ids = _ids(path)  # every complete line parses; a torn last one is skipped
    assert ids == list(range(len(ids))) and len(ids) > 0

    cfg = EventLogConfig(path=path, retention_days=None, rotate_days=None, rotate_bytes=1 << 40)
    log = EventLog(cfg)  # repairs any torn tail
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    assert [json.loads(line)["utterance_id"] for line in raw.splitlines()] == [f"u{i}" for i in ids]
    assert log.append(final(len(ids)))
    log.close()
    assert _ids(path) == [*ids, len(ids)]


def test_file_size_limit_fails_cleanly_and_recovers(sock_dir: Path) -> None:
    path = sock_dir / "events.jsonl"
    limit = 20_000
    out = subprocess.run(
        [sys.executable, str(WORKER), "fsize", str(path), str(limit)],
        capture_output=True,
        timeout=GUARD_S,
        check=True,
    )
    r = json.loads(out.stdout.splitlines()[-1])
    assert r["written"] > 0
    assert r["size_after_failure"] <= limit
    assert r["clean_after_failure"] is True  # the short write was cut back at once, not left torn
    assert r["retry_ok"] is False and r["healthy_while_full"] is False
    assert r["recovered_ok"] is True and r["healthy_after"] is True
    assert [t[0] for t in r["transitions"]] == [False, True]
    assert "too large" in r["transitions"][0][1].lower()
    assert r["error_logs"] == 1 and r["failures"] == 2
    # no partial line was left behind by the failed writes; the recovered write follows
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    assert [json.loads(line)["utterance_id"] for line in raw.splitlines()] == [
        *(f"u{n}" for n in range(r["written"])),
        f"u{r['written'] + 1}",
    ]
