"""Streaming resampling and down-mixing: any rate, channel count and sample format to 16 kHz mono.

:class:`StreamResampler` is polyphase resampling whose output does not depend on how the input is
split. Input is processed in frames of ``down`` samples (``up`` outputs each, after reducing the
rates by their gcd). Each batch of frames is filtered together with ``P`` samples of context on both
sides (``P >=`` the filter's half length, a multiple of ``down``), so every output sample sees exactly
the same inputs and filter phase whatever the block sizes were; the result equals
``scipy.signal.resample_poly`` of the whole signal. Shapes: ``(n,)`` float32 in, ``(m,)`` out.

:class:`BlockConverter` turns device, file or pipe blocks of any rate, channel count and sample
format into 16 kHz mono int16, which is what the voice gate and the recognizer consume.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["TARGET_RATE", "BlockConverter", "StreamResampler", "to_int16", "to_mono_float"]

#: The rate the voice gate and the recognizer run at.
TARGET_RATE = 16000


class StreamResampler:
    """Resample a stream from ``orig_rate`` to ``new_rate`` (Kaiser-windowed polyphase FIR)."""

    def __init__(self, *, orig_rate: int, new_rate: int) -> None:
        if orig_rate <= 0 or new_rate <= 0:
            raise ValueError("sample rates must be positive")
        g = math.gcd(orig_rate, new_rate)
        self.up, self.down = new_rate // g, orig_rate // g
        self.identity = self.up == self.down
        max_rate = max(self.up, self.down)
        half_len = 10 * max_rate
        self._h = None
        if not self.identity:
            # scipy only when a rate actually changes: importing it costs ~70 MB of resident memory,
            # which a daemon capturing at 16 kHz never needs to pay.
            from scipy import signal

            self._h = signal.firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0))
        support = math.ceil(half_len / self.up) + 2  # filter half-length in input samples
        self._pad = 0 if self.identity else self.down * math.ceil(support / self.down)
        self.reset()

    def reset(self) -> None:
        """Start a new stream (leading zeros as context)."""
        self._buf = np.zeros(self._pad, dtype=np.float64)  # context + unconsumed input

    def _run(self, n_frames: int) -> np.ndarray:
        seg_len = n_frames * self.down + 2 * self._pad
        seg = self._buf[:seg_len]
        from scipy import signal

        out = signal.resample_poly(seg, self.up, self.down, window=self._h)
        first = self._pad * self.up // self.down
        y = out[first : first + n_frames * self.up]
        self._buf = self._buf[n_frames * self.down :]
        return y.astype(np.float32)

    def process(self, x: np.ndarray) -> np.ndarray:
        """Feed ``(n,)`` samples; returns the output samples that are now final."""
        if self.identity:
            return np.asarray(x, dtype=np.float32)
        self._buf = np.concatenate([self._buf, np.asarray(x, dtype=np.float64)])
        n_frames = (len(self._buf) - 2 * self._pad) // self.down
        if n_frames <= 0:
            return np.zeros(0, dtype=np.float32)
        return self._run(n_frames)

    def flush(self) -> np.ndarray:
        """End of stream: returns the remaining outputs (``ceil(total_in * up / down)`` in all)."""
        if self.identity:
            return np.zeros(0, dtype=np.float32)
        remaining = len(self._buf) - self._pad  # real samples not yet consumed
        if remaining <= 0:
            self.reset()
            return np.zeros(0, dtype=np.float32)
        n_frames = math.ceil(remaining / self.down)
        need = n_frames * self.down + 2 * self._pad
        self._buf = np.concatenate([self._buf, np.zeros(need - len(self._buf))])
        y = self._run(n_frames)[: math.ceil(remaining * self.up / self.down)]
        self.reset()
        return y


def to_mono_float(block: np.ndarray) -> np.ndarray:
    """``(n,)`` or ``(n, c)`` int16/int32/float samples -> ``(n,)`` float32 in [-1, 1] (channel mean)."""
    a = np.asarray(block)
    if a.dtype == np.int16:
        f = a.astype(np.float32) / 32768.0
    elif a.dtype == np.int32:
        f = a.astype(np.float32) / 2147483648.0
    elif a.dtype.kind == "f":
        f = a.astype(np.float32, copy=False)
    else:
        raise ValueError(f"unsupported sample format {a.dtype}")
    if f.ndim == 2:
        f = f.mean(axis=1) if f.shape[1] > 1 else f[:, 0]
    elif f.ndim != 1:
        raise ValueError(f"expected samples of shape (n,) or (n, channels), got {a.shape}")
    return f


def to_int16(x: np.ndarray) -> np.ndarray:
    """``(n,)`` float samples in [-1, 1] -> ``(n,)`` int16, clipped (never wraps around)."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float32) * 32768.0), -32768, 32767).astype(np.int16)


class BlockConverter:
    """Any rate, channel count and sample format -> 16 kHz mono int16, block by block.

    Mono int16 at 16 kHz passes through untouched (no copy, no float round trip). ``bytes`` are
    interleaved int16 frames of ``channels`` channels (what a raw PortAudio stream delivers).
    """

    def __init__(self, *, rate: int, out_rate: int = TARGET_RATE, channels: int = 1) -> None:
        self.rate = rate
        self.channels = channels
        self._resampler = StreamResampler(orig_rate=rate, new_rate=out_rate)

    def convert(self, block: np.ndarray | bytes) -> np.ndarray:
        """``(n,)`` or ``(n, c)`` samples at ``rate``, or raw int16 bytes -> ``(m,)`` int16 at 16 kHz."""
        if isinstance(block, bytes):
            block = np.frombuffer(block, dtype=np.int16).reshape(-1, self.channels)
        a = np.asarray(block)
        if self._resampler.identity:
            if a.dtype == np.int16 and (a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1)):
                return a.reshape(-1)
            return to_int16(to_mono_float(a))
        return to_int16(self._resampler.process(to_mono_float(a)))

    def flush(self) -> np.ndarray:
        """The samples still inside the resampling filter, at end of stream (``(m,)`` int16)."""
        return to_int16(self._resampler.flush())
