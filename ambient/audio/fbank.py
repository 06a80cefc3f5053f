"""Log-mel front end in numpy: the torch-free twin of :mod:`ambient.audio.features`.

The same frames as the torch front end (25 ms symmetric Hann window, 10 ms hop, no padding,
per-frame DC removal, 512-point power spectrum, 80 mel bins from 20 to 7600 Hz, natural log floored
at 1e-10), to float32 rounding: the ONNX runtime uses it so that a daemon never imports torch. The
constants and the mel filterbank are defined here once and shared with the torch version.
:class:`StreamingFbank` gives exactly the frames of :func:`compute_fbank` of the whole signal,
whatever the block sizes fed to it.

Shapes: ``N`` samples, ``T = 1 + (N - 400) // 160`` frames, ``F = 80`` mel bins.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = [
    "F_MAX",
    "F_MIN",
    "HOP",
    "N_FFT",
    "N_MELS",
    "SAMPLE_RATE",
    "WIN",
    "StreamingFbank",
    "compute_fbank",
    "mel_filterbank_np",
    "num_frames",
]

SAMPLE_RATE = 16000
WIN = 400  # 25 ms
HOP = 160  # 10 ms
N_FFT = 512
N_MELS = 80
F_MIN = 20.0
F_MAX = 7600.0
LOG_FLOOR = 1e-10


def num_frames(n_samples: int) -> int:
    """Number of feature frames for ``n_samples`` samples (no padding)."""
    return 0 if n_samples < WIN else 1 + (n_samples - WIN) // HOP


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (np.expm1(m / 1127.0))


def _vtlp(freqs: np.ndarray, warp: float) -> np.ndarray:
    """Piecewise-linear vocal-tract-length warping of frequencies (Jaitly & Hinton 2013).

    Frequencies below a boundary are scaled by ``warp``; above it a linear segment maps the rest so
    that the Nyquist frequency stays fixed.
    """
    if warp == 1.0:
        return freqs
    nyq = SAMPLE_RATE / 2
    boundary = 4800.0 * min(warp, 1.0) / warp
    scale_hi = (nyq - boundary * warp) / (nyq - boundary)
    return np.where(freqs <= boundary, freqs * warp, nyq - (nyq - freqs) * scale_hi)


@functools.lru_cache(maxsize=64)
def mel_filterbank_np(warp: float = 1.0) -> np.ndarray:
    """Triangular mel filterbank, float32 ``(N_FFT // 2 + 1, N_MELS)``, optionally VTLP-warped."""
    mel_pts = np.linspace(_hz_to_mel(np.array(F_MIN)), _hz_to_mel(np.array(F_MAX)), N_MELS + 2)
    hz_pts = _vtlp(_mel_to_hz(mel_pts), warp)
    fft_freqs = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    lower, center, upper = hz_pts[:-2], hz_pts[1:-1], hz_pts[2:]
    f = fft_freqs[:, None]
    up = (f - lower) / np.maximum(center - lower, 1e-6)
    down = (upper - f) / np.maximum(upper - center, 1e-6)
    fb = np.clip(np.minimum(up, down), 0.0, None)
    fb = fb.astype(np.float32)
    fb.flags.writeable = False
    return fb


@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
    # torch.hann_window(WIN, periodic=False), computed as torch does (float32).
    n = np.arange(WIN, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / (WIN - 1))).astype(np.float32)


def _frames_to_fbank(frames: np.ndarray) -> np.ndarray:
    """``frames (T, WIN)`` float32 -> log-mel ``(T, N_MELS)`` float32."""
    frames = frames - frames.mean(axis=-1, keepdims=True)  # per-frame DC removal
    spec = np.fft.rfft(frames * _window(), n=N_FFT)  # (T, 257)
    power = (spec.real * spec.real + spec.imag * spec.imag).astype(np.float32)
    # einsum, not ``@``: numpy's BLAS would run this small product on all cores, and beside
    # onnxruntime in the daemon its threads contend for them (20x slower on two busy cores).
    mel = np.einsum("tf,fm->tm", power, mel_filterbank_np())  # (T, F)
    return np.log(np.maximum(mel, np.float32(LOG_FLOOR)))


def _as_float(wave: np.ndarray) -> np.ndarray:
    wave = np.asarray(wave)
    if wave.ndim != 1:
        raise ValueError(f"expected a mono waveform of shape (N,), got {wave.shape}")
    if wave.dtype == np.int16:
        return wave.astype(np.float32) / 32768.0
    return np.ascontiguousarray(wave, dtype=np.float32)


def _frames(wave: np.ndarray, t: int) -> np.ndarray:
    return np.lib.stride_tricks.sliding_window_view(wave, WIN)[: t * HOP : HOP]  # (T, WIN), a view


def compute_fbank(wave: np.ndarray) -> np.ndarray:
    """``(N,)`` float samples in [-1, 1] at 16 kHz (int16 is scaled) -> ``(T, 80)`` float32 log-mel."""
    w = _as_float(wave)
    t = num_frames(w.size)
    if t == 0:
        return np.zeros((0, N_MELS), np.float32)
    return _frames_to_fbank(_frames(w, t))


class StreamingFbank:
    """Incremental log-mel: ``accept`` pieces of any size, get exactly the whole-signal frames.

    State: the samples not yet consumed by a complete frame (fewer than ``WIN`` + ``HOP``).
    """

    def __init__(self) -> None:
        self._buf = np.zeros(0, np.float32)

    def reset(self) -> None:
        """Forget buffered samples (start of a new utterance)."""
        self._buf = np.zeros(0, np.float32)

    @property
    def buffered_samples(self) -> int:
        """Samples held back until a frame completes."""
        return int(self._buf.size)

    def accept(self, wave: np.ndarray) -> np.ndarray:
        """Feed ``(n,)`` samples; returns the ``(t, 80)`` frames that became complete."""
        w = _as_float(wave)
        buf = np.concatenate([self._buf, w]) if self._buf.size else w
        t = num_frames(buf.size)
        if t == 0:
            self._buf = buf.copy()
            return np.zeros((0, N_MELS), np.float32)
        feats = _frames_to_fbank(_frames(buf, t))
        self._buf = buf[t * HOP :].copy()
        return feats
