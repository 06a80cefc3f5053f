"""End to end with the file and stdin sources, shutdown on SIGTERM and end of input, and
systemd notifications. Audio is synthesized speech; the model has random weights."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from daemon_helpers import base_config, check_final, finals_of, pcm16, utterances

from ambient.audio.io import read_audio
from ambient.devtools.client import Listener
from ambient.devtools.daemon import DaemonProcess, read_log, write_config
from ambient.devtools.waiting import wait_until

pytestmark = pytest.mark.slow

SENTENCE_A = "please open the garage door"
SENTENCE_B = "remind me to call my sister tonight"


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * 16000), dtype=np.float32)


def test_file_source_runs_to_the_end_and_exits_cleanly(
    synth: Callable[..., Path],
    compose: Callable[..., Path],
    tiny_checkpoint: Path,
    workdir: Path,
) -> None:
    a, b = read_audio(synth(SENTENCE_A)), read_audio(synth(SENTENCE_B, "flite"))
    wav = compose(workdir / "two.wav", [1.0, synth(SENTENCE_A), 2.0, synth(SENTENCE_B, "flite"), 1.0], rate=22050)
    cfg = write_config(workdir / "config.yaml", base_config(workdir, tiny_checkpoint))
    proc = subprocess.run(
        [sys.executable, "-m", "ambient", "run", "--config", str(cfg), "--file", str(wav), "--fast"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    records = read_log(workdir / "events.jsonl")
    groups = utterances([{**r, "seq": i + 1} for i, r in enumerate(records)])
    assert len(groups) == 2
    finals = finals_of(groups)
    assert [f["reason"] for f in finals] == ["silence", "silence"]  # 1 s of trailing silence
    for f in finals:
        check_final(f)
    # Offsets follow the file: speech begins at 1.0 s and 1.0 + len(a) + 2.0 s (pre-roll: up to 0.3 s before).
    starts = [evs[0]["offset"] for evs in groups.values()]
    assert 0.5 < starts[0] <= 1.3
    second = 1.0 + len(a) / 16000 + 2.0
    assert second - 0.5 < starts[1] <= second + 0.3
    assert finals[1]["offset_end"] <= second + len(b) / 16000 + 1.0 + 0.05
    assert not (workdir / "ambient.sock").exists()


def test_stdin_eof_finishes_the_utterance_in_flight(
    synth: Callable[..., Path], tiny_checkpoint: Path, workdir: Path
) -> None:
    cfg = write_config(workdir / "config.yaml", base_config(workdir, tiny_checkpoint, source="stdin"))
    daemon = DaemonProcess(config=cfg, workdir=workdir, stdin_pipe=True)
    listener: Listener | None = None
    try:
        daemon.wait_ready()
        listener = Listener(workdir / "ambient.sock")
        listener.wait_type("hello")
        audio = [silence(0.5), read_audio(synth(SENTENCE_A)), silence(1.5), read_audio(synth(SENTENCE_B))]
        daemon.write(pcm16(np.concatenate(audio)))  # the second utterance has no trailing silence
        daemon.close_stdin()
        assert daemon.wait() == 0
        listener.wait_eof()
    finally:
        if listener is not None:
            listener.close()
        daemon.close()
    groups = utterances(listener.events())
    assert [f["reason"] for f in finals_of(groups)] == ["silence", "end_of_stream"]
    assert listener.messages[-1] == {"type": "bye", "reason": "shutdown"}


def test_sigterm_drains_the_utterance_in_flight(
    synth: Callable[..., Path], tiny_checkpoint: Path, workdir: Path
) -> None:
    cfg = write_config(workdir / "config.yaml", base_config(workdir, tiny_checkpoint, source="stdin"))
    daemon = DaemonProcess(config=cfg, workdir=workdir, stdin_pipe=True)
    listener: Listener | None = None
    try:
        daemon.wait_ready()
        listener = Listener(workdir / "ambient.sock")
        listener.wait_type("hello")
        daemon.write(pcm16(np.concatenate([silence(0.5), read_audio(synth(SENTENCE_A))])))  # stdin stays open
        (start,) = listener.wait_type("speech_start")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
        listener.wait_eof()
    finally:
        if listener is not None:
            listener.close()
        daemon.close()
    (final,) = listener.wait_type("final")
    assert final["utterance_id"] == start["utterance_id"] and final["reason"] == "shutdown"
    check_final(final)
    assert listener.messages[-1] == {"type": "bye", "reason": "shutdown"}
    assert not (workdir / "ambient.sock").exists()
    logged = [r for r in read_log(workdir / "events.jsonl") if r["type"] == "final"]
    assert [r["reason"] for r in logged] == ["shutdown"]
    assert daemon.notify.wait_for("STOPPING", "1")


def test_notifications_ready_status_watchdog_stopping(
    compose: Callable[..., Path], synth: Callable[..., Path], tiny_checkpoint: Path, workdir: Path
) -> None:
    wav = compose(workdir / "a.wav", [0.5, synth(SENTENCE_A), 60.0])
    data = base_config(workdir, tiny_checkpoint, source="file", file=str(wav), realtime=True)
    cfg = write_config(workdir / "config.yaml", data)
    daemon = DaemonProcess(config=cfg, workdir=workdir, watchdog_usec=600_000)
    try:
        ready = daemon.wait_ready()
        assert "Listening" in ready["STATUS"] and "tiny-repeat" in ready["STATUS"]
        # WATCHDOG_USEC=0.6 s: pings keep coming while audio flows
        wait_until(lambda: daemon.notify.count("WATCHDOG") >= 3 or daemon.proc.poll() is not None, what="pings")
        assert daemon.proc.poll() is None, daemon.stderr_text()
        daemon.signal(signal.SIGINT)
        assert daemon.wait() == 0
        daemon.notify.wait_for("STOPPING", "1")
    finally:
        daemon.close()
    keys = [k for m in daemon.notify.messages for k in m]
    assert keys.index("READY") < keys.index("WATCHDOG") < keys.index("STOPPING")


def test_stale_socket_is_replaced_and_a_second_daemon_is_refused(tiny_checkpoint: Path, workdir: Path) -> None:
    sock_path = workdir / "ambient.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()  # the file stays behind, nobody accepts: what a crashed daemon leaves
    cfg = write_config(workdir / "config.yaml", base_config(workdir, tiny_checkpoint, source="stdin"))
    daemon = DaemonProcess(config=cfg, workdir=workdir, stdin_pipe=True)
    listener: Listener | None = None
    try:
        daemon.wait_ready()
        listener = Listener(sock_path)
        listener.wait_type("hello")
        second = subprocess.run(
            [sys.executable, "-m", "ambient", "run", "--config", str(cfg)],
            stdin=subprocess.PIPE,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 1
        (line,) = second.stderr.strip().splitlines()[-1:]
        assert line.startswith("ambient: error:") and "already serving" in line
        assert "Traceback" not in second.stderr
        assert daemon.proc.poll() is None  # the first daemon is unharmed
        daemon.close_stdin()
        assert daemon.wait() == 0
    finally:
        if listener is not None:
            listener.close()
        daemon.close()
