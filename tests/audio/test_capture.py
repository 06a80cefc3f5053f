"""Supervised capture from a file, from a pipe, and from a real (virtual) microphone."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from ambient.audio.capture import AudioBlock, AudioEnded, AudioLost, AudioRestored, Capture, CaptureItem
from ambient.audio.io import read_audio
from ambient.audio.resample import to_int16
from ambient.config import AudioConfig
from ambient.errors import AudioError

#: Guards against hangs only.
WAIT_S = 30.0


def read_all(cap: Capture, *, until: type[Any] = AudioEnded, timeout: float = WAIT_S) -> list[CaptureItem]:
    """Read items until one of type ``until`` arrives."""
    items: list[CaptureItem] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = cap.read(timeout=0.2)
        if item is not None:
            items.append(item)
            if isinstance(item, until):
                return items
    raise AssertionError(f"no {until.__name__}; got {[type(i).__name__ for i in items]}")


def samples(items: list[CaptureItem]) -> np.ndarray:
    return np.concatenate([i.samples for i in items if isinstance(i, AudioBlock)])


# --------------------------------------------------------------------------- file


def test_file_source_delivers_the_whole_file_at_16k_mono(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    stereo = (rng.standard_normal((44100 + 123, 2)) * 0.1).astype(np.float32)
    path = tmp_path / "a.flac"
    sf.write(str(path), stereo, 44100)
    cap = Capture(AudioConfig(source="file", file=path, realtime=False, block_ms=30))
    cap.open()
    items = read_all(cap)
    assert isinstance(items[-1], AudioEnded) and items[-1].error is None
    got = samples(items)
    np.testing.assert_array_equal(got, to_int16(read_audio(path)))
    times = [i.time for i in items if isinstance(i, AudioBlock)]
    assert times == sorted(times)
    assert cap.ended


def test_missing_or_bad_file_is_an_audio_error(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="no such file"):
        Capture(AudioConfig(source="file", file=tmp_path / "nope.wav")).open()
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all" * 10)
    with pytest.raises(AudioError, match="not a readable audio file"):
        Capture(AudioConfig(source="file", file=junk)).open()


def test_closing_a_realtime_file_stops_its_reader(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    sf.write(str(path), np.zeros(16000 * 60, dtype=np.int16), 16000)
    cap = Capture(AudioConfig(source="file", file=path, realtime=True))
    cap.open()
    assert isinstance(read_all(cap, until=AudioBlock)[-1], AudioBlock)
    cap.close()
    assert not [t for t in threading.enumerate() if t.name == "ambient-file-reader"]


# --------------------------------------------------------------------------- stdin


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    try:
        yield r, w
    finally:
        for fd in (r, w):
            with contextlib.suppress(OSError):
                os.close(fd)


def test_stdin_source_resamples_raw_pcm_and_ends_at_eof(pipe: tuple[int, int]) -> None:
    r, w = pipe
    rng = np.random.default_rng(2)
    pcm = (rng.standard_normal(8000 * 2) * 3000).astype("<i2")
    cap = Capture(AudioConfig(source="stdin", stdin_rate=8000, block_ms=20), stdin_fd=r)
    cap.open()

    def feed() -> None:
        data = pcm.tobytes() + b"\x01"  # a dangling half sample at the end is ignored
        for k in range(0, len(data), 777):  # arbitrary write sizes
            os.write(w, data[k : k + 777])
        os.close(w)

    threading.Thread(target=feed, daemon=True).start()
    items = read_all(cap)
    assert isinstance(items[-1], AudioEnded) and items[-1].error is None
    expected = to_int16(resample_poly(pcm.astype(np.float64) / 32768.0, 2, 1))
    got = samples(items)
    assert len(got) == len(expected)
    assert np.max(np.abs(got.astype(np.int32) - expected.astype(np.int32))) <= 1


def test_stdin_on_a_terminal_is_refused() -> None:
    master, slave = os.openpty()
    try:
        with pytest.raises(AudioError, match="terminal"):
            Capture(AudioConfig(source="stdin"), stdin_fd=slave).open()
    finally:
        os.close(master)
        os.close(slave)


# --------------------------------------------------------------------------- microphone


@pytest.fixture
def use_pulse(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Any], None]]:
    """Point this process's PortAudio at a PulseAudio server (and re-scan its devices)."""
    from ambient.audio.devices import rescan

    def use(server: Any) -> None:
        for k, v in server.env.items():
            monkeypatch.setenv(k, v)
        rescan()

    yield use
    monkeypatch.undo()
    rescan()


