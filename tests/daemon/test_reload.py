"""SIGHUP reload of a running daemon: settings change live, clients stay connected, a broken file
is refused and the running configuration kept."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from daemon_helpers import base_config, pcm16, utterances
from scipy.signal import resample_poly

from ambient.audio.io import read_audio
from ambient.devtools.client import Listener
from ambient.devtools.daemon import DaemonProcess, write_config
from ambient.devtools.waiting import wait_until

pytestmark = pytest.mark.slow


def test_sighup_reloads_without_dropping_clients(
    synth: Callable[..., Path], tiny_checkpoint: Path, workdir: Path
) -> None:
    path = workdir / "config.yaml"
    data = base_config(workdir, tiny_checkpoint, source="stdin")
    write_config(path, data)
    daemon = DaemonProcess(config=path, workdir=workdir, stdin_pipe=True)
    listener: Listener | None = None
    try:
        daemon.wait_ready()
        listener = Listener(workdir / "ambient.sock")
        listener.wait_type("hello")

        data["logging"]["level"] = "debug"
        data["vad"] = {"hangover_ms": 2000}  # from the default 600 ms: a 1.2 s pause no longer ends an utterance
        data["model"]["threads"] = 2  # needs a restart: reported, not applied
        write_config(path, data)
        daemon.signal(signal.SIGHUP)
        reloaded = listener.wait_for(lambda m: m.get("state") == "reloaded", what="status reloaded")
        assert "applied: logging, vad" in reloaded["detail"]
        assert "restart needed for: model.threads" in reloaded["detail"]

        # Still transcribing after the reload, on the same connection, with the new gate: two sentences
        # 1.2 s apart are one utterance (the old 600 ms hangover would have made two).
        speech, other = read_audio(synth("switch off the radio")), read_audio(synth("turn on the light"))
        pause = np.zeros(19200, np.float32)
        daemon.write(
            pcm16(np.concatenate([np.zeros(8000, np.float32), speech, pause, other, np.zeros(40000, np.float32)]))
        )
        (final,) = listener.wait_type("final")
        assert final["reason"] == "silence"
        assert final["offset_end"] - final["offset_start"] > (len(speech) + len(pause) + len(other)) / 16000 - 0.6
        assert any(r.get("event") == "speech started" and r["level"] == "debug" for r in daemon.logs())

        # A changed input format reopens the input; the same pipe now carries 8 kHz audio.
        data["audio"]["stdin_rate"] = 8000
        write_config(path, data)
        daemon.signal(signal.SIGHUP)
        again = listener.wait_for(
            lambda m: m.get("state") == "reloaded" and m is not reloaded, what="second status reloaded"
        )
        assert again["detail"].startswith("applied: audio")
        # The worker reopens the input at its next read; what is written from then on is 8 kHz.
        wait_until(
            lambda: any("8000 Hz" in str(r.get("source")) for r in daemon.logs()), what="the input reopened at 8 kHz"
        )
        narrow = resample_poly(speech, 1, 2).astype(np.float32)
        daemon.write(pcm16(np.concatenate([np.zeros(4000, np.float32), narrow, np.zeros(20000, np.float32)])))
        finals = listener.wait_type("final", count=2)
        assert finals[1]["reason"] == "silence"

        path.write_text("vad:\n  hangover_ms: 300\n  bogus_key: 1\n")
        daemon.signal(signal.SIGHUP)
        failed = listener.wait_for(lambda m: m.get("state") == "reload_failed", what="status reload_failed")
        assert "unknown key 'vad.bogus_key'" in failed["detail"]
        assert daemon.proc.poll() is None

        daemon.close_stdin()
        assert daemon.wait() == 0
        listener.wait_eof()
    finally:
        if listener is not None:
            listener.close()
        daemon.close()
    assert [m["type"] for m in listener.messages].count("hello") == 1  # one connection throughout
    assert listener.messages[-1] == {"type": "bye", "reason": "shutdown"}
    assert len(utterances(listener.events())) == 2
    assert daemon.notify.count("RELOADING") == 3
    assert daemon.notify.count("READY") == 4  # startup and after each reload
    assert any(r.get("event") == "audio settings changed; reopening the input" for r in daemon.logs())
