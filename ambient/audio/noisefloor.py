"""A tracked background-noise level, so that steady noise does not count as speech.

webrtcvad judges the spectral shape of a frame, not its level against the room, and stationary
sounds with energy in the speech band (a fan, mains hum, pink noise) pass as voiced for long
stretches. :class:`NoiseFloor` follows the room's level by *minimum statistics* (Martin 2001): the
floor is the lowest frame energy of the last ``window_s`` seconds, which pauses between words keep
at the background level even while someone talks. A frame is loud enough to be speech only if it
stands ``margin_db`` above that floor.

The minimum over the window is kept in O(1) per frame: minima of sub-blocks of ``window_s / 8``
in a deque, plus the running minimum of the current sub-block.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

__all__ = ["NoiseFloor", "PeakHold", "frame_dbfs"]

_SUBBLOCKS = 8
_SILENT_DBFS = -120.0


def frame_dbfs(frame: np.ndarray) -> float:
    """Level of an int16 (or float in [-1, 1]) frame ``(n,)`` in dB relative to full scale."""
    x = frame.astype(np.float32)
    if frame.dtype == np.int16:
        x /= 32768.0
    power = float(np.dot(x, x)) / max(len(x), 1)
    return 10.0 * math.log10(power) if power > 1e-12 else _SILENT_DBFS


class NoiseFloor:
    """Running minimum of frame levels over a sliding window.

    Args:
        frame_ms: length of the frames given to :meth:`update`.
        window_s: how far back the minimum reaches (longer than the longest stretch of speech
            without a pause, shorter than the time in which the room's noise changes).
        margin_db: how far above the floor a frame must be to be loud enough for speech.
    """

    def __init__(self, *, frame_ms: int, window_s: float, margin_db: float) -> None:
        self.margin_db = margin_db
        self._block_frames = max(1, round(window_s * 1000 / frame_ms / _SUBBLOCKS))
        self._blocks: deque[float] = deque(maxlen=_SUBBLOCKS - 1)
        self._cur = math.inf
        self._in_cur = 0

    @property
    def floor_dbfs(self) -> float:
        """The current floor (``-inf`` before the first frame)."""
        m = min(self._blocks, default=math.inf)
        return -math.inf if min(m, self._cur) == math.inf else min(m, self._cur)

    def update(self, level_dbfs: float) -> bool:
        """Account for one frame's level; True if it stands ``margin_db`` above the floor of the
        frames before it (the first frame always does)."""
        loud = level_dbfs >= self.floor_dbfs + self.margin_db
        self._cur = min(self._cur, level_dbfs)
        self._in_cur += 1
        if self._in_cur >= self._block_frames:
            self._blocks.append(self._cur)
            self._cur, self._in_cur = math.inf, 0
        return loud


class PeakHold:
    """Loudest frame level of the last ``window_s`` seconds (a running maximum, O(1) per frame).

    The gate uses it to end an utterance on the speech's own scale: frames more than ``drop_db``
    below the recent peak are the decay of the last word or the room's reverberation, which
    webrtcvad still calls voiced for about 100 ms.
    """

    def __init__(self, *, frame_ms: int, window_s: float, drop_db: float) -> None:
        self.drop_db = drop_db
        self._block_frames = max(1, round(window_s * 1000 / frame_ms / _SUBBLOCKS))
        self._blocks: deque[float] = deque(maxlen=_SUBBLOCKS - 1)
        self._cur = -math.inf
        self._in_cur = 0

    @property
    def peak_dbfs(self) -> float:
        """The current peak (``-inf`` before the first frame)."""
        return max(max(self._blocks, default=-math.inf), self._cur)

    def update(self, level_dbfs: float) -> bool:
        """Account for one frame's level; True if it is within ``drop_db`` of the peak (itself included)."""
        self._cur = max(self._cur, level_dbfs)
        self._in_cur += 1
        near = level_dbfs >= self.peak_dbfs - self.drop_db
        if self._in_cur >= self._block_frames:
            self._blocks.append(self._cur)
            self._cur, self._in_cur = -math.inf, 0
        return near
