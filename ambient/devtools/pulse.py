"""A private PulseAudio server with a virtual microphone, for tests and benchmarks, and a recorder
that timestamps what the microphone hears (the reference clock of the latency benchmark).

The recipe (as in ``docs/deployment.md``): a null sink ``vsink`` whose monitor is remapped as the
default source ``vmic``. :meth:`VirtualMic.play` plays into the sink in real time; a program recording
from the ALSA ``default``/``pulse`` device (PortAudio, the daemon's microphone input) hears it. The
recorder is a ``parec`` client of the sink's monitor with 20 ms latency: it keeps the sink in
low-latency mode (without a reader the null sink delivers 2 s blocks) and stamps each chunk with the
wall-clock time it arrived, so :meth:`VirtualMic.wall_time` maps a recorded sample to the moment it
reached clients of the microphone (to within one 20 ms fragment, from below). Everything runs in its
own runtime directory and is killed by PID.
"""

from __future__ import annotations

import bisect
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import numpy as np

__all__ = ["VirtualMic", "pulse_missing"]

#: Guards against hangs only.
_START_TIMEOUT_S = 20.0
_RATE = 16000
_SCRIPT = """\
load-module module-native-protocol-unix auth-anonymous=1
load-module module-null-sink sink_name=vsink rate=16000 channels=1
load-module module-remap-source source_name=vmic master=vsink.monitor
set-default-sink vsink
set-default-source vmic
"""


def pulse_missing() -> str | None:
    """Why the virtual microphone cannot run here, or None."""
    missing = [b for b in ("pulseaudio", "pactl", "paplay", "parec") if shutil.which(b) is None]
    return f"PulseAudio tools missing: {', '.join(missing)} (scripts/setup.sh --dev)" if missing else None


