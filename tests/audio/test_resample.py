"""Streaming resampling equals scipy's whole-signal resample_poly, whatever the block sizes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import resample_poly

from ambient.audio.resample import BlockConverter, StreamResampler, to_int16, to_mono_float

RATES = [8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000]


def stream(r: StreamResampler, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    out, i, k = [], 0, 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        out.append(r.process(x[i : i + n]))
        i, k = i + n, k + 1
    out.append(r.flush())
    return np.concatenate(out)


@pytest.mark.parametrize("rate", RATES)
def test_matches_resample_poly_for_common_rates(rate: int) -> None:
    x = np.random.default_rng(rate).standard_normal(rate // 2 + 17)
    g = np.gcd(rate, 16000)
    ref = resample_poly(x, 16000 // g, rate // g)
    y = stream(StreamResampler(orig_rate=rate, new_rate=16000), x, [480, 1, 1023, 7])
    assert len(y) == len(ref)
    np.testing.assert_allclose(y, ref, atol=2e-6)


@settings(max_examples=40, deadline=None)
@given(
    rate=st.sampled_from(RATES),
    n=st.integers(min_value=0, max_value=5000),
    sizes=st.lists(st.integers(min_value=1, max_value=2000), min_size=1, max_size=8),
)
def test_output_does_not_depend_on_block_sizes(rate: int, n: int, sizes: list[int]) -> None:
    x = np.random.default_rng(n).standard_normal(n)
    whole = stream(StreamResampler(orig_rate=rate, new_rate=16000), x, [max(n, 1)])
    pieces = stream(StreamResampler(orig_rate=rate, new_rate=16000), x, sizes)
    np.testing.assert_allclose(pieces, whole, atol=1e-6)
    assert len(whole) == -(-n * 16000 // rate)


def test_memory_stays_bounded_over_a_long_stream() -> None:
    r = StreamResampler(orig_rate=44100, new_rate=16000)
    block = np.zeros(1323)
    for _ in range(2000):  # 60 s
        r.process(block)
    assert len(r._buf) < 2 * 1323 + 200  # history is trimmed to the filter support


def test_a_tone_keeps_its_frequency() -> None:
    t = np.arange(48000) / 48000
    y = stream(StreamResampler(orig_rate=48000, new_rate=16000), np.sin(2 * np.pi * 1000 * t), [480])
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert abs(np.argmax(spectrum) * 16000 / len(y) - 1000) < 2


def test_aliasing_is_filtered_out() -> None:
    t = np.arange(48000) / 48000
    y = stream(StreamResampler(orig_rate=48000, new_rate=16000), np.sin(2 * np.pi * 12000 * t), [480])
    assert np.sqrt(np.mean(y[1000:-1000] ** 2)) < 1e-3  # 12 kHz is above the new Nyquist: gone


def test_rejects_bad_rates() -> None:
    with pytest.raises(ValueError, match="positive"):
        StreamResampler(orig_rate=0, new_rate=16000)


def test_converter_mixes_channels_and_passes_16k_mono_int16_through() -> None:
    mono = np.arange(-100, 100, dtype=np.int16)
    conv = BlockConverter(rate=16000)
    assert conv.convert(mono) is mono or np.shares_memory(conv.convert(mono), mono)
    stereo = np.stack([np.full(160, 1000, np.int16), np.full(160, 3000, np.int16)], axis=1)
    np.testing.assert_array_equal(conv.convert(stereo), np.full(160, 2000, np.int16))
    assert len(conv.flush()) == 0


def test_converter_resamples_48k_stereo_float_to_16k_int16() -> None:
    conv = BlockConverter(rate=48000)
    block = np.zeros((1440, 2), dtype=np.float32)
    out = [conv.convert(block) for _ in range(10)] + [conv.flush()]
    y = np.concatenate(out)
    assert y.dtype == np.int16 and len(y) == 4800


def test_int16_conversion_clips_instead_of_wrapping() -> None:
    np.testing.assert_array_equal(to_int16(np.array([1.5, -1.5, 0.5])), np.array([32767, -32768, 16384], np.int16))
    np.testing.assert_allclose(to_mono_float(np.array([[16384, -16384]], np.int16)), [0.0])
    with pytest.raises(ValueError):
        to_mono_float(np.zeros((2, 2, 2), np.float32))
