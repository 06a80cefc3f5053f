"""Fixtures shared by the whole suite: a tiny random checkpoint, speech synthesized at test time,
and a real PulseAudio server with a virtual microphone (:class:`ambient.devtools.pulse.VirtualMic`:
whatever it plays, in real time, is what a program recording from the ALSA ``default``/``pulse``
device hears, PortAudio included). Servers run in their own runtime directory and are killed by PID.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ambient.devtools.missing import missing_part
from ambient.devtools.pulse import VirtualMic, pulse_missing

__all__: list[str] = []

# --------------------------------------------------------------------------- model


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random-weight checkpoint (transcripts are garbage; the event flow is real)."""
    from ambient.model.testing import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("model") / "model.pt")


# --------------------------------------------------------------------------- speech


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``synth(text, engine="espeak-ng"|"flite") -> Path``: a WAV of ``text`` (cached per session).
    A missing engine skips the test, or fails it in CI (:func:`ambient.devtools.missing.missing_part`).

    espeak-ng writes 22.05 kHz, flite 16 kHz: both rates reach the resampler.
    """
    root = tmp_path_factory.mktemp("speech")
    cache: dict[tuple[str, str], Path] = {}

    def make(text: str, engine: str = "espeak-ng") -> Path:
        key = (text, engine)
        if key in cache:
            return cache[key]
        if shutil.which(engine) is None:
            missing_part(f"{engine} is not installed (apt install {engine})")
        out = root / f"utt{len(cache)}-{engine}.wav"
        if engine == "espeak-ng":
            cmd = ["espeak-ng", "-v", "en-us", "-w", str(out), text]
        elif engine == "flite":
            cmd = ["flite", "-voice", "kal16", "-t", text, "-o", str(out)]
        else:
            raise ValueError(f"unknown engine {engine}")
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        cache[key] = out
        return out

    return make


def compose_wav(path: Path, parts: Sequence[Path | float], *, rate: int = 16000) -> Path:
    """Concatenate WAV files and silences (floats, seconds) into one mono file at ``rate``."""
    from ambient.audio.io import read_audio

    pieces: list[np.ndarray] = []
    for part in parts:
        if isinstance(part, float | int):
            pieces.append(np.zeros(round(float(part) * 16000), dtype=np.float32))
        else:
            pieces.append(read_audio(part))
    audio = np.concatenate(pieces)
    if rate != 16000:
        from scipy.signal import resample_poly

        g = np.gcd(rate, 16000)
        audio = resample_poly(audio, rate // g, 16000 // g).astype(np.float32)
    sf.write(str(path), audio, rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def compose() -> Callable[..., Path]:
    """``compose(path, [wav, 1.5, wav, ...], rate=16000) -> path`` (see :func:`compose_wav`)."""
    return compose_wav


# --------------------------------------------------------------------------- PulseAudio


@pytest.fixture
def pulse_factory() -> Iterator[Callable[[], VirtualMic]]:
    """``make() -> VirtualMic``: fresh, started servers owned by one test (killed afterwards)."""
    if why := pulse_missing():
        missing_part(why)
    servers: list[VirtualMic] = []

    def make() -> VirtualMic:
        server = VirtualMic(record=False)
        servers.append(server)
        return server.start()

    try:
        yield make
    finally:
        for s in servers:
            s.close()


@pytest.fixture(scope="session")
def pulse() -> Iterator[VirtualMic]:
    """One PulseAudio virtual-microphone server shared by the session (tests must not stop it)."""
    if why := pulse_missing():
        missing_part(why)
    with VirtualMic(record=False) as server:
        yield server


@pytest.fixture(scope="session")
def python_exe() -> str:
    """The interpreter running the tests (subprocesses use the same environment)."""
    return sys.executable
