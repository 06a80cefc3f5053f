"""On-the-fly data augmentation for training: waveform effects, a VTLP warp factor and SpecAugment.

:class:`Augmenter` applies, each with its own probability from :class:`AugmentConfig` (0 turns an
effect off), in this order:

1. speed perturbation (resampling by 0.9 / 1.0 / 1.1: tempo and pitch change together);
2. pitch shift (resampling, then WSOLA time-stretch back to the original length);
3. reverberation with a recorded impulse response or one from a seeded bank of simulated rooms;
4. additive noise at a random SNR: recorded noise clips, white / pink / brown noise, or babble mixed
   from other utterances;
5. band-limiting: telephone channel (8 kHz, 300-3400 Hz band-pass, optional mu-law) or a low-pass;
6. a lossy codec round trip: Opus or MP3 at a low bitrate, through libsndfile (soundfile), as
   phone calls, voice messages and compressed recordings sound;
7. gain (then scaled down if it would clip).

``warp_factor(rng)`` draws the vocal-tract-length warp that ``compute_fbank(wave, warp=...)``
applies, and ``spec(feats, rng)`` masks time and frequency bands of the log-mel features.

Every random choice is drawn from the ``numpy.random.Generator`` passed in, so the same generator
state gives the same output. The banks of noise, babble and simulated rooms are built once, in the
constructor, from ``seed``. Each effect is a few vectorized numpy/scipy calls (WSOLA loops over
10 ms hops), so the whole chain costs on average well under a millisecond per second of audio.
"""

from __future__ import annotations

import io
import math
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from scipy.signal import butter, fftconvolve, resample_poly, sosfilt

from ambient.train.manifest import read_manifest
from ambient.train.noise import (
    SAMPLE_RATE,
    babble,
    colored_noise,
    load_tracks,
    prepare_rir,
    read_noise_manifest,
    simulate_rirs,
)

__all__ = ["AugmentConfig", "Augmenter"]

Wave = NDArray[np.float32]
Range = tuple[float, float]

_NOISE_KINDS = ("file", "white", "pink", "brown", "babble")
_COLOR_EXPONENT = {"white": 0.0, "pink": 1.0, "brown": 2.0}
#: codec name -> (libsndfile format, subtype, highest usable compression level).
_CODECS: dict[str, tuple[str, str, float]] = {
    "opus": ("OGG", "OPUS", 1.0),
    "mp3": ("MP3", "MPEG_LAYER_III", 0.9),  # libsndfile refuses 1.0 for MP3
}
_SYNTH_TRACK_SECONDS = 20.0
_BABBLE_TRACKS = 8


