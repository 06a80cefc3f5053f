"""The central test: chunk-by-chunk streaming equals the full masked forward, for every scheme."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ambient.audio.features import StreamingFbank, compute_fbank
from ambient.model.dims import SCHEMES
from ambient.model.testing import build_tiny_model


def _speechlike(seconds: float, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    w = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / 16000) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return torch.from_numpy((w + 0.02 * rng.standard_normal(len(t))).astype(np.float32))


def _stream(model, wave: torch.Tensor, chunk: int, left: int, seed: int) -> torch.Tensor:
    """Feed raw audio in random-size pieces through features and the encoder cache."""
    g = np.random.default_rng(seed)
    fb, cache, outs, pos = StreamingFbank(), model.init_cache(chunk_frames=chunk, left_chunks=left), [], 0
    while pos < wave.numel():
        n = int(g.integers(1, 4000))
        feats = fb.accept(wave[pos : pos + n])
        pos += n
        y, cache = model.forward_chunk(feats[None], cache)
        assert y.size(1) % chunk == 0
        outs.append(y)
    y, cache = model.forward_chunk(torch.zeros(1, 0, 80), cache, final=True)
    outs.append(y)
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(("chunk", "left"), [(1, 0), (4, 2), (8, -1), (5, 1)])
def test_streaming_equals_full_masked_forward(scheme: str, chunk: int, left: int) -> None:
    torch.manual_seed(0)
    model = build_tiny_model(scheme)
    wave = _speechlike(2.3, seed=chunk)
    feats = compute_fbank(wave)
    with torch.inference_mode():
        full, out_len = model(feats[None], torch.tensor([feats.size(0)]), chunk_frames=chunk, left_chunks=left)
        streamed = _stream(model, wave, chunk, left, seed=chunk + 7)
    assert streamed.shape == full.shape
    assert int(out_len[0]) == full.size(1) > 0
    torch.testing.assert_close(streamed, full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("scheme", ["none", "residual"])
def test_streaming_equals_full_with_8x_subsampling(scheme: str) -> None:
    model = build_tiny_model(scheme, subsampling=8)
    wave = _speechlike(3.1, seed=3)
    feats = compute_fbank(wave)
    with torch.inference_mode():
        full, _ = model(feats[None], torch.tensor([feats.size(0)]), chunk_frames=3, left_chunks=2)
        streamed = _stream(model, wave, 3, 2, seed=11)
    torch.testing.assert_close(streamed, full, atol=1e-5, rtol=0)


def test_chunk_mask_limits_what_a_frame_sees() -> None:
    """Changing audio in a future chunk must not change earlier outputs; full context does."""
    model = build_tiny_model("none")
    wave = _speechlike(2.0, seed=1)
    other = wave.clone()
    other[-8000:] = torch.randn(8000) * 0.3
    f1, f2 = compute_fbank(wave)[None], compute_fbank(other)[None]
    lens = torch.tensor([f1.size(1)])
    with torch.inference_mode():
        a, _ = model(f1, lens, chunk_frames=4, left_chunks=-1)
        b, _ = model(f2, lens, chunk_frames=4, left_chunks=-1)
        c, _ = model(f1, lens, chunk_frames=0)
        d, _ = model(f2, lens, chunk_frames=0)
    torch.testing.assert_close(a[:, :8], b[:, :8], atol=1e-6, rtol=0)
    assert (c[:, :8] - d[:, :8]).abs().max() > 1e-4


def test_padding_does_not_change_valid_outputs() -> None:
    """A short utterance batched with a long one gives the same outputs as alone."""
    model = build_tiny_model("residual")
    short, long = compute_fbank(_speechlike(1.0, 1)), compute_fbank(_speechlike(2.0, 2))
    batch = torch.zeros(2, long.size(0), 80)
    batch[0, : short.size(0)] = short
    batch[1] = long
    with torch.inference_mode():
        alone, n = model(short[None], torch.tensor([short.size(0)]), chunk_frames=4, left_chunks=2)
        both, lens = model(batch, torch.tensor([short.size(0), long.size(0)]), chunk_frames=4, left_chunks=2)
    assert int(lens[0]) == int(n[0])
    torch.testing.assert_close(both[0, : int(n[0])], alone[0], atol=1e-5, rtol=0)


def test_every_virtual_layer_keeps_its_own_cache() -> None:
    model = build_tiny_model("repeat")  # 2 stored blocks -> 4 virtual layers
    cache = model.init_cache(chunk_frames=4, left_chunks=2)
    feats = compute_fbank(_speechlike(1.0, 5))
    with torch.inference_mode():
        _, cache = model.forward_chunk(feats[None], cache)
    assert len(cache.layers) == model.dims.n_layers == 4
    keys = [lc.key for lc in cache.layers]
    assert len({k.data_ptr() for k in keys}) == 4
    # layers 0 and 1 share weights but see different inputs, so their caches differ
    assert not torch.allclose(keys[0], keys[1])
    assert cache.layers[0].key.size(2) <= 2 * 4