class VirtualMic:
    """A PulseAudio server with a virtual microphone (see the module docstring).

    :meth:`start` and :meth:`stop` may alternate: a server started again comes back at the same
    address, like a sound server restarted after a crash. As a context manager it is started on entry
    and closed on exit.

    Args:
        root: its runtime directory (default: a new one under ``/tmp``, where socket paths stay
            short, removed by :meth:`close`).
        record: keep the recorded samples (for :meth:`recording`, :meth:`locate`); otherwise the
            recorder only drains the monitor and timestamps it.
    """

    def __init__(self, root: Path | None = None, *, record: bool = True) -> None:
        self._owns_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="amb-pa-", dir="/tmp")) if root is None else root
        self.env = {
            "XDG_RUNTIME_DIR": str(self.root),
            "PULSE_RUNTIME_PATH": str(self.root / "pulse"),
            "PULSE_COOKIE": str(self.root / "cookie"),
            "PULSE_SERVER": f"unix:{self.root}/pulse/native",
        }
        self.starts = 0
        self._record = record
        self._server: subprocess.Popen[bytes] | None = None
        self._recorder: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pcm = bytearray()
        self._samples = 0
        self._ends: list[int] = []  # sample count after each chunk read
        self._arrivals: list[float] = []  # wall time each chunk arrived

    def client_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) in which PortAudio, paplay and pactl use
        this server."""
        return {**(os.environ if base is None else base), **self.env}

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._server is not None and self._server.poll() is None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> VirtualMic:
        """Start the server and the recorder; returns once audio flows through the monitor."""
        script = self.root / "vmic.pa"
        script.write_text(_SCRIPT)
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
        deadline = time.monotonic() + _START_TIMEOUT_S
        while subprocess.run(["pactl", "info"], env=self.client_env(), capture_output=True, timeout=10).returncode:
            if self._server.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"pulseaudio exited with status {self._server.returncode}: {tail}")
            if time.monotonic() > deadline:
                raise RuntimeError("pulseaudio did not answer")
            time.sleep(0.05)
        self._start_recorder()
        while self.recorded_samples < _RATE // 2:
            if time.monotonic() > deadline:
                raise RuntimeError("no audio from the virtual microphone's monitor")
            time.sleep(0.05)
        return self

    def _start_recorder(self) -> None:
        with self._lock:
            self._pcm.clear()
            self._samples = 0
            self._ends.clear()
            self._arrivals.clear()
        self._recorder = subprocess.Popen(
            [
                "parec",
                "-d",
                "vsink.monitor",
                "--latency-msec=20",
                "--raw",
                "--format=s16le",
                f"--rate={_RATE}",
                "--channels=1",
            ],
            env=self.client_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._reader = threading.Thread(target=self._read, args=(self._recorder,), name="vmic-recorder", daemon=True)
        self._reader.start()

    def _read(self, recorder: subprocess.Popen[bytes]) -> None:
        assert recorder.stdout is not None
        fd = recorder.stdout.fileno()
        carry = b""
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return
            now = time.time()
            if not data:
                return
            data = carry + data
            usable = len(data) - len(data) % 2
            carry = data[usable:]
            with self._lock:
                self._samples += usable // 2
                if self._record:
                    self._pcm += data[:usable]
                self._ends.append(self._samples)
                self._arrivals.append(now)

    def stop(self) -> None:
        """Kill the recorder and the server (SIGKILL, by PID: the microphone vanishes as abruptly as
        an unplugged one). The runtime directory stays, for :meth:`start`."""
        for proc in (self._recorder, self._server):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._recorder is not None and self._recorder.stdout is not None:
            self._recorder.stdout.close()
        self._recorder = self._server = self._reader = None

    def close(self) -> None:
        """:meth:`stop`, and remove the runtime directory if this object made it."""
        self.stop()
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> VirtualMic:
        try:
            return self.start()
        except BaseException:
            self.close()  # a server that started but never answered is killed too
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ playing and recording

    def play(self, wav: Path) -> subprocess.Popen[bytes]:
        """Start playing ``wav`` into the microphone (real time); returns the ``paplay`` process."""
        return subprocess.Popen(
            ["paplay", "--device=vsink", str(wav)],
            env=self.client_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    @property
    def recorded_samples(self) -> int:
        """Samples the recorder received since the last :meth:`start`."""
        with self._lock:
            return self._samples

    def recording(self) -> np.ndarray:
        """Everything recorded since the last :meth:`start` as (n,) float32 (requires ``record=True``)."""
        with self._lock:
            pcm = bytes(self._pcm)
        return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0

    def wall_time(self, sample: int, *, window_s: float = 2.0) -> float:
        """Wall-clock time at which recorded sample ``sample`` reached the monitor's clients.

        Each chunk's arrival bounds the time of its samples from above; the tightest bound over the
        chunks that arrived within ``window_s`` after the sample is taken (local, so a gap in the
        stream elsewhere does not matter).
        """
        with self._lock:
            ends, arrivals = list(self._ends), list(self._arrivals)
        i = bisect.bisect_left(ends, sample + 1)
        if i >= len(ends):
            raise ValueError(f"sample {sample} was not recorded yet")
        limit = sample + round(window_s * _RATE)
        best = float("inf")
        for j in range(i, len(ends)):
            if ends[j] > limit:
                break
            best = min(best, arrivals[j] - (ends[j] - sample) / _RATE)
        return best

    def locate(self, clip: np.ndarray, *, start: int = 0, stop: int | None = None) -> tuple[int, float]:
        """Where ``clip`` begins in the recording (searching samples ``start``..``stop``), and the
        normalized correlation there (1.0 = an exact, possibly scaled, copy)."""
        from scipy.signal import correlate

        rec = self.recording()
        stop = len(rec) if stop is None else min(stop, len(rec))
        seg = rec[max(0, start) : stop].astype(np.float64)
        c = clip.astype(np.float64)
        if len(seg) < len(c) or not np.any(c):
            return -1, 0.0
        corr = correlate(seg, c, mode="valid", method="fft")
        cs = np.concatenate([[0.0], np.cumsum(seg**2)])
        energy = cs[len(c) :] - cs[: len(seg) - len(c) + 1]  # sliding window energy
        score = corr / (np.sqrt(np.maximum(energy, 1e-12)) * np.linalg.norm(c))
        k = int(np.argmax(score))
        return max(0, start) + k, float(score[k])
