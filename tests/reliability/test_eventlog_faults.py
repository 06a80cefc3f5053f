"""The event log failing under a running daemon: the disk fills (RLIMIT_FSIZE put on the daemon
with prlimit, the same EFBIG a full file system's ENOSPC takes through the same path), the log file
is deleted by a user purging transcripts, and the log directory is replaced by a file. Clients keep
receiving every final, the failure is reported once in the diagnostic log and as a ``status``
event, and the log recovers by itself when writing works again. (You are root here, so chmod
cannot make a directory unwritable; these faults stop root too.)"""

from __future__ import annotations

import resource
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from daemon_helpers import pcm16
from reliability_helpers import daemon_config, log_records

from ambient.audio.io import read_audio
from ambient.devtools.client import Client
from ambient.devtools.daemon import DaemonProcess, write_config

pytestmark = pytest.mark.slow


def _finals_logged(log: Path) -> list[str]:
    return [r["utterance_id"] for r in log_records(log) if r["type"] == "final"]


def test_the_log_fails_and_recovers_while_clients_keep_every_final(
    synth: Callable[..., Path], tiny_checkpoint: Path, workdir: Path
) -> None:
    speech = read_audio(synth("turn off the radio"))
    utterance = pcm16(np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(16000, np.float32)]))
    log_dir = workdir / "state"
    log = log_dir / "events.jsonl"
    data = daemon_config(workdir, tiny_checkpoint, audio={"source": "stdin"}, event_log={"path": str(log)})
    daemon = DaemonProcess(
        config=write_config(workdir / "config.yaml", data), workdir=workdir, stdin_pipe=True, stderr="pipe"
    )
    client: Client | None = None

    def say(n: int) -> str:
        """One utterance through stdin; returns the utterance id of its final, once received."""
        assert client is not None
        daemon.write(utterance)
        return str(client.wait_type("final", count=n)[-1]["utterance_id"])

    def states() -> list[str]:
        assert client is not None
        return [m["state"] for m in client.of_type("status")]

    try:
        daemon.wait_ready()
        client = Client(workdir / "ambient.sock")
        client.wait_type("hello")
        u1 = say(1)
        assert _finals_logged(log) == [u1]

        # The disk is full: no byte more may be written to any file.
        soft, hard = resource.prlimit(daemon.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(daemon.pid, resource.RLIMIT_FSIZE, (log.stat().st_size, hard))
        u2 = say(2)
        u3 = say(3)
        error = client.wait_for(lambda m: m.get("state") == "event_log_error", what="status event_log_error")
        assert str(log) in error["detail"] and "too large" in error["detail"].lower()
        assert _finals_logged(log) == [u1]  # what failed left no partial line behind
        resource.prlimit(daemon.pid, resource.RLIMIT_FSIZE, (soft, hard))  # space again
        u4 = say(4)
        ok = client.wait_for(lambda m: m.get("state") == "event_log_ok", what="status event_log_ok")
        assert ok["counters"]["event_log_failures"] == 4  # speech_start and final of two utterances
        assert _finals_logged(log) == [u1, u4]

        # A user deletes the log to purge transcripts: the next events go to a new file, not to the
        # deleted one.
        log.unlink()
        u5 = say(5)
        assert _finals_logged(log) == [u5]

        # The log's directory is replaced by a file: writing fails until it is a directory again.
        shutil.rmtree(log_dir)
        log_dir.write_text("not a directory\n")
        u6 = say(6)
        assert states().count("event_log_error") == 2
        log_dir.unlink()
        u7 = say(7)
        assert states().count("event_log_ok") == 2
        assert _finals_logged(log) == [u7]

        daemon.close_stdin()
        assert daemon.wait() == 0
        client.wait_eof()
    finally:
        if client is not None:
            client.close()
        daemon.close()

    received = [m["utterance_id"] for m in client.of_type("final")]
    assert received == [u1, u2, u3, u4, u5, u6, u7]  # clients never missed a final
    assert states() == ["event_log_error", "event_log_ok", "event_log_error", "event_log_ok"]
    failed = daemon.events_logged("event log write failed; events are not being logged")
    assert len(failed) == 2 and all(r["level"] == "error" for r in failed)
    assert all(str(log) in r["error"] for r in failed)
    assert len(daemon.events_logged("event log writable again")) == 2


def _say_and_stop(daemon: DaemonProcess, client: Client, utterance: bytes, count: int) -> list[str]:
    for n in range(1, count + 1):
        daemon.write(utterance)
        client.wait_type("final", count=n)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    return [m["utterance_id"] for m in client.of_type("final")]


def test_a_broken_diagnostic_log_never_stops_transcription(
    synth: Callable[..., Path], tiny_checkpoint: Path, workdir: Path
) -> None:
    """stderr is journald's stream socket; when it breaks (journald restarted, a pipe to a reader
    that went away) log lines are lost, transcription is not."""
    speech = read_audio(synth("turn off the radio"))
    utterance = pcm16(np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(16000, np.float32)]))
    data = daemon_config(workdir, tiny_checkpoint, audio={"source": "stdin"}, logging={"level": "debug"})
    daemon = DaemonProcess(
        config=write_config(workdir / "config.yaml", data), workdir=workdir, stdin_pipe=True, stderr="pipe"
    )
    client: Client | None = None
    try:
        daemon.wait_ready()
        client = Client(workdir / "ambient.sock")
        client.wait_type("hello")
        daemon.break_stderr()  # every log line from now on fails with EPIPE
        received = _say_and_stop(daemon, client, utterance, 2)
    finally:
        if client is not None:
            client.close()
        daemon.close()
    assert len(received) == 2 and _finals_logged(workdir / "events.jsonl") == received
    assert client.messages[-1] == {"type": "bye", "reason": "shutdown"}


def test_a_full_disk_from_the_start_still_serves_clients(
    synth: Callable[..., Path], tiny_checkpoint: Path, workdir: Path
) -> None:
    """No file may grow at all (RLIMIT_FSIZE 1 byte from the first instruction): neither the event
    log nor a diagnostic log kept in a file can be written; clients still get every final."""
    speech = read_audio(synth("turn off the radio"))
    utterance = pcm16(np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(16000, np.float32)]))
    data = daemon_config(workdir, tiny_checkpoint, audio={"source": "stdin"})
    stderr_file = workdir / "daemon.log"

    def full_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))

    daemon = DaemonProcess(
        config=write_config(workdir / "config.yaml", data),
        workdir=workdir,
        stdin_pipe=True,
        preexec_fn=full_disk,
        stderr=stderr_file,
    )
    client: Client | None = None
    try:
        daemon.wait_ready()
        client = Client(workdir / "ambient.sock")
        client.wait_type("hello")
        received = _say_and_stop(daemon, client, utterance, 2)
    finally:
        if client is not None:
            client.close()
        daemon.close()
    assert len(received) == 2
    assert stderr_file.stat().st_size <= 1 and (workdir / "events.jsonl").stat().st_size <= 1
    errors = [m for m in client.of_type("status") if m["state"] == "event_log_error"]
    assert errors == [] or "too large" in errors[0]["detail"].lower()  # published before we connected
    assert client.messages[-1] == {"type": "bye", "reason": "shutdown"}
