"""Noise and room-impulse-response sources for augmentation.

- :func:`read_noise_manifest` reads the shared ``noise/manifest.tsv``
  (``relative_path<TAB>kind<TAB>seconds``, kind ``noise`` or ``rir``).
- :func:`load_tracks` loads clips as 16 kHz mono float32.
- :func:`colored_noise` makes white, pink or brown noise; :func:`babble` mixes several speech clips.
- :func:`simulate_rirs` builds a seeded bank of shoebox-room impulse responses (image-source method,
  pyroomacoustics); :func:`prepare_rir` trims and normalizes any impulse response for convolution.

Everything that draws randomness takes an explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
from numpy.typing import NDArray
from scipy.signal import resample_poly

from ambient.errors import AmbientError
from ambient.train.manifest import ManifestError

__all__ = [
    "SAMPLE_RATE",
    "NoiseItem",
    "babble",
    "colored_noise",
    "load_tracks",
    "prepare_rir",
    "read_noise_manifest",
    "simulate_rirs",
]

SAMPLE_RATE = 16000

Wave = NDArray[np.float32]


@dataclass(frozen=True)
class NoiseItem:
    """One clip of the noise manifest: an absolute ``path``, its ``kind`` and length in ``seconds``."""

    path: str
    kind: Literal["noise", "rir"]
    seconds: float


def read_noise_manifest(path: str | Path) -> list[NoiseItem]:
    """Clips listed in a noise manifest (``path<TAB>kind<TAB>seconds``, paths relative to its folder).

    Duplicate paths are listed once. Raises :class:`ManifestError` for an unreadable file or a
    malformed line.
    """
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ManifestError(f"cannot read noise manifest {p}: {e.strerror or e}") from None
    items: dict[str, NoiseItem] = {}
    for lineno, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) < 3 or cols[1] not in ("noise", "rir"):
            raise ManifestError(f"{p}:{lineno}: expected 'path<TAB>noise|rir<TAB>seconds'")
        try:
            seconds = float(cols[2])
        except ValueError:
            raise ManifestError(f"{p}:{lineno}: seconds is not a number: {cols[2]!r}") from None
        audio = Path(cols[0])
        full = str(audio if audio.is_absolute() else (p.parent / audio).resolve())
        kind: Literal["noise", "rir"] = "noise" if cols[1] == "noise" else "rir"
        items.setdefault(full, NoiseItem(path=full, kind=kind, seconds=seconds))
    return list(items.values())


def _to_16k_mono(data: NDArray[np.float64], rate: int) -> Wave:
    mono = data.mean(axis=1) if data.ndim == 2 else data
    if rate != SAMPLE_RATE:
        g = math.gcd(rate, SAMPLE_RATE)
        mono = resample_poly(mono, SAMPLE_RATE // g, rate // g)
    return np.ascontiguousarray(mono, dtype=np.float32)


def load_tracks(paths: Sequence[str], *, max_seconds: float | None = None) -> list[Wave]:
    """Each file as ``(N,)`` float32 at 16 kHz, mono (channels averaged), at most ``max_seconds`` long.

    Silent files are left out. Raises :class:`ManifestError` naming a file that cannot be read.
    """
    out: list[Wave] = []
    for path in paths:
        try:
            frames = -1 if max_seconds is None else int(max_seconds * sf.info(path).samplerate)
            data, rate = sf.read(path, frames=frames, dtype="float64", always_2d=False)
        except (OSError, RuntimeError) as e:
            raise ManifestError(f"cannot read audio {path}: {' '.join(str(e).split())}") from None
        wave = _to_16k_mono(data, int(rate))
        if wave.size and float(np.max(np.abs(wave))) > 0:
            out.append(wave)
    return out


def colored_noise(n: int, exponent: float, rng: np.random.Generator) -> Wave:
    """``(n,)`` noise with power spectrum ``1 / f**exponent`` (0 white, 1 pink, 2 brown), unit RMS."""
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    white = rng.standard_normal(n)
    if exponent == 0:
        x = white
    else:
        spec = np.fft.rfft(white)
        f = np.fft.rfftfreq(n)
        f[0] = f[1] if n > 1 else 1.0
        x = np.fft.irfft(spec / f ** (exponent / 2), n)
    x -= x.mean()
    rms = float(np.sqrt(np.mean(x**2)))
    return (x / rms if rms > 0 else x).astype(np.float32)


def babble(speech: Sequence[Wave], n: int, talkers: int, rng: np.random.Generator) -> Wave:
    """``(n,)`` babble: ``talkers`` random speech clips, each looped/cropped to ``n`` and at unit RMS, summed.

    The result has unit RMS. ``speech`` must be non-empty.
    """
    if not speech:
        raise ValueError("babble needs at least one speech clip")
    mix = np.zeros(n, dtype=np.float64)
    for _ in range(talkers):
        clip = speech[int(rng.integers(len(speech)))]
        seg = _crop_loop(clip, n, rng).astype(np.float64)
        rms = float(np.sqrt(np.mean(seg**2)))
        if rms > 0:
            mix += seg / rms
    rms = float(np.sqrt(np.mean(mix**2)))
    return (mix / rms if rms > 0 else mix).astype(np.float32)


def _crop_loop(clip: Wave, n: int, rng: np.random.Generator) -> Wave:
    """A random ``n``-sample stretch of ``clip``, looping it if it is shorter than ``n``."""
    if clip.size >= n:
        start = int(rng.integers(clip.size - n + 1))
        return clip[start : start + n]
    reps = -(-n // clip.size) + 1
    tiled = np.tile(clip, reps)
    start = int(rng.integers(clip.size))
    return tiled[start : start + n]


def prepare_rir(rir: NDArray[np.floating], *, max_seconds: float = 0.8) -> Wave:
    """An impulse response ready for convolution: starts 1 ms before its direct path (the peak),
    at most ``max_seconds`` long with a 20 ms fade-out, scaled to a unit peak. ``(N,)`` float32."""
    r = np.asarray(rir, dtype=np.float64).ravel()
    if r.size == 0 or not np.any(r):
        raise ValueError("empty impulse response")
    peak = int(np.argmax(np.abs(r)))
    start = max(0, peak - SAMPLE_RATE // 1000)
    keep = max(1, int(max_seconds * SAMPLE_RATE))
    truncated = r.size - start > keep
    r = r[start : start + keep].copy()
    fade = min(r.size, int(0.02 * SAMPLE_RATE))
    if truncated and fade > 1:
        r[-fade:] *= np.linspace(1.0, 0.0, fade)
    return np.asarray(r / np.max(np.abs(r)), dtype=np.float32)


def simulate_rirs(
    count: int,
    rng: np.random.Generator,
    *,
    rt60_s: tuple[float, float] = (0.1, 0.7),
    max_order: int = 60,
) -> list[Wave]:
    """``count`` impulse responses of random shoebox rooms (pyroomacoustics image-source method).

    Rooms are 3-10 m x 3-8 m x 2.4-4 m with a target RT60 drawn uniformly from ``rt60_s``; source
    and microphone are at random places at least 0.5 m from the walls and from each other. The
    reflection order is capped at ``max_order`` to bound the cost (about 0.1 s per room). Each
    result went through :func:`prepare_rir`. Raises :class:`AmbientError` without pyroomacoustics.
    """
    try:
        import pyroomacoustics as pra  # imported here: about a second, only when a bank is built
    except ImportError:
        raise AmbientError(
            "simulated rooms need pyroomacoustics: pip install 'ambient[train]', or set rir_bank_size: 0"
        ) from None

    out: list[Wave] = []
    while len(out) < count:
        dims = np.array([rng.uniform(3, 10), rng.uniform(3, 8), rng.uniform(2.4, 4)])
        rt60 = float(rng.uniform(*rt60_s))
        try:
            absorption, order = pra.inverse_sabine(rt60, dims)
        except ValueError:  # this room cannot be that dry: draw another
            continue
        room = pra.ShoeBox(
            dims, fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=min(int(order), max_order)
        )
        src = rng.uniform(0.5, dims - 0.5)
        mic = rng.uniform(0.5, dims - 0.5)
        if float(np.linalg.norm(src - mic)) < 0.5:
            continue
        room.add_source(src.tolist())
        room.add_microphone(mic.tolist())
        room.compute_rir()
        out.append(prepare_rir(np.asarray(room.rir[0][0])))
    return out