class AugmentConfig(BaseModel):
    """Augmentation settings. Every probability in [0, 1]; 0 switches an effect off."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    speed_prob: float = Field(1.0, ge=0, le=1, description="Probability of speed perturbation.")
    speed_factors: tuple[float, ...] = Field(
        (0.9, 1.0, 1.1), min_length=1, description="Speed factors, one drawn uniformly (1.1 = 10% faster, shorter)."
    )
    pitch_prob: float = Field(0.2, ge=0, le=1, description="Probability of a pitch shift that keeps the tempo.")
    pitch_semitones: Range = Field((-2.0, 2.0), description="Pitch shift range in semitones.")
    reverb_prob: float = Field(0.3, ge=0, le=1, description="Probability of reverberation.")
    real_rir_share: float = Field(
        0.3, ge=0, le=1, description="Share of reverberation drawn from recorded RIRs (if the noise manifest has any)."
    )
    rir_bank_size: int = Field(24, ge=0, le=1000, description="Simulated room impulse responses built at start-up.")
    rt60_s: Range = Field((0.1, 0.7), description="Target reverberation time range of the simulated rooms, seconds.")
    noise_prob: float = Field(0.4, ge=0, le=1, description="Probability of additive noise.")
    snr_db: Range = Field((0.0, 25.0), description="Signal-to-noise ratio range for additive noise, dB.")
    noise_weights: dict[str, float] = Field(
        default_factory=lambda: {"file": 1.0, "white": 0.15, "pink": 0.3, "brown": 0.15, "babble": 0.6},
        description="Relative weights of noise kinds: file, white, pink, brown, babble (unavailable ones skipped).",
    )
    noise_manifest: Path | None = Field(
        None, description="Noise manifest (`path<TAB>noise|rir<TAB>seconds`), e.g. the shared `noise/manifest.tsv`."
    )
    babble_manifest: Path | None = Field(
        None, description="Speech manifest (JSON lines) whose utterances are mixed into babble noise."
    )
    babble_pool: int = Field(64, ge=1, le=10000, description="Utterances loaded from the babble manifest.")
    babble_talkers: tuple[int, int] = Field((3, 7), description="Range of simultaneous talkers in babble.")
    telephone_prob: float = Field(
        0.05, ge=0, le=1, description="Probability of a telephone channel (8 kHz, 300-3400 Hz)."
    )
    mu_law_prob: float = Field(
        0.5, ge=0, le=1, description="Probability of 8-bit mu-law coding within the telephone channel."
    )
    lowpass_prob: float = Field(0.05, ge=0, le=1, description="Probability of a low-pass filter (when not telephone).")
    lowpass_hz: Range = Field((3000.0, 7000.0), description="Low-pass cut-off range, Hz.")
    codec_prob: float = Field(0.0, ge=0, le=1, description="Probability of a lossy codec round trip (Opus or MP3).")
    codec_weights: dict[str, float] = Field(
        default_factory=lambda: {"opus": 1.0, "mp3": 1.0}, description="Relative weights of the codecs."
    )
    codec_level: Range = Field(
        (0.6, 1.0), description="libsndfile compression level range (1 = lowest bitrate: Opus about 8 kbps)."
    )
    gain_prob: float = Field(0.5, ge=0, le=1, description="Probability of a random gain.")
    gain_db: Range = Field((-12.0, 6.0), description="Gain range, dB (output is scaled down if it would clip).")
    vtlp_prob: float = Field(0.5, ge=0, le=1, description="Probability of a vocal-tract-length warp other than 1.")
    vtlp_range: Range = Field((0.9, 1.1), description="Warp factor range for `compute_fbank(warp=...)`.")
    spec_prob: float = Field(1.0, ge=0, le=1, description="Probability of SpecAugment masking.")
    freq_masks: int = Field(2, ge=0, le=10, description="Frequency masks per utterance.")
    freq_mask_max_bins: int = Field(15, ge=0, le=80, description="Widest frequency mask, mel bins.")
    time_mask_rate: float = Field(0.01, ge=0, le=1, description="Time masks per feature frame (0.01 = one per second).")
    time_masks_max: int = Field(10, ge=0, le=100, description="Most time masks per utterance.")
    time_mask_max_frames: int = Field(40, ge=0, description="Widest time mask, frames.")
    time_mask_max_ratio: float = Field(0.05, ge=0, le=1, description="Widest time mask as a share of the utterance.")
    mask_value: Literal["mean", "zero"] = Field(
        "mean", description="Fill masks with the utterance's per-bin mean log-mel (0 after normalization) or with 0."
    )

    @field_validator("codec_level")
    @classmethod
    def _level(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 <= v[0] <= v[1] <= 1.0:
            raise ValueError(f"codec_level must be (low, high) within [0, 1], got {list(v)}")
        return v

    @field_validator("pitch_semitones", "rt60_s", "snr_db", "lowpass_hz", "gain_db", "vtlp_range", "babble_talkers")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError(f"range must be (low, high), got {list(v)}")
        return v

    @field_validator("speed_factors")
    @classmethod
    def _positive(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.5 <= f <= 2.0 for f in v):
            raise ValueError(f"speed factors must be within [0.5, 2], got {list(v)}")
        return v

    @field_validator("noise_weights", "codec_weights")
    @classmethod
    def _kinds(cls, v: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        what, known = (
            ("noise kinds", _NOISE_KINDS) if info.field_name == "noise_weights" else ("codecs", tuple(_CODECS))
        )
        unknown = sorted(set(v) - set(known))
        if unknown:
            raise ValueError(f"unknown {what} {unknown}; known: {list(known)}")
        if any(w < 0 for w in v.values()):
            raise ValueError(f"{info.field_name} must be >= 0")
        if info.field_name == "codec_weights" and sum(v.values()) <= 0:
            raise ValueError("codec_weights need a positive sum")
        return v

    @model_validator(mode="after")
    def _rates(self) -> AugmentConfig:
        if self.rt60_s[0] <= 0 and self.rir_bank_size > 0:
            raise ValueError("rt60_s must be > 0")
        if not (self.lowpass_hz[0] > 0 and self.lowpass_hz[1] < SAMPLE_RATE / 2):
            raise ValueError(f"lowpass_hz must lie in (0, {SAMPLE_RATE // 2})")
        return self


def _ratio(factor: float) -> tuple[int, int]:
    """``(up, down)`` for ``resample_poly`` so the output is ``1/factor`` as long."""
    fr = Fraction(factor).limit_denominator(64)
    return fr.denominator, fr.numerator


def _resample(w: Wave, factor: float) -> Wave:
    up, down = _ratio(factor)
    if up == down:
        return w
    return np.asarray(resample_poly(w, up, down), dtype=np.float32)


def _wsola(x: Wave, out_len: int, *, frame: int = 480, hop: int = 240, tol: int = 96) -> Wave:
    """Time-stretch ``x`` to ``out_len`` samples without changing its pitch (WSOLA).

    Frames of ``frame`` samples are overlap-added every ``hop`` output samples; each is taken from
    within ``tol`` samples of its nominal input position where it best continues the previous one.
    """
    if out_len <= frame or x.size <= frame:
        return _fit(_resample(x, x.size / max(out_len, 1)), out_len)
    win = np.hanning(frame + 1)[:frame].astype(np.float32)  # periodic Hann: sums to 1 at 50% overlap
    n_frames = -(-(out_len - frame) // hop) + 1
    scale = (x.size - frame) / max((n_frames - 1) * hop, 1)
    xp = np.pad(x, (tol, tol + frame + hop))
    out = np.zeros((n_frames - 1) * hop + frame, dtype=np.float32)
    wsum = np.zeros_like(out)
    prev = -1
    for k in range(n_frames):
        nominal = tol + round(k * hop * scale)
        if prev < 0:
            best = nominal
        else:
            target = xp[prev + hop : prev + hop + frame]
            region = xp[nominal - tol : nominal + tol + frame]
            # Coarse search on every 2nd sample (a quarter of the work); 1-sample accuracy is not
            # audible at 16 kHz.
            corr = np.correlate(region[::2], target[::2], "valid")
            best = nominal - tol + 2 * int(np.argmax(corr))
        o = k * hop
        out[o : o + frame] += win * xp[best : best + frame]
        wsum[o : o + frame] += win
        prev = best
    np.divide(out, wsum, out=out, where=wsum > 1e-3)
    return out[:out_len]


def _fit(w: Wave, n: int) -> Wave:
    if w.size >= n:
        return w[:n]
    return np.pad(w, (0, n - w.size))


def _rms(w: NDArray[np.floating]) -> float:
    return float(np.sqrt(np.mean(np.square(w, dtype=np.float64)))) if w.size else 0.0


def _crop_loop(track: Wave, n: int, rng: np.random.Generator) -> Wave:
    if track.size >= n:
        start = int(rng.integers(track.size - n + 1))
        return track[start : start + n]
    start = int(rng.integers(track.size))
    return np.tile(track, -(-(n + start) // track.size))[start : start + n]


class Augmenter:
    """Seeded waveform and feature augmentation for training (see the module docstring).

    Args:
        cfg: the settings.
        seed: seeds the banks built here (simulated rooms, synthetic noise, babble mixes).
        noise_manifest: overrides ``cfg.noise_manifest``.
    """

    def __init__(self, cfg: AugmentConfig, *, seed: int = 0, noise_manifest: str | Path | None = None) -> None:
        self.cfg = cfg
        rng = np.random.default_rng(seed)
        manifest = noise_manifest if noise_manifest is not None else cfg.noise_manifest
        items = read_noise_manifest(manifest) if manifest is not None else []
        self.noise_tracks: list[Wave] = load_tracks([i.path for i in items if i.kind == "noise"])
        self.real_rirs: list[Wave] = [
            prepare_rir(r) for r in load_tracks([i.path for i in items if i.kind == "rir"], max_seconds=2.0)
        ]
        self.sim_rirs: list[Wave] = (
            simulate_rirs(cfg.rir_bank_size, rng, rt60_s=cfg.rt60_s) if cfg.reverb_prob > 0 else []
        )
        n_synth = int(_SYNTH_TRACK_SECONDS * SAMPLE_RATE)
        self.color_tracks: dict[str, Wave] = {
            k: colored_noise(n_synth, e, rng) for k, e in _COLOR_EXPONENT.items() if cfg.noise_weights.get(k, 0) > 0
        }
        self.babble_tracks: list[Wave] = self._babble_bank(rng) if cfg.noise_weights.get("babble", 0) > 0 else []
        kinds = {
            "file": bool(self.noise_tracks),
            "babble": bool(self.babble_tracks),
            **{k: True for k in self.color_tracks},
        }
        self._noise_kinds = [k for k in _NOISE_KINDS if kinds.get(k) and cfg.noise_weights.get(k, 0) > 0]
        weights = np.array([cfg.noise_weights[k] for k in self._noise_kinds], dtype=np.float64)
        self._noise_p = weights / weights.sum() if weights.size else weights
        self._tel_sos = butter(4, [300, 3400], btype="bandpass", fs=SAMPLE_RATE // 2, output="sos")

    def _babble_bank(self, rng: np.random.Generator) -> list[Wave]:
        if self.cfg.babble_manifest is None:
            return []
        utts = read_manifest(self.cfg.babble_manifest)
        if not utts:
            return []
        pick = rng.choice(len(utts), size=min(self.cfg.babble_pool, len(utts)), replace=False)
        speech = load_tracks([utts[int(i)].audio for i in sorted(pick)], max_seconds=20.0)
        if not speech:
            return []
        lo, hi = self.cfg.babble_talkers
        n = int(_SYNTH_TRACK_SECONDS * SAMPLE_RATE)
        return [babble(speech, n, int(rng.integers(lo, hi + 1)), rng) for _ in range(_BABBLE_TRACKS)]

    # --- waveform ---------------------------------------------------------------------------

    def wave(self, w: NDArray[np.floating], rng: np.random.Generator) -> Wave:
        """Augment one utterance.

        Args:
            w: ``(N,)`` float waveform at 16 kHz in [-1, 1].
            rng: the source of every random choice.

        Returns:
            ``(M,)`` float32 in [-1, 1]; ``M == N`` unless speed perturbation changed the length
            (``M ≈ N / factor``).
        """
        c = self.cfg
        y = np.asarray(w, dtype=np.float32)
        if y.ndim != 1:
            raise ValueError(f"expected a 1-D waveform, got shape {y.shape}")
        if y.size == 0:
            return y.copy()
        if c.speed_prob > 0 and rng.random() < c.speed_prob:
            y = self.speed(y, float(rng.choice(c.speed_factors)))
        if c.pitch_prob > 0 and rng.random() < c.pitch_prob:
            y = self.pitch(y, float(rng.uniform(*c.pitch_semitones)))
        if c.reverb_prob > 0 and rng.random() < c.reverb_prob:
            y = self.reverb(y, rng)
        if c.noise_prob > 0 and rng.random() < c.noise_prob:
            y = self.noise(y, float(rng.uniform(*c.snr_db)), rng)
        if c.telephone_prob > 0 and rng.random() < c.telephone_prob:
            y = self.telephone(y, mu_law=bool(rng.random() < c.mu_law_prob))
        elif c.lowpass_prob > 0 and rng.random() < c.lowpass_prob:
            y = self.lowpass(y, float(rng.uniform(*c.lowpass_hz)))
        if c.codec_prob > 0 and rng.random() < c.codec_prob:
            names = sorted(c.codec_weights)
            weights = np.array([c.codec_weights[n] for n in names], dtype=np.float64)
            name = str(rng.choice(names, p=weights / weights.sum()))
            y = self.codec(y, name, float(rng.uniform(*c.codec_level)))
        if c.gain_prob > 0 and rng.random() < c.gain_prob:
            y = y * np.float32(10.0 ** (rng.uniform(*c.gain_db) / 20.0))
        peak = float(np.max(np.abs(y)))
        if not math.isfinite(peak):
            raise ValueError("augmentation produced a non-finite sample")
        if peak > 0.999:
            y = y * np.float32(0.999 / peak)
        return np.ascontiguousarray(y, dtype=np.float32)

    @staticmethod
    def speed(w: Wave, factor: float) -> Wave:
        """Play ``w`` ``factor`` times faster by resampling: ``(N,)`` -> ``(≈ N / factor,)``."""
        return _resample(w, factor)

    @staticmethod
    def pitch(w: Wave, semitones: float) -> Wave:
        """Shift the pitch of ``w`` by ``semitones``, keeping its length ``(N,)``."""
        ratio = 2.0 ** (semitones / 12.0)
        return _wsola(_resample(w, ratio), w.size)

    def reverb(self, w: Wave, rng: np.random.Generator) -> Wave:
        """``w`` convolved with a random impulse response, cut to ``N`` samples at the input's RMS."""
        use_real = bool(self.real_rirs) and (not self.sim_rirs or rng.random() < self.cfg.real_rir_share)
        bank = self.real_rirs if use_real else self.sim_rirs
        if not bank:
            return w
        rir = bank[int(rng.integers(len(bank)))]
        y = np.asarray(fftconvolve(w, rir)[: w.size], dtype=np.float32)
        r_in, r_out = _rms(w), _rms(y)
        return y * np.float32(r_in / r_out) if r_out > 0 else y

    def noise(self, w: Wave, snr_db: float, rng: np.random.Generator) -> Wave:
        """``w`` plus noise of a random available kind at ``snr_db`` (power ratio over the whole
        utterance). Silent input or no noise kind available: ``w`` unchanged."""
        p_sig = _rms(w) ** 2
        if not self._noise_kinds or p_sig <= 1e-12:
            return w
        kind = self._noise_kinds[int(rng.choice(len(self._noise_kinds), p=self._noise_p))]
        if kind == "file":
            track = self.noise_tracks[int(rng.integers(len(self.noise_tracks)))]
        elif kind == "babble":
            track = self.babble_tracks[int(rng.integers(len(self.babble_tracks)))]
        else:
            track = self.color_tracks[kind]
        n = _crop_loop(track, w.size, rng)
        p_noise = _rms(n) ** 2
        if p_noise <= 1e-12:
            return w
        scale = math.sqrt(p_sig / (p_noise * 10.0 ** (snr_db / 10.0)))
        return (w + n * np.float32(scale)).astype(np.float32)

    def telephone(self, w: Wave, *, mu_law: bool) -> Wave:
        """A telephone channel: 8 kHz, 300-3400 Hz band-pass, optional 8-bit mu-law; back at 16 kHz, ``(N,)``."""
        y = sosfilt(self._tel_sos, resample_poly(w, 1, 2))
        if mu_law:
            peak = float(np.max(np.abs(y)))
            if peak > 0:
                mu = 255.0
                c = np.sign(y) * np.log1p(mu * np.abs(y / peak)) / math.log1p(mu)
                c = np.round(c * 127.0) / 127.0
                y = np.sign(c) * np.expm1(np.abs(c) * math.log1p(mu)) / mu * peak
        return _fit(resample_poly(y, 2, 1).astype(np.float32), w.size)

    @staticmethod
    def lowpass(w: Wave, cutoff_hz: float) -> Wave:
        """``w`` through an 8th-order Butterworth low-pass at ``cutoff_hz``, ``(N,)``."""
        sos = butter(8, cutoff_hz, btype="lowpass", fs=SAMPLE_RATE, output="sos")
        return np.asarray(sosfilt(sos, w), dtype=np.float32)

    @staticmethod
    def codec(w: Wave, name: str, level: float) -> Wave:
        """``w`` encoded with codec ``name`` (``opus`` or ``mp3``) at libsndfile compression ``level``
        (0 = best quality, 1 = lowest bitrate) and decoded again, ``(N,)`` (trimmed or padded)."""
        fmt, subtype, top = _CODECS[name]
        buf = io.BytesIO()
        x = np.clip(w, -1.0, 1.0).astype(np.float32)
        sf.write(buf, x, SAMPLE_RATE, format=fmt, subtype=subtype, compression_level=min(level, top))
        buf.seek(0)
        y, _ = sf.read(buf, dtype="float32", always_2d=False)
        return _fit(np.asarray(y, dtype=np.float32).reshape(-1), w.size)

    # --- features ---------------------------------------------------------------------------

    def warp_factor(self, rng: np.random.Generator) -> float:
        """A VTLP warp factor for ``compute_fbank(..., warp=...)``: 1.0, or uniform in ``vtlp_range``."""
        c = self.cfg
        if c.vtlp_prob > 0 and rng.random() < c.vtlp_prob:
            return float(rng.uniform(*c.vtlp_range))
        return 1.0

    def spec(self, feats: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """SpecAugment: frequency and time masks on log-mel features.

        Args:
            feats: ``(T, F)`` log-mel frames.
            rng: the source of every random choice.

        Returns:
            A new ``(T, F)`` tensor; masked cells hold the per-bin mean over time of ``feats``
            (``mask_value: mean``) or 0.
        """
        c = self.cfg
        if feats.ndim != 2:
            raise ValueError(f"expected (T, F) features, got shape {tuple(feats.shape)}")
        out = feats.clone()
        t_len, f_len = out.shape
        if t_len == 0 or c.spec_prob <= 0 or rng.random() >= c.spec_prob:
            return out
        fill = feats.mean(dim=0) if c.mask_value == "mean" else torch.zeros(f_len, dtype=feats.dtype)
        for _ in range(c.freq_masks):
            width = int(rng.integers(0, min(c.freq_mask_max_bins, f_len) + 1))
            f0 = int(rng.integers(0, f_len - width + 1))
            out[:, f0 : f0 + width] = fill[f0 : f0 + width]
        n_time = min(c.time_masks_max, round(t_len * c.time_mask_rate))
        max_width = min(c.time_mask_max_frames, int(c.time_mask_max_ratio * t_len))
        for _ in range(n_time):
            width = int(rng.integers(0, max_width + 1))
            t0 = int(rng.integers(0, t_len - width + 1))
            out[t0 : t0 + width, :] = fill
        return out
