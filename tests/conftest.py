"""Fixtures shared by the whole suite: a tiny random checkpoint, speech synthesized at test time,
and a real PulseAudio server with a virtual microphone.

The virtual microphone: a null sink ``vsink`` whose monitor is remapped as the default source
``vmic``. Whatever ``paplay --device=vsink`` plays (in real time) is what a program recording from
the ALSA ``default``/``pulse`` device hears, PortAudio included. A ``parec`` reader keeps the sink
in low-latency mode (without it the null sink delivers 2 s blocks). Servers are started in their
own runtime directory and killed by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

__all__: list[str] = []

#: Guard against hangs only; nothing asserts on durations.
_PULSE_START_TIMEOUT_S = 20.0

_VMIC_SCRIPT = """\
load-module module-native-protocol-unix auth-anonymous=1
load-module module-null-sink sink_name=vsink rate=16000 channels=1
load-module module-remap-source source_name=vmic master=vsink.monitor
set-default-sink vsink
set-default-source vmic
"""


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

    espeak-ng writes 22.05 kHz, flite 16 kHz: both rates reach the resampler.
    """
    root = tmp_path_factory.mktemp("speech")
    cache: dict[tuple[str, str], Path] = {}

    def make(text: str, engine: str = "espeak-ng") -> Path:
        key = (text, engine)
        if key in cache:
            return cache[key]
        if shutil.which(engine) is None:
            pytest.skip(f"{engine} is not installed (apt install {engine})")
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


class PulseServer:
    """A PulseAudio server with a virtual microphone in its own runtime directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {
            "XDG_RUNTIME_DIR": str(root),
            "PULSE_RUNTIME_PATH": str(root / "pulse"),
            "PULSE_COOKIE": str(root / "cookie"),
            "PULSE_SERVER": f"unix:{root}/pulse/native",
        }
        self._server: subprocess.Popen[bytes] | None = None
        self._keeper: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def client_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment in which PortAudio, paplay and pactl use this server."""
        return {**(dict(os.environ) if base is None else base), **self.env}

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.poll() is None

    def start(self) -> None:
        """Start the server (again, at the same path after :meth:`stop`) and wait until it answers."""
        script = self.root / "vmic.pa"
        script.write_text(_VMIC_SCRIPT)
        # A SIGKILLed server leaves its pid file; a recycled PID would make the new one refuse to start.
        (self.root / "pulse" / "pid").unlink(missing_ok=True)
        self.starts += 1
        log = self.root / f"pulse-{self.starts}.log"
        self._server = subprocess.Popen(
            [
                "pulseaudio",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "-n",
                "-F",
                str(script),
                f"--log-target=file:{log}",
            ],
            env={**self.client_env(), "HOME": str(self.root)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + _PULSE_START_TIMEOUT_S
        while True:
            if self._server.poll() is not None:
                raise RuntimeError(f"pulseaudio exited with {self._server.returncode}: {log.read_text()[-2000:]}")
            ok = subprocess.run(["pactl", "info"], env=self.client_env(), capture_output=True, timeout=10)
            if ok.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("pulseaudio did not answer")
            time.sleep(0.05)
        self._keeper = subprocess.Popen(
            ["parec", "-d", "vsink.monitor", "--latency-msec=20", "--raw"],
            env=self.client_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        """Kill the server (SIGKILL: the microphone vanishes as abruptly as an unplugged one)."""
        for proc in (self._keeper, self._server):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
        self._keeper = self._server = None

    def play(self, wav: Path) -> subprocess.Popen[bytes]:
        """Start playing ``wav`` into the virtual microphone (real time); returns the paplay process."""
        return subprocess.Popen(
            ["paplay", "--device=vsink", str(wav)],
            env=self.client_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )


def _pulse_available() -> str | None:
    missing = [b for b in ("pulseaudio", "pactl", "paplay", "parec") if shutil.which(b) is None]
    if missing:
        return f"PulseAudio tools missing: {', '.join(missing)} (scripts/setup.sh --dev)"
    return None


@pytest.fixture
def pulse_factory() -> Iterator[Callable[[], PulseServer]]:
    """``make() -> PulseServer``: fresh, started servers owned by one test (killed afterwards)."""
    why = _pulse_available()
    if why:
        pytest.skip(why)
    servers: list[PulseServer] = []
    dirs: list[Path] = []

    def make() -> PulseServer:
        root = Path(tempfile.mkdtemp(prefix="amb-pa-", dir="/tmp"))  # socket paths must stay short
        dirs.append(root)
        server = PulseServer(root)
        servers.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for s in servers:
            s.stop()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def pulse() -> Iterator[PulseServer]:
    """One PulseAudio virtual-microphone server shared by the session (tests must not stop it)."""
    why = _pulse_available()
    if why:
        pytest.skip(why)
    root = Path(tempfile.mkdtemp(prefix="amb-pa-", dir="/tmp"))
    server = PulseServer(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def python_exe() -> str:
    """The interpreter running the tests (subprocesses use the same environment)."""
    return sys.executable
