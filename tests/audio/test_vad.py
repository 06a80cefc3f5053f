"""The voice gate: start rule, pre-roll, hangover, minimum speech, maximum length, flush.

Most tests drive the gate with a deterministic classifier: every sample of frame ``i`` holds
``2 * i + 2 + voiced``, so the classifier reads the parity and the tests can tell exactly which
frames each event carried. One test runs the real webrtcvad on synthesized speech.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ambient.audio.vad import SpeechAudio, SpeechEnded, SpeechStarted, VoiceGate
from ambient.config import VadConfig

FRAME = 160  # 10 ms at 16 kHz


def fake_is_speech(frame: bytes) -> bool:
    return bool(np.frombuffer(frame, dtype="<i2")[0] % 2 == 1)


def frame(i: int, voiced: bool) -> np.ndarray:
    return np.full(FRAME, 2 * i + 2 + int(voiced), dtype=np.int16)


def frame_ids(audio: np.ndarray) -> list[int]:
    """Indices of the frames an audio array is made of."""
    assert len(audio) % FRAME == 0
    return [int(audio[k]) // 2 - 1 for k in range(0, len(audio), FRAME)]


def gate(**kw: object) -> VoiceGate:
    base: dict[str, object] = {
        "frame_ms": 10,
        "start_ms": 30,
        "start_window_ms": 50,
        "preroll_ms": 20,
        "hangover_ms": 50,
        "min_speech_ms": 0,
        "max_utterance_s": 600,
    }
    base.update(kw)
    return VoiceGate(VadConfig.model_validate(base), is_speech=fake_is_speech)


def run(g: VoiceGate, pattern: str, *, first: int = 0) -> list[tuple[int, object]]:
    """Feed one frame per character ('X' voiced, '_' silence); returns (frame index, event) pairs."""
    out: list[tuple[int, object]] = []
    for k, c in enumerate(pattern):
        i = first + k
        for e in g.process(frame(i, c == "X")):
            out.append((i, e))
    return out


def kinds(events: list[tuple[int, object]]) -> list[str]:
    return [type(e).__name__ for _, e in events]


def test_start_carries_preroll_before_the_first_voiced_frame() -> None:
    g = gate()
    events = run(g, "_" * 10 + "XXX")
    assert kinds(events) == ["SpeechStarted"]
    i, start = events[0]
    assert i == 12 and isinstance(start, SpeechStarted)
    # onset = frame 10, pre-roll 2 frames -> frames 8..12
    assert frame_ids(start.audio) == [8, 9, 10, 11, 12]
    assert start.start_sample == 8 * FRAME
    assert start.onset_sample == 10 * FRAME
    assert g.active


def test_preroll_is_limited_by_the_available_history() -> None:
    g = gate(preroll_ms=200)
    _, start = run(g, "__XXX")[0]
    assert isinstance(start, SpeechStarted)
    assert frame_ids(start.audio) == [0, 1, 2, 3, 4]
    assert start.start_sample == 0


def test_scattered_voiced_frames_below_the_start_rule_never_open() -> None:
    g = gate()
    assert run(g, "X___X___XX___X_X__X__" * 5) == []
    assert g.idle


def test_hangover_of_silence_ends_the_utterance_and_frames_flow_until_then() -> None:
    g = gate()
    events = run(g, "XXX" + "XXXX" + "_X" + "_____" + "___")
    assert kinds(events) == ["SpeechStarted"] + ["SpeechAudio"] * 11 + ["SpeechEnded"]
    audio_ids = [frame_ids(e.audio)[0] for _, e in events if isinstance(e, SpeechAudio)]
    assert audio_ids == list(range(3, 14))  # every frame after the start, silence included
    # each frame carries the run of silence it ends (the worker starts the final pass on it)
    silences = [e.silence_ms for _, e in events if isinstance(e, SpeechAudio)]
    assert silences == [0, 0, 0, 0, 10, 0, 10, 20, 30, 40, 50]
    i, end = events[-1]
    assert isinstance(end, SpeechEnded)
    assert end.reason == "silence"
    assert i == 13 and end.end_sample == 14 * FRAME  # the 5th silent frame after frame 8
    assert end.speech_end_sample == 9 * FRAME  # after frame 8, the last voiced one
    assert g.idle


def test_a_new_utterance_after_the_end_does_not_reuse_old_audio_as_preroll() -> None:
    g = gate(preroll_ms=100)
    events = run(g, "XXX" + "_____" + "XXX")
    starts = [e for _, e in events if isinstance(e, SpeechStarted)]
    assert len(starts) == 2
    assert min(frame_ids(starts[1].audio)) >= 8  # nothing from the first utterance


def test_too_little_voiced_audio_is_discarded_silently() -> None:
    g = gate(min_speech_ms=80)
    assert run(g, "_____XXXXX" + "_" * 20) == []  # 5 voiced frames < 8
    assert g.idle


def test_min_speech_delays_the_start_without_losing_audio() -> None:
    g = gate(min_speech_ms=80)
    events = run(g, "___" + "XXX_XXXXX" + "______")
    assert kinds(events)[0] == "SpeechStarted"
    i, start = events[0]
    assert isinstance(start, SpeechStarted)
    assert i == 11  # the 8th voiced frame
    ids = frame_ids(start.audio) + [frame_ids(e.audio)[0] for _, e in events[1:] if isinstance(e, SpeechAudio)]
    assert ids == list(range(1, 17))  # pre-roll from frame 1, contiguous to the end
    assert isinstance(events[-1][1], SpeechEnded)


def test_discarded_pending_audio_becomes_history_for_the_next_start() -> None:
    g = gate(min_speech_ms=100, preroll_ms=30)
    events = run(g, "XXX_____" + "XXXXXXXXXX")
    starts = [e for _, e in events if isinstance(e, SpeechStarted)]
    assert len(starts) == 1
    assert frame_ids(starts[0].audio)[:3] == [5, 6, 7]  # pre-roll from the discarded attempt's tail


def test_max_length_splits_and_continues_contiguously() -> None:
    g = gate(max_utterance_s=1.0)  # 100 frames
    events = run(g, "X" * 250)
    events += [(250, e) for e in g.flush("shutdown")]
    names = kinds(events)
    assert names.count("SpeechStarted") == 3
    ends = [e for _, e in events if isinstance(e, SpeechEnded)]
    assert [e.reason for e in ends] == ["max_length", "max_length", "shutdown"]
    starts = [e for _, e in events if isinstance(e, SpeechStarted)]
    assert starts[1].start_sample == ends[0].end_sample and len(starts[1].audio) == 0
    assert starts[2].start_sample == ends[1].end_sample
    # every frame from the first start is delivered exactly once
    ids = frame_ids(starts[0].audio) + [frame_ids(e.audio)[0] for _, e in events if isinstance(e, SpeechAudio)]
    assert ids == list(range(250))
    for s, e in zip(starts, ends, strict=True):
        assert e.end_sample - s.start_sample <= 100 * FRAME


def test_max_length_reached_in_silence_closes_the_gate() -> None:
    g = gate(max_utterance_s=1.0, hangover_ms=200)
    events = run(g, "X" * 95 + "_" * 10 + "_" * 10)
    assert kinds(events).count("SpeechStarted") == 1
    ends = [e for _, e in events if isinstance(e, SpeechEnded)]
    assert [e.reason for e in ends] == ["max_length"]
    assert g.idle


def test_flush_closes_an_announced_utterance_and_drops_a_pending_one() -> None:
    g = gate()
    run(g, "XXXX")
    (end,) = g.flush("shutdown")
    assert isinstance(end, SpeechEnded) and end.reason == "shutdown"
    assert g.idle and g.flush("shutdown") == []
    p = gate(min_speech_ms=200)
    assert run(p, "XXXX") == []
    assert p.flush("end_of_stream") == []


def test_rejects_frames_of_the_wrong_size_or_type() -> None:
    g = gate()
    with pytest.raises(ValueError, match="int16 frame of 160"):
        g.process(np.zeros(100, dtype=np.int16))
    with pytest.raises(ValueError):
        g.process(np.zeros(FRAME, dtype=np.float32))


@settings(max_examples=200, deadline=None)
@given(
    voiced=st.lists(st.booleans(), min_size=1, max_size=400),
    start_ms=st.sampled_from([10, 30, 60]),
    extra_window=st.sampled_from([0, 20, 100]),
    preroll_ms=st.sampled_from([0, 30, 200]),
    hangover_ms=st.sampled_from([30, 60, 150]),
    min_speech_ms=st.sampled_from([0, 50, 200]),
    max_s=st.sampled_from([1.0, 2.0]),
)
def test_every_start_gets_exactly_one_end_and_audio_is_contiguous(
    voiced: list[bool],
    start_ms: int,
    extra_window: int,
    preroll_ms: int,
    hangover_ms: int,
    min_speech_ms: int,
    max_s: float,
) -> None:
    g = gate(
        start_ms=start_ms,
        start_window_ms=start_ms + extra_window,
        preroll_ms=preroll_ms,
        hangover_ms=hangover_ms,
        min_speech_ms=min_speech_ms,
        max_utterance_s=max_s,
    )
    events = [e for i, v in enumerate(voiced) for e in g.process(frame(i, v))] + g.flush("shutdown")
    open_start: SpeechStarted | None = None
    delivered: list[int] = []
    last_end = 0
    for e in events:
        if isinstance(e, SpeechStarted):
            assert open_start is None
            assert e.start_sample >= last_end  # utterances never overlap
            open_start = e
            ids = frame_ids(e.audio)
            assert ids == list(range(e.start_sample // FRAME, e.start_sample // FRAME + len(ids)))
            delivered = ids
        elif isinstance(e, SpeechAudio):
            assert open_start is not None
            (i,) = frame_ids(e.audio)
            assert i == (delivered[-1] + 1 if delivered else open_start.start_sample // FRAME)
            delivered.append(i)
        else:
            assert open_start is not None
            assert e.end_sample == open_start.start_sample + len(delivered) * FRAME
            assert open_start.start_sample <= e.speech_end_sample <= e.end_sample
            last_end = e.end_sample
            open_start = None
    assert open_start is None
    assert g.idle


def test_real_webrtcvad_finds_one_utterance_in_synthesized_speech(synth: Callable[..., Path]) -> None:
    from ambient.audio.io import read_audio
    from ambient.audio.resample import to_int16

    speech = to_int16(read_audio(synth("the quick brown fox jumps over the lazy dog")))
    silence = np.zeros(16000, dtype=np.int16)
    rng = np.random.default_rng(0)
    hiss = (rng.standard_normal(32000) * 30).astype(np.int16)  # about -60 dBFS of background noise
    audio = np.concatenate([silence, hiss, speech, silence, silence])
    speech_at = len(silence) + len(hiss)
    g = VoiceGate(VadConfig(frame_ms=30))
    n = g.frame_samples
    events = [e for k in range(0, len(audio) - n + 1, n) for e in g.process(audio[k : k + n])]
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(starts) == 1 and len(ends) == 1
    assert ends[0].reason == "silence"
    # The onset is found within a few frames of where the speech begins, and pre-roll reaches before it.
    assert abs(starts[0].onset_sample - speech_at) < 0.3 * 16000
    assert starts[0].start_sample < starts[0].onset_sample
    assert ends[0].speech_end_sample >= speech_at + len(speech) - 0.3 * 16000


def _hum(seconds: float, dbfs: float) -> np.ndarray:
    t = np.arange(round(seconds * 16000)) / 16000
    x = sum(np.sin(2 * np.pi * 50 * k * t + k) / k for k in range(1, 8))
    x = x / np.sqrt(np.mean(x**2)) * 10 ** (dbfs / 20)
    return (x * 32767).astype(np.int16)


@pytest.mark.parametrize("margin", [None, 8.0])
def test_mains_hum_holds_the_gate_open_only_without_the_noise_floor(
    synth: Callable[..., Path], margin: float | None
) -> None:
    """50 Hz hum at -30 dBFS passes webrtcvad as voiced; the tracked floor keeps the gate shut,
    and a sentence spoken over the same hum still opens it exactly once."""
    from ambient.audio.io import read_audio
    from ambient.audio.resample import to_int16

    voice = read_audio(synth("please turn on the kitchen light"))
    voice = voice / np.sqrt(np.mean(voice**2)) * 10 ** (-18 / 20)  # 12 dB above the hum
    speech = to_int16(voice).astype(np.int32)
    hum = _hum(12.0, -30.0).astype(np.int32)
    at = 8 * 16000
    mixed = hum.copy()
    mixed[at : at + len(speech)] += speech
    g = VoiceGate(VadConfig(frame_ms=30, noise_margin_db=margin))
    n = g.frame_samples
    pcm = np.clip(mixed, -32768, 32767).astype(np.int16)
    timeline = [(k, e) for k in range(0, len(pcm) - n + 1, n) for e in g.process(pcm[k : k + n])]
    starts = [(k, e) for k, e in timeline if isinstance(e, SpeechStarted)]
    if margin is None:
        assert starts and starts[0][0] < at, "webrtcvad alone should take the hum for speech"
    else:
        assert len(starts) == 1, [k / 16000 for k, _ in starts]
        started = starts[0][1]
        assert isinstance(started, SpeechStarted)
        assert at <= started.onset_sample < at + 0.5 * 16000
        assert started.start_sample <= at + 0.15 * 16000, "the pre-roll reaches back to the first syllable"


def test_noise_floor_tracks_the_quietest_recent_frame() -> None:
    from ambient.audio.noisefloor import NoiseFloor, frame_dbfs

    assert frame_dbfs(np.zeros(480, np.int16)) == -120.0
    assert frame_dbfs(np.full(480, 32767, np.int16)) == pytest.approx(0.0, abs=0.01)
    f = NoiseFloor(frame_ms=100, window_s=4.0, margin_db=6.0)  # sub-blocks of 5 frames, 40 frames back
    assert f.floor_dbfs == -float("inf") and f.update(-50.0)  # the first frame always counts
    for _ in range(20):
        assert not f.update(-50.0)  # steady noise is not loud
    assert f.floor_dbfs == -50.0
    assert f.update(-43.0) and not f.update(-45.0)  # 7 dB above the floor, then only 5
    for _ in range(60):  # the room gets louder: after the window the floor has followed
        f.update(-30.0)
    assert f.floor_dbfs == -30.0 and not f.update(-28.0)
    f.update(-70.0)  # and a quieter frame lowers it at once
    assert f.floor_dbfs == -70.0 and f.update(-60.0)


def test_peak_hold_follows_the_loudest_recent_frame() -> None:
    from ambient.audio.noisefloor import PeakHold

    p = PeakHold(frame_ms=100, window_s=4.0, drop_db=30.0)  # sub-blocks of 5 frames, 40 frames back
    assert p.update(-20.0) and p.peak_dbfs == -20.0
    assert p.update(-45.0) and not p.update(-55.0)  # 25 dB below the peak, then 35
    for _ in range(60):  # after the window the loud frame is forgotten
        p.update(-60.0)
    assert p.peak_dbfs == -60.0 and p.update(-85.0) and not p.update(-95.0)


def test_the_decay_of_the_last_word_does_not_hold_the_gate(synth: Callable[..., Path]) -> None:
    """A word followed by an exponentially decaying tail (a reverberant room): with release_db the
    utterance ends on the speech's own scale, without it webrtcvad keeps calling the tail voiced."""
    from ambient.audio.io import read_audio
    from ambient.audio.resample import to_int16

    voice = read_audio(synth("open the garage door"))
    voice = voice / np.sqrt(np.mean(voice**2)) * 10 ** (-20 / 20)
    rng = np.random.default_rng(1)
    t = np.arange(16000) / 16000
    tail = rng.standard_normal(len(t)) * np.exp(-t / 0.12) * 0.05 * np.sin(2 * np.pi * 220 * t)  # -26 dBFS, fading
    audio = to_int16(np.concatenate([np.zeros(16000), voice, tail, np.zeros(32000)]))
    ends: dict[float | None, int] = {}
    for release in (None, 35.0):
        g = VoiceGate(VadConfig(frame_ms=30, release_db=release, noise_margin_db=None))
        n = g.frame_samples
        found = [e for k in range(0, len(audio) - n + 1, n) for e in g.process(audio[k : k + n])]
        stops = [e for e in found if isinstance(e, SpeechEnded)]
        assert len(stops) == 1
        ends[release] = stops[0].speech_end_sample
    voice_end = 16000 + len(voice)
    assert ends[35.0] <= voice_end + 0.1 * 16000
    assert ends[35.0] < ends[None]
