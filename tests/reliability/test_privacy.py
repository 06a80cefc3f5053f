"""What the daemon keeps on disk, proven on the real daemon: event-log files get the configured
private mode whatever the umask (rotated files too), retention deletes expired transcripts (at
start and while running), metadata-only mode leaves no transcript word in any file the daemon
wrote, and the diagnostic log never holds transcript text, not even at debug level."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import daemon_config, log_records

from ambient.devtools.daemon import DaemonProcess, write_config
from ambient.devtools.waiting import wait_until
from ambient.publish.eventlog import log_files

pytestmark = pytest.mark.slow

DAY = 86400.0
#: Words as the tokenizer spells them (lower-case letters and apostrophes).
_WORD = re.compile(r"[a-z']+")


def _run_file(config: Path, *, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    """``ambient run`` over the configured file as fast as possible (it exits at the end)."""

    def set_umask() -> None:
        if umask is not None:
            os.umask(umask)

    return subprocess.run(
        [sys.executable, "-m", "ambient", "run", "--config", str(config), "--fast"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=set_umask,
    )


def _transcript_words(records: list[dict[str, Any]]) -> set[str]:
    words: set[str] = set()
    for r in records:
        if r["type"] in ("final", "partial"):
            words |= set(r["text"].split())
            words |= {w["word"] for w in r.get("words", [])}
    return words


@pytest.fixture(scope="module")
def control_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, speech_file: Path
) -> tuple[Path, set[str]]:
    """A normal run over the speech file: the transcript words the metadata-only run must not
    write anywhere (the random model's letter soup; the run is deterministic). Words that also
    occur in the log's metadata, in paths or in hex ids would prove nothing and are left out."""
    d = tmp_path_factory.mktemp("control")
    data = daemon_config(
        d,
        tiny_checkpoint,
        audio={"file": str(speech_file), "source": "file"},
        event_log={"include_partials": True},
    )
    proc = _run_file(write_config(d / "config.yaml", data))
    assert proc.returncode == 0, proc.stderr
    records = log_records(d / "events.jsonl")
    metadata = [{k: v for k, v in r.items() if k not in ("text", "words")} for r in records]
    boring = set(_WORD.findall(json.dumps(metadata) + str(d) + str(speech_file) + str(tiny_checkpoint)))
    words = {
        w
        for w in _transcript_words(records)
        if len(w) >= 4 and w not in boring and not re.fullmatch(r"[a-f]+", w)  # hex ids spell such words
    }
    return d, words


def test_event_log_files_are_private_whatever_the_umask(
    tiny_checkpoint: Path, speech_file: Path, workdir: Path
) -> None:
    for mode in (0o600, 0o640):
        d = workdir / f"m{mode:o}"
        d.mkdir()
        data = daemon_config(
            d,
            tiny_checkpoint,
            audio={"file": str(speech_file), "source": "file"},
            event_log={"file_mode": f"{mode:04o}", "rotate_bytes": 4096, "keep_files": 3, "include_partials": True},
        )
        # A log left world-readable (by hand, or an older version), nearly full: the daemon narrows
        # its mode and soon rotates it.
        old = d / "events.jsonl"
        old.write_text((json.dumps({"type": "status", "state": "listening", "detail": "x" * 150}) + "\n") * 20)
        os.chmod(old, 0o644)
        proc = _run_file(write_config(d / "config.yaml", data), umask=0)  # a umask that hides nothing
        assert proc.returncode == 0, proc.stderr
        files = log_files(d / "events.jsonl")
        assert len(files) >= 2, "no rotation happened: the check would cover only one file"
        assert {oct(stat.S_IMODE(f.stat().st_mode)) for f in files} == {oct(mode)}


def test_retention_deletes_expired_transcripts_at_start_and_while_running(tiny_checkpoint: Path, workdir: Path) -> None:
    log = workdir / "events.jsonl"
    old_line = json.dumps({"type": "final", "text": "an old secret", "utterance_id": "x"}) + "\n"
    for n, age_days in ((1, 1), (2, 40), (3, 400)):
        rotated = log.with_name(f"events.jsonl.{n}")
        rotated.write_text(old_line)
        t = time.time() - age_days * DAY
        os.utime(rotated, (t, t))
    data = daemon_config(
        workdir,
        tiny_checkpoint,
        audio={"source": "stdin"},
        # fsync: interval makes the daemon's log maintenance (retention included) run about once a second
        event_log={"retention_days": 30, "fsync": "interval", "fsync_interval_s": 0.5},
    )
    daemon = DaemonProcess(
        config=write_config(workdir / "config.yaml", data), workdir=workdir, stdin_pipe=True, stderr="pipe"
    )
    try:
        daemon.wait_ready()
        assert sorted(p.name for p in workdir.glob("events.jsonl*")) == ["events.jsonl", "events.jsonl.1"]
        expired = [r["path"] for r in daemon.events_logged("event log file expired")]
        assert sorted(Path(p).name for p in expired) == ["events.jsonl.2", "events.jsonl.3"]

        t = time.time() - 31 * DAY  # the remaining rotated file ages past the limit while the daemon runs
        os.utime(log.with_name("events.jsonl.1"), (t, t))
        wait_until(lambda: not log.with_name("events.jsonl.1").exists(), what="retention while running")
        daemon.close_stdin()
        assert daemon.wait() == 0
    finally:
        daemon.close()
    assert sorted(p.name for p in workdir.glob("events.jsonl*")) == ["events.jsonl"]


def test_metadata_only_leaves_no_transcript_anywhere(
    control_run: tuple[Path, set[str]], tiny_checkpoint: Path, speech_file: Path, workdir: Path
) -> None:
    control_dir, telling = control_run
    assert len(telling) >= 2, f"the control run produced too few distinctive words: {telling}"
    control_text = "\n".join(f.read_text() for f in log_files(control_dir / "events.jsonl"))
    assert telling <= set(_WORD.findall(control_text))  # the search works: in normal mode the words are there

    data = daemon_config(
        workdir,
        tiny_checkpoint,
        audio={"file": str(speech_file), "source": "file"},
        event_log={"metadata_only": True, "include_partials": True, "rotate_bytes": 4096, "keep_files": 10},
        logging={"level": "debug", "format": "json"},  # the most the diagnostic log ever says
    )
    filler = json.dumps({"type": "status", "state": "listening", "detail": "x" * 150}) + "\n"
    (workdir / "events.jsonl").write_text(filler * 20)  # nearly full: the run rotates it
    proc = _run_file(write_config(workdir / "config.yaml", data))
    assert proc.returncode == 0, proc.stderr
    records = log_records(workdir / "events.jsonl")
    finals = [r for r in records if r["type"] == "final"]
    assert len(finals) >= 2 and all(r["redacted"] is True and "word_count" in r for r in finals)
    assert not any("text" in r or "words" in r for r in records)

    written = {p: p.read_bytes().decode("utf-8", "replace") for p in workdir.rglob("*") if p.is_file()}
    written[workdir / "(stderr: the diagnostic log)"] = proc.stderr
    assert len(log_files(workdir / "events.jsonl")) >= 2  # rotated files are searched too
    for path, text in written.items():
        if path.name == "config.yaml":
            continue
        leaked = sorted(telling & set(_WORD.findall(text)))
        assert not leaked, f"{path.name} holds transcript words {leaked}"
