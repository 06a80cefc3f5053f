"""The microphone failing under the daemon, through a real PulseAudio server with a virtual
microphone: the source module unloaded mid-utterance, the sound server frozen (SIGSTOP), and the
sound server killed, each followed by recovery. Checked: status events, the utterance cut short
gets its final, the input is reopened with backoff, transcription resumes, the daemon neither
crashes nor hangs, and systemd's watchdog is fed exactly when docs/deployment.md says: while audio
flows or a lost input is being retried, not while audio has silently stopped.

tests/daemon/test_run_mic.py covers a killed server's event flow; this adds the watchdog and the
other two faults."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import utterances
from reliability_helpers import daemon_config

from ambient.devtools.client import Client
from ambient.devtools.daemon import DaemonProcess, write_config
from ambient.devtools.waiting import wait_until

pytestmark = pytest.mark.slow

#: The daemon pings every 0.2 s (a third of this) when it pings at all.
WATCHDOG_USEC = 600_000
#: No audio for this long counts as a lost input: longer than the silent window checked below.
STALL_S = 8.0


def _pactl(server: Any, *args: str) -> str:
    out = subprocess.run(["pactl", *args], env=server.client_env(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _module_id(server: Any, name: str) -> str:
    for line in _pactl(server, "list", "short", "modules").splitlines():
        fields = line.split()
        if fields[1] == name:
            return fields[0]
    raise AssertionError(f"{name} is not loaded")


def test_lost_frozen_and_killed_audio_is_survived(
    pulse_factory: Callable[[], Any],
    synth: Callable[..., Path],
    compose: Callable[..., Path],
    tiny_checkpoint: Path,
    workdir: Path,
) -> None:
    server = pulse_factory()
    long_speech = compose(
        workdir / "long.wav",
        [0.3, synth("turn on the kitchen light"), synth("what is the weather like tomorrow"), synth("close the door")],
    )
    short_speech = compose(workdir / "short.wav", [0.3, synth("set a timer", "flite"), 1.5])
    data = daemon_config(
        workdir,
        tiny_checkpoint,
        audio={"source": "mic", "reopen_initial_s": 0.2, "reopen_max_s": 1.0, "stall_timeout_s": STALL_S},
    )
    daemon = DaemonProcess(
        config=write_config(workdir / "config.yaml", data),
        workdir=workdir,
        env=server.client_env(),
        watchdog_usec=WATCHDOG_USEC,
        stderr="pipe",
    )
    client: Client | None = None
    keeper: subprocess.Popen[bytes] | None = None

    def pings() -> int:
        return daemon.notify.count("WATCHDOG")

    def pings_continue(what: str) -> None:
        n = pings()
        wait_until(lambda: pings() >= n + 3, what=f"watchdog pings {what}")

    def states() -> list[str]:
        assert client is not None
        return [m["state"] for m in client.of_type("status")]

    def wait_state(state: str, count: int) -> None:
        wait_until(lambda: states().count(state) >= count, what=f"status {state} #{count}")

    def transcribes(n_finals: int) -> None:
        assert client is not None
        assert server.play(short_speech).wait(timeout=60) == 0
        assert client.wait_type("final", count=n_finals)[-1]["reason"] == "silence"

    try:
        daemon.wait_ready()
        client = Client(workdir / "ambient.sock")
        client.wait_type("hello")
        pings_continue("while audio flows")

        # 1. The microphone's module is unloaded in the middle of an utterance.
        server.play(long_speech)
        (start,) = client.wait_type("speech_start")
        _pactl(server, "unload-module", _module_id(server, "module-null-sink"))  # takes vmic with it
        wait_state("audio_lost", 1)
        (cut,) = client.wait_type("final")
        assert cut["utterance_id"] == start["utterance_id"] and cut["reason"] == "audio_lost"
        pings_continue("while the lost input is retried")
        _pactl(server, "load-module", "module-null-sink", "sink_name=vsink", "rate=16000", "channels=1")
        _pactl(server, "load-module", "module-remap-source", "source_name=vmic", "master=vsink.monitor")
        _pactl(server, "set-default-source", "vmic")
        keeper = subprocess.Popen(  # the fixture's low-latency reader went with the old sink
            ["parec", "-d", "vsink.monitor", "--latency-msec=20", "--raw"],
            env=server.client_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_state("audio_restored", 1)
        transcribes(2)

        # 2. The sound server freezes: no error, no audio. No pings until the stall is declared a loss.
        pid = int((server.root / "pulse" / "pid").read_text())
        pings_continue("before the freeze")
        frozen_at = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(1.5)  # audio already on its way drains
            before = pings()
            time.sleep(2.5)
            during = pings()
            still_quiet = time.monotonic() - frozen_at < STALL_S and states().count("audio_lost") == 1
            wait_state("audio_lost", 2)
            pings_continue("once the stall counts as a lost input")
        finally:
            os.kill(pid, signal.SIGCONT)
        assert still_quiet, "the stall was declared before the silent window ended: the check proves nothing"
        assert during == before, "the watchdog was fed while no audio arrived"
        wait_state("audio_restored", 2)
        transcribes(3)

        # 3. The sound server is killed, and started again at the same place.
        keeper.kill()
        keeper.wait(timeout=10)
        keeper = None
        server.stop()
        wait_state("audio_lost", 3)
        pings_continue("while the dead server is retried")
        server.start()
        wait_state("audio_restored", 3)
        transcribes(4)

        assert daemon.proc.poll() is None
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
        client.wait_eof()
    finally:
        if keeper is not None and keeper.poll() is None:
            keeper.kill()
            keeper.wait(timeout=10)
        if client is not None:
            client.close()
        daemon.close()

    assert states() == ["audio_lost", "audio_restored"] * 3
    groups = utterances(client.messages)  # one final per speech_start, never overlapping
    assert [evs[-1]["reason"] for evs in groups.values()] == ["audio_lost", "silence", "silence", "silence"]
    lost = [m for m in client.of_type("status") if m["state"] == "audio_lost"]
    assert [m["counters"]["audio_losses"] for m in lost] == [1, 2, 3]
    assert f"no audio for {STALL_S:g} s" in lost[1]["detail"]
    assert not [r for r in daemon.logs() if r.get("event") == "recognition worker failed"]
