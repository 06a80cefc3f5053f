"""Log-mel front end: shapes and streaming exactness."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ambient.audio.features import N_MELS, StreamingFbank, compute_fbank, num_frames


def test_frame_count_and_shape() -> None:
    for n in (0, 399, 400, 559, 560, 16000):
        f = compute_fbank(torch.zeros(n))
        assert f.shape == (num_frames(n), N_MELS)
    assert num_frames(16000) == 98


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_features_equal_whole_signal(seed: int) -> None:
    rng = np.random.default_rng(seed)
    wave = (0.1 * rng.standard_normal(16000 * 2 + 123)).astype(np.float32)
    whole = compute_fbank(wave)
    fb, parts, pos = StreamingFbank(), [], 0
    while pos < len(wave):
        n = int(rng.integers(1, 2500))
        parts.append(fb.accept(wave[pos : pos + n]))
        pos += n
    streamed = torch.cat(parts)
    assert streamed.shape == whole.shape
    torch.testing.assert_close(streamed, whole, atol=1e-5, rtol=0)
    assert fb.buffered_samples < 400 + 160


def test_int16_input_is_scaled() -> None:
    rng = np.random.default_rng(0)
    f = (0.2 * rng.standard_normal(8000)).astype(np.float32)
    i16 = (f * 32768).astype(np.int16)
    torch.testing.assert_close(compute_fbank(i16), compute_fbank(i16.astype(np.float32) / 32768.0))


def test_tone_energy_lands_in_the_right_mel_bin() -> None:
    t = np.arange(16000) / 16000
    low = compute_fbank(np.sin(2 * np.pi * 300 * t).astype(np.float32)).mean(0)
    high = compute_fbank(np.sin(2 * np.pi * 3000 * t).astype(np.float32)).mean(0)
    assert int(low.argmax()) < int(high.argmax())


def test_vtlp_warp_changes_features_but_not_shape() -> None:
    wave = np.sin(2 * np.pi * 500 * np.arange(8000) / 16000).astype(np.float32)
    a, b = compute_fbank(wave), compute_fbank(wave, warp=1.1)
    assert a.shape == b.shape
    assert (a - b).abs().max() > 0.1
    # filters move up in frequency by the warp, so the tone lands in a lower bin
    assert int(b.mean(0).argmax()) < int(a.mean(0).argmax())
