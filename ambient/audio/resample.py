"""Streaming polyphase resampling whose output does not depend on how the input is split.

Input is processed in frames of ``down`` samples (``up`` outputs each, after reducing the rates by
their gcd). Each batch of frames is filtered together with ``P`` samples of context on both sides
(``P >=`` the filter's half length, a multiple of ``down``), so every output sample sees exactly the
same inputs and filter phase whatever the block sizes were. Shapes: ``(n,)`` float32 in, ``(m,)`` out.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal

__all__ = ["StreamResampler"]


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
        self._h = None if self.identity else signal.firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0))
        support = math.ceil(half_len / self.up) + 2  # filter half-length in input samples
        self._pad = 0 if self.identity else self.down * math.ceil(support / self.down)
        self.reset()

    def reset(self) -> None:
        """Start a new stream (leading zeros as context)."""
        self._buf = np.zeros(self._pad, dtype=np.float64)  # context + unconsumed input

    def _run(self, n_frames: int) -> np.ndarray:
        seg_len = n_frames * self.down + 2 * self._pad
        seg = self._buf[:seg_len]
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