def test_mic_that_does_not_exist_is_reported_lost_and_retried(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ambient.audio.devices import rescan

    monkeypatch.setenv("PULSE_SERVER", f"unix:{tmp_path}/nobody-here")
    rescan()
    cap = Capture(AudioConfig(source="mic", device="no such microphone", reopen_initial_s=0.05, reopen_max_s=0.1))
    cap.open()  # not an error: the device may appear later
    lost = cap.read(timeout=1)
    assert isinstance(lost, AudioLost) and cap.lost
    deadline = time.monotonic() + WAIT_S
    while cap.stats.reopen_attempts < 3 and time.monotonic() < deadline:
        assert cap.read(timeout=0.1) is None  # retries are silent: one AudioLost per loss
    assert cap.stats.reopen_attempts >= 3 and cap.stats.losses == 1
    cap.close()


@pytest.mark.slow
def test_mic_captures_what_is_played_resampled_from_48k(
    pulse: Any, use_pulse: Callable[[Any], None], tmp_path: Path
) -> None:
    use_pulse(pulse)
    t = np.arange(16000 * 2) / 16000
    tone = tmp_path / "tone.wav"
    sf.write(str(tone), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    cap = Capture(AudioConfig(source="mic", device_rate=48000))
    cap.open()
    assert "48000 Hz" in cap.description
    player = pulse.play(tone)
    got: list[np.ndarray] = []
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and (player.poll() is None or sum(map(len, got)) < 16000 * 3):
        item = cap.read(timeout=0.2)
        assert not isinstance(item, AudioLost | AudioEnded), item
        if isinstance(item, AudioBlock):
            got.append(item.samples)
    cap.close()
    audio = np.concatenate(got).astype(np.float32) / 32768
    loud = audio[np.abs(audio) > 0.05]
    assert len(loud) > 16000 * 0.5  # most of the tone arrived
    seg = audio[np.argmax(np.abs(audio) > 0.05) :][:16000]
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    assert abs(np.argmax(spectrum) * 16000 / len(seg) - 440) < 5


@pytest.mark.slow
def test_mic_stall_is_detected_and_recovers_when_the_server_resumes(
    pulse_factory: Callable[[], Any], use_pulse: Callable[[Any], None]
) -> None:
    server = pulse_factory()
    use_pulse(server)
    cap = Capture(AudioConfig(source="mic", stall_timeout_s=1.0, reopen_initial_s=0.2, reopen_max_s=0.5))
    cap.open()
    read_all(cap, until=AudioBlock)
    losses = cap.stats.losses  # a fresh server may need more than 1 s to deliver its first block
    os.kill(server._server.pid, signal.SIGSTOP)  # a frozen sound server: the stream stays open but silent
    try:
        items = read_all(cap, until=AudioLost)
        assert "no audio" in items[-1].reason  # type: ignore[union-attr]
        assert cap.lost
    finally:
        os.kill(server._server.pid, signal.SIGCONT)
    items = read_all(cap, until=AudioRestored)
    assert not cap.lost
    assert isinstance(read_all(cap, until=AudioBlock)[-1], AudioBlock)
    assert cap.stats.losses == losses + 1
    cap.close()


@pytest.mark.slow
def test_lazy_mic_capture_batches_blocks_and_keeps_every_sample(
    pulse: Any, use_pulse: Callable[[Any], None], tmp_path: Path
) -> None:
    """With ``lazy`` set (no utterance open) blocks arrive in bursts every ``idle_poll_ms``, the
    stream stays gapless; clearing it returns to one wake-up per block."""
    use_pulse(pulse)
    cap = Capture(AudioConfig(source="mic", block_ms=30, idle_poll_ms=300))
    cap.open()
    read_all(cap, until=AudioBlock)
    cap.lazy = True
    assert cap.lazy
    blocks: list[tuple[float, AudioBlock]] = []
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        item = cap.read(timeout=1.0)
        if isinstance(item, AudioBlock):
            blocks.append((time.monotonic(), item))
    cap.lazy = False
    eager: list[float] = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        if isinstance(cap.read(timeout=1.0), AudioBlock):
            eager.append(time.monotonic())
    cap.close()
    arrivals = np.array([t for t, _ in blocks])
    bursts = np.split(arrivals, np.nonzero(np.diff(arrivals) > 0.01)[0] + 1)  # read back to back
    assert len(blocks) >= 60  # ~100 blocks of 30 ms in 3 s
    assert len(bursts) <= 14  # ~10 bursts of ~10 blocks, not ~100 single wake-ups
    assert np.median([len(b) for b in bursts]) >= 5
    times = np.array([b.time for _, b in blocks])
    lengths = np.array([len(b.samples) for _, b in blocks])
    gaps = np.diff(times) - lengths[:-1] / 16000
    assert np.abs(gaps).max() < 0.05  # consecutive: nothing dropped while the reader slept
    assert cap.stats.dropped_blocks == 0
    assert len(eager) >= 20 and np.median(np.diff(eager)) < 0.1  # eager again: block by block
