"""Log-mel front end: 16 kHz PCM -> 80-dim log-mel frames (25 ms Hann window, 10 ms hop).

Written with torch only (there is no CPU torchaudio here); :mod:`ambient.audio.fbank` is its numpy
twin for the torch-free runtime, and holds the constants and the mel filterbank both use. Frames
are taken without padding, so
``T = 1 + (N - 400) // 160`` for ``N >= 400`` samples and the features of a signal fed in pieces of
any size through :class:`StreamingFbank` are identical to :func:`compute_fbank` of the whole signal.
Normalization (mean/variance) is not done here: its statistics live in the model checkpoint.

Shapes: ``N`` samples, ``T`` frames, ``F = 80`` mel bins.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

__all__ = [
    "HOP",
    "N_FFT",
    "N_MELS",
    "SAMPLE_RATE",
    "WIN",
    "StreamingFbank",
    "compute_fbank",
    "mel_filterbank",
    "num_frames",
]

from ambient.audio.fbank import (
    HOP,
    LOG_FLOOR,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    WIN,
    mel_filterbank_np,
    num_frames,
)


@functools.lru_cache(maxsize=64)
def mel_filterbank(warp: float = 1.0) -> torch.Tensor:
    """Triangular mel filterbank, shape ``(N_FFT // 2 + 1, N_MELS)``, optionally VTLP-warped (the numpy
    one of :mod:`ambient.audio.fbank`, as a tensor)."""
    return torch.from_numpy(mel_filterbank_np(warp).copy())


@functools.lru_cache(maxsize=1)
def _window() -> torch.Tensor:
    return torch.hann_window(WIN, periodic=False, dtype=torch.float32)


def _frames_to_fbank(frames: torch.Tensor, warp: float) -> torch.Tensor:
    """``frames (T, WIN)`` -> log-mel ``(T, N_MELS)``. Each frame is processed independently."""
    frames = frames - frames.mean(dim=-1, keepdim=True)  # per-frame DC removal
    spec = torch.fft.rfft(frames * _window(), n=N_FFT)  # (T, 257)
    power = spec.real.square() + spec.imag.square()
    mel = power @ mel_filterbank(warp)  # (T, F)
    return torch.log(torch.clamp(mel, min=LOG_FLOOR))


def _as_float_tensor(wave: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(wave, np.ndarray):
        if wave.dtype == np.int16:
            wave = wave.astype(np.float32) / 32768.0
        wave = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    if wave.dim() != 1:
        raise ValueError(f"expected a mono waveform of shape (N,), got {tuple(wave.shape)}")
    return wave.to(torch.float32)


def compute_fbank(wave: torch.Tensor | np.ndarray, *, warp: float = 1.0) -> torch.Tensor:
    """Log-mel features of a whole signal.

    Args:
        wave: ``(N,)`` float samples in [-1, 1] at 16 kHz (int16 numpy arrays are scaled).
        warp: VTLP warp factor (1.0 = none); a training augmentation.
    Returns:
        ``(T, 80)`` float32 log-mel, ``T = num_frames(N)``.
    """
    w = _as_float_tensor(wave)
    t = num_frames(w.numel())
    if t == 0:
        return torch.zeros(0, N_MELS)
    frames = w.unfold(0, WIN, HOP)  # (T, WIN)
    return _frames_to_fbank(frames, warp)


class StreamingFbank:
    """Incremental log-mel: ``accept`` pieces of any size, get exactly the whole-signal frames.

    State: the samples not yet consumed by a complete frame (fewer than ``WIN`` + ``HOP``).
    """

    def __init__(self) -> None:
        self._buf = torch.zeros(0)

    def reset(self) -> None:
        """Forget buffered samples (start of a new utterance)."""
        self._buf = torch.zeros(0)

    @property
    def buffered_samples(self) -> int:
        """Samples held back until a frame completes."""
        return int(self._buf.numel())

    def accept(self, wave: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Feed ``(n,)`` samples; returns the ``(t, 80)`` frames that became complete."""
        w = _as_float_tensor(wave)
        buf = torch.cat([self._buf, w]) if self._buf.numel() else w
        t = num_frames(buf.numel())
        if t == 0:
            self._buf = buf.clone()
            return torch.zeros(0, N_MELS)
        feats = _frames_to_fbank(buf.unfold(0, WIN, HOP), 1.0)
        self._buf = buf[t * HOP :].clone()
        return feats


def frame_shift_seconds(subsampling: int) -> float:
    """Seconds per encoder output frame at a given subsampling factor."""
    return math.prod([HOP, subsampling]) / SAMPLE_RATE
