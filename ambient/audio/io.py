"""Reading audio files as a stream of 16 kHz mono float32 blocks (never loaded whole).

WAV/FLAC/OGG (anything libsndfile reads), any sample rate (resampled with
:class:`StreamResampler`), any channel count (mixed down), 8/16/24/32-bit integer or float
samples (float samples are clipped to full scale, NaN read as 0). Files that are not audio give a
one-line :class:`AudioError` naming the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ambient.audio.resample import StreamResampler
from ambient.errors import AudioError

__all__ = ["AudioFileInfo", "audio_file_info", "iter_audio_blocks", "read_audio"]

TARGET_RATE = 16000
_READ_FRAMES = 1 << 16  # source frames per read; fixed so output never depends on caller block size


@dataclass(frozen=True)
class AudioFileInfo:
    """What a file holds: ``duration`` seconds at ``sample_rate`` with ``channels`` channels."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def audio_file_info(path: str | Path) -> AudioFileInfo:
    """Header information; raises :class:`AudioError` for missing or non-audio files."""
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: no such file")
    if p.is_dir():
        raise AudioError(f"{p}: is a directory, not an audio file")
    try:
        i = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError(f"{p}: not a readable audio file ({_first_line(e)})") from None
    if i.samplerate <= 0 or i.channels <= 0:
        raise AudioError(f"{p}: invalid audio header (rate {i.samplerate}, channels {i.channels})")
    return AudioFileInfo(p, int(i.samplerate), int(i.channels), int(i.frames), str(i.format), str(i.subtype))


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0][:160] if s else type(e).__name__


def iter_audio_blocks(path: str | Path, *, block_samples: int = 16000) -> Iterator[np.ndarray]:
    """Yield ``(n,)`` float32 blocks of 16 kHz mono audio, each ``block_samples`` long except the last.

    The concatenation of the blocks does not depend on ``block_samples``.
    """
    if block_samples <= 0:
        raise ValueError("block_samples must be positive")
    info = audio_file_info(path)
    resampler = StreamResampler(orig_rate=info.sample_rate, new_rate=TARGET_RATE)
    pending = np.zeros(0, dtype=np.float32)
    try:
        with sf.SoundFile(str(info.path)) as f:
            while True:
                data = f.read(_READ_FRAMES, dtype="float32", always_2d=True)
                if data.shape[0] == 0:
                    break
                mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
                # Float files can hold NaN, infinities and values beyond full scale; one NaN would
                # poison the encoder's caches for the rest of the file. Treat them as the int16
                # path does: clip to full scale (NaN becomes silence).
                mono = np.clip(np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
                pending = np.concatenate([pending, resampler.process(mono)])
                while len(pending) >= block_samples:
                    yield pending[:block_samples]
                    pending = pending[block_samples:]
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(f"{info.path}: error while decoding audio ({_first_line(e)})") from None
    pending = np.concatenate([pending, resampler.flush()])
    while len(pending):
        yield pending[:block_samples]
        pending = pending[block_samples:]


def read_audio(path: str | Path) -> np.ndarray:
    """The whole file as ``(N,)`` float32 16 kHz mono (for short files: training, tests)."""
    blocks = list(iter_audio_blocks(path, block_samples=1 << 20))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
