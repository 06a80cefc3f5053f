"""Augmentation: determinism, and each effect does what it claims to the signal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from pydantic import ValidationError

from ambient.train.augment import AugmentConfig, Augmenter
from ambient.train.noise import colored_noise, prepare_rir, simulate_rirs

SR = 16000
SHARED_NOISE = Path(__file__).resolve().parents[3] / "shared" / "data" / "noise" / "manifest.tsv"

#: Every effect off: tests switch on the one they look at.
OFF = {
    "speed_prob": 0.0,
    "pitch_prob": 0.0,
    "reverb_prob": 0.0,
    "noise_prob": 0.0,
    "telephone_prob": 0.0,
    "lowpass_prob": 0.0,
    "gain_prob": 0.0,
    "vtlp_prob": 0.0,
    "spec_prob": 0.0,
    "rir_bank_size": 2,
}


def _cfg(**kw: object) -> AugmentConfig:
    return AugmentConfig.model_validate({**OFF, **kw})


def _harmonic(f0: float, seconds: float = 1.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    x = np.sum([np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)], axis=0)
    return np.asarray(amp * x / np.max(np.abs(x)), dtype=np.float32)


def _speechlike(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a syllable-rate envelope plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    x = _harmonic(150, seconds) * env + 0.01 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def _f0(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    freqs = np.fft.rfftfreq(x.size, 1 / SR)
    band = (freqs > 80) & (freqs < 400)
    return float(freqs[band][np.argmax(spec[band])])


def _band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / SR)
    return float(spec[(freqs >= lo) & (freqs < hi)].sum())


@pytest.fixture(scope="module")
def noise_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(5)
    sf.write(str(d / "hum.flac"), (0.1 * np.sin(2 * np.pi * 60 * np.arange(SR * 3) / SR)).astype(np.float32), SR)
    sf.write(str(d / "hiss.wav"), 0.05 * rng.standard_normal(SR * 2).astype(np.float32), 8000)  # resampled on load
    rir = np.zeros(4000, np.float32)
    rir[100] = 1.0
    rir[101:] = 0.3 * rng.standard_normal(3899) * np.exp(-np.arange(3899) / 800)
    sf.write(str(d / "room.flac"), rir, SR)
    (d / "manifest.tsv").write_text("hum.flac\tnoise\t3.0\nhiss.wav\tnoise\t4.0\nroom.flac\trir\t0.25\n")
    return d / "manifest.tsv"


def test_same_seed_same_output_different_seed_different(noise_manifest: Path) -> None:
    aug = Augmenter(AugmentConfig(rir_bank_size=4), seed=1, noise_manifest=noise_manifest)
    x = _speechlike()
    outs = [aug.wave(x, np.random.default_rng(s)) for s in (7, 7, 8)]
    assert np.array_equal(outs[0], outs[1])
    assert not (outs[0].shape == outs[2].shape and np.array_equal(outs[0], outs[2]))
    f = torch.randn(300, 80)
    assert torch.equal(aug.spec(f, np.random.default_rng(3)), aug.spec(f, np.random.default_rng(3)))
    assert aug.warp_factor(np.random.default_rng(4)) == aug.warp_factor(np.random.default_rng(4))
    # The banks themselves are seeded: another augmenter with the same seed behaves the same.
    again = Augmenter(AugmentConfig(rir_bank_size=4), seed=1, noise_manifest=noise_manifest)
    assert np.array_equal(again.wave(x, np.random.default_rng(7)), outs[0])


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_length_by_the_factor(factor: float) -> None:
    aug = Augmenter(_cfg(speed_prob=1.0, speed_factors=(factor,)))
    x = _harmonic(200, 2.0)
    y = aug.wave(x, np.random.default_rng(0))
    assert abs(y.size - x.size / factor) <= 1
    assert _f0(y) == pytest.approx(200 * factor, rel=0.02)  # tempo and pitch move together


@pytest.mark.parametrize("semitones", [-2.0, 2.0])
def test_pitch_shift_keeps_length(semitones: float) -> None:
    x = _harmonic(200, 1.5)
    y = Augmenter.pitch(x, semitones)
    assert y.shape == x.shape and y.dtype == np.float32
    assert _f0(y[2000:-2000]) == pytest.approx(200 * 2 ** (semitones / 12), rel=0.02)


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "file"])
def test_noise_is_added_at_the_drawn_snr(kind: str, noise_manifest: Path) -> None:
    cfg = _cfg(noise_prob=1.0, snr_db=(10.0, 10.0), noise_weights={kind: 1.0})
    aug = Augmenter(cfg, noise_manifest=noise_manifest)
    x = _speechlike()
    y = aug.wave(x, np.random.default_rng(2))
    noise = y - x
    snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
    assert snr == pytest.approx(10.0, abs=0.1)


def test_colored_noise_slopes() -> None:
    rng = np.random.default_rng(0)
    white, pink = colored_noise(SR * 4, 0.0, rng), colored_noise(SR * 4, 1.0, rng)
    assert np.sqrt(np.mean(white**2)) == pytest.approx(1.0, rel=1e-3)
    ratio_w = _band_energy(white, 100, 200) / _band_energy(white, 4000, 4100)
    ratio_p = _band_energy(pink, 100, 200) / _band_energy(pink, 4000, 4100)
    assert ratio_w == pytest.approx(1.0, rel=0.5)
    assert ratio_p > 10  # 1/f: about 27x more power per Hz at 150 Hz than at 4 kHz


def test_babble_from_a_speech_manifest(tmp_path: Path) -> None:
    lines = []
    for i in range(4):
        p = tmp_path / f"u{i}.flac"
        sf.write(str(p), _speechlike(1.0, seed=i), SR)
        lines.append(json.dumps({"audio": p.name, "text": "x", "duration": 1.0, "speaker": "s", "source": "t"}))
    (tmp_path / "speech.jsonl").write_text("\n".join(lines) + "\n")
    cfg = _cfg(
        noise_prob=1.0, snr_db=(5.0, 5.0), noise_weights={"babble": 1.0}, babble_manifest=tmp_path / "speech.jsonl"
    )
    aug = Augmenter(cfg)
    assert len(aug.babble_tracks) > 0
    x = _speechlike(seed=9)
    noise = aug.wave(x, np.random.default_rng(0)) - x
    assert 10 * np.log10(np.mean(x**2) / np.mean(noise**2)) == pytest.approx(5.0, abs=0.1)
    # Babble carries the talkers' harmonics (150 Hz and its multiples), not a flat spectrum.
    assert _band_energy(noise, 140, 160) > 5 * _band_energy(noise, 170, 190)


def test_no_noise_source_leaves_the_signal_alone() -> None:
    aug = Augmenter(_cfg(noise_prob=1.0, noise_weights={"file": 1.0}))  # no manifest: no file noise
    x = _speechlike()
    assert np.array_equal(aug.wave(x, np.random.default_rng(0)), x)


def test_reverb_spreads_energy_and_keeps_level(noise_manifest: Path) -> None:
    for share in (0.0, 1.0):  # simulated rooms, then the recorded impulse response
        cfg = _cfg(reverb_prob=1.0, real_rir_share=share, rt60_s=(0.5, 0.6))  # reverberant rooms
        aug = Augmenter(cfg, noise_manifest=noise_manifest)
        assert aug.sim_rirs and aug.real_rirs
        x = np.zeros(SR, np.float32)
        x[1600:1680] = 0.5 * np.hanning(80)  # a 5 ms click at 0.1 s
        y = aug.wave(x, np.random.default_rng(1))
        assert y.shape == x.shape
        assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=1e-3)
        tail = y[1680 + 480 :]  # from 30 ms after the click
        assert np.sum(tail**2) > 0.01 * np.sum(y**2)


def test_simulated_rooms_decay() -> None:
    rirs = simulate_rirs(3, np.random.default_rng(0), rt60_s=(0.3, 0.5))
    for r in rirs:
        assert r.dtype == np.float32 and np.argmax(np.abs(r)) <= SR // 1000 and np.max(np.abs(r)) == 1.0
        energy = np.cumsum(r[::-1].astype(np.float64) ** 2)[::-1]  # Schroeder integral
        decay_db = 10 * np.log10(energy / energy[0] + 1e-12)
        t20 = np.argmax(decay_db < -20) / SR  # time to fall by 20 dB
        assert 0.05 < t20 < 0.6
    assert prepare_rir(np.r_[np.zeros(50), 1.0, 0.5, 0.25]).tolist() == pytest.approx([0.0] * 16 + [1.0, 0.5, 0.25])


@pytest.mark.parametrize("mu_law", [False, True])
def test_telephone_removes_high_and_low_frequencies(mu_law: bool) -> None:
    x = (0.1 * np.random.default_rng(0).standard_normal(SR * 2)).astype(np.float32)
    y = Augmenter(_cfg()).telephone(x, mu_law=mu_law)
    assert y.shape == x.shape and y.dtype == np.float32
    total = _band_energy(y, 0, SR / 2)
    assert _band_energy(y, 4000, SR / 2) < 0.005 * total
    assert _band_energy(y, 0, 150) < 0.01 * total
    assert _band_energy(y, 500, 3000) > 0.6 * total


def test_lowpass_and_telephone_through_wave() -> None:
    x = (0.1 * np.random.default_rng(1).standard_normal(SR)).astype(np.float32)
    y = Augmenter(_cfg(lowpass_prob=1.0, lowpass_hz=(3000.0, 3000.0))).wave(x, np.random.default_rng(0))
    assert _band_energy(y, 4500, SR / 2) < 0.001 * _band_energy(y, 0, SR / 2)
    z = Augmenter(_cfg(telephone_prob=1.0, mu_law_prob=1.0)).wave(x, np.random.default_rng(0))
    assert _band_energy(z, 4000, SR / 2) < 0.005 * _band_energy(z, 0, SR / 2)


@pytest.mark.parametrize("codec", ["opus", "mp3"])
def test_codec_round_trip_keeps_length_and_timing_and_loses_detail(codec: str) -> None:
    x = _speechlike()
    y = Augmenter.codec(x, codec, 1.0)
    assert y.shape == x.shape and y.dtype == np.float32 and np.all(np.isfinite(y))
    lag = int(np.argmax(np.correlate(y[4000:12000], x[4200:11800], mode="valid"))) - 200
    assert abs(lag) <= 40  # aligned within 2.5 ms: the transcript's timing is kept
    err = float(np.mean((y - x) ** 2) / np.mean(x**2))
    assert 1e-4 < err < 0.5  # audibly coded, still the same signal
    on = Augmenter(_cfg(codec_prob=1.0, codec_weights={codec: 1.0}, codec_level=(1.0, 1.0)))
    assert np.array_equal(on.wave(x, np.random.default_rng(0)), Augmenter.codec(x, codec, 1.0))
    short = Augmenter.codec(x[:7], codec, 0.8)
    assert short.shape == (7,)


def test_gain_and_clipping_guard() -> None:
    x = _speechlike()
    quiet = Augmenter(_cfg(gain_prob=1.0, gain_db=(-6.0, -6.0))).wave(x, np.random.default_rng(0))
    assert quiet == pytest.approx(x * 10 ** (-6 / 20), abs=1e-6)
    loud = Augmenter(_cfg(gain_prob=1.0, gain_db=(20.0, 20.0))).wave(x, np.random.default_rng(0))
    assert float(np.max(np.abs(loud))) == pytest.approx(0.999, abs=1e-4)


def test_everything_on_stays_finite_float32_in_range(noise_manifest: Path) -> None:
    cfg = AugmentConfig(
        speed_prob=1.0, pitch_prob=1.0, reverb_prob=1.0, noise_prob=1.0, telephone_prob=0.5,
        lowpass_prob=1.0, gain_prob=1.0, gain_db=(6.0, 6.0), rir_bank_size=3,
    )  # fmt: skip
    aug = Augmenter(cfg, noise_manifest=noise_manifest)
    for seed in range(12):
        x = np.clip(np.random.default_rng(seed).standard_normal(SR // 2 + seed * 321), -1, 1).astype(np.float32)
        y = aug.wave(x, np.random.default_rng(seed))
        assert y.dtype == np.float32 and y.ndim == 1 and np.all(np.isfinite(y))
        assert float(np.max(np.abs(y))) <= 0.999 + 1e-6
    assert aug.wave(np.zeros(0, np.float32), np.random.default_rng(0)).size == 0
    assert np.all(aug.wave(np.zeros(SR, np.float32), np.random.default_rng(0)) == 0)  # silence stays silence
    with pytest.raises(ValueError, match="1-D"):
        aug.wave(np.zeros((2, 10), np.float32), np.random.default_rng(0))


def test_warp_factor_range_and_switch() -> None:
    on = Augmenter(_cfg(vtlp_prob=1.0, vtlp_range=(0.9, 1.1)))
    draws = [on.warp_factor(np.random.default_rng(s)) for s in range(50)]
    assert all(0.9 <= w <= 1.1 for w in draws) and len(set(draws)) == 50
    off = Augmenter(_cfg(vtlp_prob=0.0))
    assert {off.warp_factor(np.random.default_rng(s)) for s in range(10)} == {1.0}


@pytest.mark.parametrize("mask_value", ["zero", "mean"])
def test_spec_masks_the_right_regions(mask_value: str) -> None:
    cfg = _cfg(
        spec_prob=1.0, freq_masks=2, freq_mask_max_bins=10, time_mask_rate=0.01, time_masks_max=10,
        time_mask_max_frames=30, time_mask_max_ratio=0.05, mask_value=mask_value,
    )  # fmt: skip
    aug = Augmenter(cfg)
    feats = torch.randn(500, 80) + 5.0  # no cell is 0 or equal to its bin mean by chance
    before = feats.clone()
    out = aug.spec(feats, np.random.default_rng(11))
    assert torch.equal(feats, before)  # input untouched
    fill = torch.zeros(80) if mask_value == "zero" else feats.mean(dim=0)
    masked = out == fill.expand_as(out)  # exact: masks copy the fill value
    assert masked.any()
    unmasked = ~masked
    assert torch.equal(out[unmasked], feats[unmasked])
    full_rows = masked.all(dim=1)  # time masks cover whole frames
    full_cols = masked.all(dim=0)  # frequency masks cover whole bins
    assert torch.equal(masked, full_rows[:, None] | full_cols[None, :])
    assert int(full_cols.sum()) <= 2 * 10
    assert int(full_rows.sum()) <= 5 * 25  # 5 masks (one per 100 frames), each at most 5% of 500 frames
    assert aug.spec(torch.zeros(0, 80), np.random.default_rng(0)).shape == (0, 80)
    with pytest.raises(ValueError, match=r"\(T, F\)"):
        aug.spec(torch.zeros(3), np.random.default_rng(0))


@pytest.mark.parametrize(
    "bad",
    [
        {"snr_db": (20.0, 5.0)},
        {"speed_factors": (3.0,)},
        {"noise_weights": {"music": 1.0}},
        {"noise_prob": 1.5},
        {"lowpass_hz": (100.0, 9000.0)},
        {"codec_weights": {"aac": 1.0}},
        {"codec_weights": {"opus": 0.0}},
        {"codec_level": (0.5, 1.5)},
        {"unknown_key": 1},
    ],
)
def test_config_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        AugmentConfig.model_validate(bad)


@pytest.mark.skipif(not SHARED_NOISE.is_file(), reason="shared noise data not present")
def test_shared_noise_manifest_loads() -> None:
    aug = Augmenter(_cfg(reverb_prob=1.0, noise_prob=1.0), noise_manifest=SHARED_NOISE)
    assert len(aug.noise_tracks) >= 10 and len(aug.real_rirs) >= 4
    y = aug.wave(_speechlike(), np.random.default_rng(0))
    assert np.all(np.isfinite(y))
