"""End to end through a real (virtual) microphone: PulseAudio -> PortAudio -> daemon -> clients.

Speech is synthesized at test time and played into the virtual microphone in real time; the client
is ``ambient listen --json`` in a subprocess. The model has random weights, so the tests check the
event flow and structure, never the words.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import base_config, check_final, finals_of, utterances

from ambient.devtools.client import Listener
from ambient.devtools.daemon import DaemonProcess, read_log, write_config

pytestmark = pytest.mark.slow

SENTENCE_A = "turn on the kitchen light"
SENTENCE_B = "what is the weather like tomorrow"


def _strip_seq(msg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in msg.items() if k != "seq"}


def test_two_utterances_reach_the_client_and_the_event_log(
    pulse: Any,
    synth: Callable[..., Path],
    compose: Callable[..., Path],
    tiny_checkpoint: Path,
    workdir: Path,
) -> None:
    wav = compose(workdir / "two.wav", [0.5, synth(SENTENCE_A), 1.5, synth(SENTENCE_B, "flite"), 1.5])
    cfg = write_config(workdir / "config.yaml", base_config(workdir, tiny_checkpoint, source="mic"))
    daemon = DaemonProcess(config=cfg, workdir=workdir, env=pulse.client_env(), watchdog_usec=3_000_000)
    listener: Listener | None = None
    try:
        ready = daemon.wait_ready()
        assert ready["STATUS"].startswith("Listening")
        listener = Listener(workdir / "ambient.sock")
        (hello,) = listener.wait_type("hello")
        assert hello["protocol"] == 1 and hello["sample_rate"] == 16000 and hello["model"] == "tiny-repeat"
        daemon.notify.wait_for("WATCHDOG", "1")  # pings only while audio flows: the microphone is live
        player = pulse.play(wav)
        assert player.wait(timeout=60) == 0
        finals = listener.wait_type("final", count=2)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
        listener.wait_type("bye")
        listener.wait_eof()
    finally:
        if listener is not None:
            listener.close()
        daemon.close()

    groups = utterances(listener.events())
    assert len(groups) == 2, listener.types()
    assert [f["reason"] for f in finals_of(groups)] == ["silence", "silence"]
    assert finals == finals_of(groups)
    assert sum(len(evs) - 2 for evs in groups.values()) >= 1  # partials while speaking
    for f in finals:
        check_final(f)
    starts = [evs[0] for evs in groups.values()]
    assert starts[0]["offset"] < finals[0]["offset_end"] <= starts[1]["offset"] < finals[1]["offset_end"]
    assert listener.messages[-1] == {"type": "bye", "reason": "shutdown"}
    assert not (workdir / "ambient.sock").exists()

    logged = read_log(workdir / "events.jsonl")
    assert [r for r in logged if r["type"] == "final"] == [_strip_seq(f) for f in finals]
    assert [r["utterance_id"] for r in logged if r["type"] == "speech_start"] == list(groups)
    assert logged[0]["type"] == "status" and logged[0]["state"] == "listening"


def test_microphone_lost_and_restored(
    pulse_factory: Callable[[], Any],
    synth: Callable[..., Path],
    compose: Callable[..., Path],
    tiny_checkpoint: Path,
    workdir: Path,
) -> None:
    server = pulse_factory()
    long_speech = compose(workdir / "long.wav", [0.3, synth(SENTENCE_A), synth(SENTENCE_B), synth(SENTENCE_A)])
    after = compose(workdir / "after.wav", [0.3, synth(SENTENCE_B, "flite"), 1.5])
    data = base_config(workdir, tiny_checkpoint, source="mic")
    data["audio"] |= {"reopen_initial_s": 0.2, "reopen_max_s": 1.0}
    cfg = write_config(workdir / "config.yaml", data)
    daemon = DaemonProcess(config=cfg, workdir=workdir, env=server.client_env(), watchdog_usec=3_000_000)
    listener: Listener | None = None
    try:
        daemon.wait_ready()
        listener = Listener(workdir / "ambient.sock")
        listener.wait_type("hello")
        daemon.notify.wait_for("WATCHDOG", "1")
        server.play(long_speech)
        (start,) = listener.wait_type("speech_start")
        server.stop()  # the sound server dies mid-utterance, like an unplugged USB microphone
        lost = listener.wait_for(lambda m: m.get("state") == "audio_lost", what="status audio_lost")
        (cut,) = listener.wait_type("final")
        assert cut["utterance_id"] == start["utterance_id"] and cut["reason"] == "audio_lost"
        assert lost["counters"]["audio_losses"] == 1

        server.start()  # a new server at the same place: the daemon finds it again
        listener.wait_for(lambda m: m.get("state") == "audio_restored", what="status audio_restored")
        assert server.play(after).wait(timeout=60) == 0
        finals = listener.wait_type("final", count=2)
        assert finals[1]["reason"] == "silence"
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        if listener is not None:
            listener.close()
        daemon.close()
    groups = utterances(listener.events())
    assert len(groups) == 2
    states = [m["state"] for m in listener.events() if m["type"] == "status"]
    assert states.index("audio_lost") < states.index("audio_restored")
    assert daemon.notify.count("STATUS") >= 3  # listening, lost, restored
