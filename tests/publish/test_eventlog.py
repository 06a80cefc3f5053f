"""EventLog on a real filesystem: ordering with the server, rotation, retention, privacy mode,
torn-tail repair, file modes, failure and recovery, reopen."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from publish_helpers import LineClient, final, partial, serving, speech_start, status
from structlog.testing import capture_logs

from ambient.config import EventLogConfig, SocketConfig
from ambient.publish.eventlog import EventLog, EventLogError, log_files, read_events


def cfg_for(d: Path, **kw: Any) -> EventLogConfig:
    return EventLogConfig(**{"path": d / "state" / "events.jsonl", "retention_days": None, "rotate_days": None, **kw})


def lines_of(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n")
    return [json.loads(line) for line in raw.splitlines()]


def test_event_is_on_disk_before_any_client_sees_it(sock_dir: Path) -> None:
    log = EventLog(cfg_for(sock_dir, fsync="always"))

    async def main() -> None:
        async with serving(SocketConfig(path=sock_dir / "ambient.sock")) as srv:
            client = await LineClient.connect(srv.path)
            for n in range(5):
                for event in (speech_start(n), final(n, f"utterance number {n}"), status("listening")):
                    assert log.append(event)  # the daemon's order: log, then publish
                    srv.publish(event)
                got = await client.recv_type("final")
                # the moment a client holds a final, the log already has it
                on_disk = [e for e in read_events(log.path or "") if e["type"] == "final"]
                assert on_disk[-1]["utterance_id"] == got["utterance_id"] == f"u{n}"
                assert on_disk[-1]["text"] == got["text"]

    asyncio.run(main())
    log.close()
    records = lines_of(sock_dir / "state" / "events.jsonl")
    assert [r["type"] for r in records[:3]] == ["speech_start", "final", "status"]
    assert all("seq" not in r for r in records)


def test_partials_are_logged_only_when_asked(sock_dir: Path) -> None:
    log = EventLog(cfg_for(sock_dir))
    assert log.append(partial(1)) and log.append(final(1))
    log.close()
    assert [r["type"] for r in lines_of(sock_dir / "state" / "events.jsonl")] == ["final"]
    log = EventLog(cfg_for(sock_dir, include_partials=True))
    assert log.append(partial(2))
    log.close()
    assert [r["type"] for r in lines_of(sock_dir / "state" / "events.jsonl")] == ["final", "partial"]


def test_rotation_keeps_the_newest_files(sock_dir: Path) -> None:
    cfg = cfg_for(sock_dir, rotate_bytes=4096, keep_files=2)
    log = EventLog(cfg)
    for n in range(200):
        assert log.append(final(n, f"line {n} " + "padding " * 20))
    log.close()
    path = sock_dir / "state" / "events.jsonl"
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    ids: list[int] = []
    for f in log_files(path):  # oldest first
        assert f.stat().st_size <= 4096
        ids += [int(e["utterance_id"][1:]) for e in read_events(f)]
    assert ids == list(range(ids[0], 200)) and ids[0] > 0  # contiguous, newest kept, oldest dropped

    # lowering keep_files removes the surplus at the next rotation
    log = EventLog(cfg.model_copy(update={"keep_files": 0}))
    for n in range(200, 260):
        assert log.append(final(n, "padding " * 20))
    log.close()
    assert sorted(p.name for p in path.parent.iterdir()) == ["events.jsonl"]


def test_retention_deletes_old_rotated_files(sock_dir: Path) -> None:
    path = sock_dir / "state" / "events.jsonl"
    path.parent.mkdir()
    now = time.time()
    for n, age_days in ((1, 0.1), (2, 0.5), (3, 3.0), (4, 10.0)):
        p = path.with_name(f"events.jsonl.{n}")
        p.write_text(json.dumps({"type": "status", "n": n}) + "\n")
        os.utime(p, (now - age_days * 86400, now - age_days * 86400))
    path.with_name("events.jsonl.bak").write_text("not ours")
    cfg = cfg_for(sock_dir, retention_days=1.0)
    log = EventLog(cfg)  # retention runs at open
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "events.jsonl",
        "events.jsonl.1",
        "events.jsonl.2",
        "events.jsonl.bak",
    ]
    old = now - 2 * 86400
    os.utime(path.with_name("events.jsonl.2"), (old, old))
    log.maintain()  # and periodically
    assert not path.with_name("events.jsonl.2").exists()
    assert path.with_name("events.jsonl.1").exists() and path.exists()
    log.close()


def test_a_quiet_log_rotates_by_age_so_retention_reaches_its_events(sock_dir: Path) -> None:
    """A log that rarely grows never reaches rotate_bytes: without rotation by age its oldest
    transcripts would outlive retention_days in the active file."""
    path = sock_dir / "state" / "events.jsonl"
    path.parent.mkdir()
    now = time.time()
    old = final(1, "three days old")
    path.write_text(json.dumps({**old.to_dict(), "start": now - 3 * 86400, "end": now - 3 * 86400 + 2}) + "\n")
    os.utime(path, (now - 3 * 86400, now - 3 * 86400))
    log = EventLog(cfg_for(sock_dir, retention_days=2.0, rotate_days=1.0))
    assert path.exists() and lines_of(path)[0]["text"] == "three days old"  # not rotated at open by itself
    assert log.append(final(2, "fresh"))  # the first append rotates the old file away
    assert [r["text"] for r in lines_of(path)] == ["fresh"]
    assert not path.with_name("events.jsonl.1").exists(), "its last write is 3 days old: expired at rotation"

    # The same through maintain(): a file whose first event is older than rotate_days rotates even
    # without another append, and the rotated file expires once its last write passes retention.
    log.close()
    path.write_text(json.dumps({**final(3, "a day and a half").to_dict(), "start": now - 1.5 * 86400}) + "\n")
    log = EventLog(cfg_for(sock_dir, retention_days=2.0, rotate_days=1.0))
    log.maintain()
    assert not path.exists() or path.read_bytes() == b""
    rotated = path.with_name("events.jsonl.1")
    assert [r["text"] for r in lines_of(rotated)] == ["a day and a half"]
    os.utime(rotated, (now - 2.5 * 86400, now - 2.5 * 86400))
    log.maintain()
    assert not rotated.exists()

    # rotate_days: null keeps the old behaviour (size only).
    log.close()
    path.write_text(json.dumps({**final(4, "old but kept").to_dict(), "start": now - 5 * 86400}) + "\n")
    log = EventLog(cfg_for(sock_dir, retention_days=2.0, rotate_days=None))
    assert log.append(final(5, "new"))
    log.maintain()
    assert [r["text"] for r in lines_of(path)] == ["old but kept", "new"]
    log.close()


def test_metadata_only_stores_no_words_on_disk(sock_dir: Path) -> None:
    cfg = cfg_for(sock_dir, metadata_only=True, include_partials=True)
    log = EventLog(cfg)
    assert log.append(partial(1, "zebra quan"))
    assert log.append(final(1, "zebra quantum xylophone"))
    log.close()
    raw = (sock_dir / "state" / "events.jsonl").read_bytes()
    for secret in (b"zebra", b"quan", b"xylophone"):
        assert secret not in raw
    rec = next(r for r in lines_of(sock_dir / "state" / "events.jsonl") if r["type"] == "final")
    assert "text" not in rec and "words" not in rec
    assert rec["word_count"] == 3 and rec["redacted"] is True
    assert rec["utterance_id"] == "u1" and rec["confidence"] == 0.875
    assert {"start", "end", "offset_start", "offset_end", "reason"} <= set(rec)


@pytest.mark.parametrize(
    "tail",
    [b'{"type":"final","utterance_id":"u9","te', b"garbage that is not json\n", b"\x00\x00\x00\x00"],
)
def test_torn_last_line_is_repaired_on_open(sock_dir: Path, tail: bytes) -> None:
    path = sock_dir / "state" / "events.jsonl"
    log = EventLog(cfg_for(sock_dir))
    for n in range(3):
        assert log.append(final(n))
    log.close()
    good = path.read_bytes()
    with open(path, "ab") as f:
        f.write(tail)
    # readers skip the torn line even before the writer repairs it
    assert [e["utterance_id"] for e in read_events(path)] == ["u0", "u1", "u2"]
    with capture_logs() as logs:
        log = EventLog(cfg_for(sock_dir))
    assert path.read_bytes() == good
    assert any(e["event"] == "event log: removed torn last line" and e["bytes"] == len(tail) for e in logs)
    assert log.append(final(3))
    log.close()
    assert [e["utterance_id"] for e in read_events(path)] == ["u0", "u1", "u2", "u3"]


def test_read_events_rejects_corruption_before_the_end(sock_dir: Path) -> None:
    path = sock_dir / "events.jsonl"
    path.write_bytes(b'{"type":"final"}\nnot json\n{"type":"status"}\n')
    with pytest.raises(EventLogError, match=r"events.jsonl:2"):
        list(read_events(path))


def test_files_get_the_configured_mode_whatever_the_umask(sock_dir: Path) -> None:
    old = os.umask(0o077)
    try:
        cfg = cfg_for(sock_dir, file_mode="0640", rotate_bytes=4096, keep_files=1)
        log = EventLog(cfg)
        for n in range(40):
            assert log.append(final(n, "padding " * 20))
        log.close()
        os.umask(0o000)
        path = sock_dir / "state" / "events.jsonl"
        path.chmod(0o666)  # an existing file with a looser mode is tightened
        log = EventLog(cfg_for(sock_dir))
        log.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.with_name("events.jsonl.1").stat().st_mode) == 0o640
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0


def test_write_failure_is_reported_once_and_recovers(sock_dir: Path) -> None:
    blocker = sock_dir / "state"
    blocker.write_text("a file where the log directory should be")
    changes: list[tuple[bool, str]] = []
    with capture_logs() as logs:
        log = EventLog(cfg_for(sock_dir), on_health_change=lambda ok, why: changes.append((ok, why)))
        assert not log.healthy and log.last_error
        for n in range(3):
            assert log.append(final(n)) is False  # never raises
        blocker.unlink()
        blocker.mkdir()
        assert log.append(final(3)) is True
        assert log.append(final(4)) is True
        log.close()
    assert log.healthy and log.last_error is None and log.failures == 4
    assert [ok for ok, _ in changes] == [False, True]
    assert "state" in changes[0][1]
    assert len([e for e in logs if e["log_level"] == "error"]) == 1  # once per episode
    assert [e["utterance_id"] for e in read_events(blocker / "events.jsonl")] == ["u3", "u4"]


def test_reopen_follows_external_rotation_and_new_config(sock_dir: Path) -> None:
    cfg = cfg_for(sock_dir)
    path = sock_dir / "state" / "events.jsonl"
    log = EventLog(cfg)
    assert log.append(final(1))
    path.rename(path.with_name("moved-away.jsonl"))  # logrotate without copytruncate
    log.reopen()
    assert log.append(final(2))
    other = sock_dir / "elsewhere" / "log.jsonl"
    log.reopen(cfg.model_copy(update={"path": other, "metadata_only": True}))
    assert log.append(final(3, "secret words"))
    log.close()
    assert [e["utterance_id"] for e in read_events(path.with_name("moved-away.jsonl"))] == ["u1"]
    assert [e["utterance_id"] for e in read_events(path)] == ["u2"]
    assert b"secret" not in other.read_bytes()
    assert log.append(final(4)) is False  # after close: refused, not raised


def test_disabled_log_accepts_everything_and_writes_nothing(sock_dir: Path) -> None:
    log = EventLog(EventLogConfig(path=None))
    assert log.append(final(1)) and log.healthy
    log.maintain()
    log.close()
    assert list(sock_dir.iterdir()) == []


def test_interval_policy_writes_immediately_and_maintain_syncs(sock_dir: Path) -> None:
    log = EventLog(cfg_for(sock_dir, fsync="interval", fsync_interval_s=3600))
    assert log.append(final(1))
    assert [e["utterance_id"] for e in read_events(sock_dir / "state" / "events.jsonl")] == ["u1"]
    log.maintain()
    log.close()


def test_health_callback_may_log_the_status_change_itself(sock_dir: Path) -> None:
    blocker = sock_dir / "state"
    blocker.write_text("in the way")
    holder: list[EventLog] = []

    def on_change(ok: bool, why: str) -> None:  # what the daemon does: log (and publish) a status
        if holder:
            holder[0].append(status("event_log_ok" if ok else "event_log_error"))

    log = EventLog(cfg_for(sock_dir), on_health_change=on_change)
    holder.append(log)
    assert not log.append(final(1))  # fails again; the callback is not called twice
    blocker.unlink()
    blocker.mkdir()
    assert log.append(final(2))
    log.close()
    assert [(e["type"], e.get("state")) for e in read_events(blocker / "events.jsonl")] == [
        ("final", None),
        ("status", "event_log_ok"),
    ]
