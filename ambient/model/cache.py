"""The streaming state of the encoder, as data you can see.

One :class:`EncoderCache` per stream; one :class:`LayerCache` per *virtual* layer, even when layers
share weights. ``forward_chunk`` never mutates a cache: it returns a new one.

Shapes (``B`` streams, ``H`` heads, ``Dh`` head size, ``D`` model dim, ``K`` conv kernel):
- ``feats``: ``(B, r, 80)`` feature frames not yet consumed by the subsampling convolution;
- ``pending``: ``(B, p, D)`` subsampled frames waiting to fill a chunk (``p < chunk_frames``);
- ``LayerCache.key`` / ``value``: ``(B, H, L, Dh)`` rotary-encoded keys and values of the left
  context (``L <= left_chunks * chunk_frames``; unlimited when ``left_chunks < 0``);
- ``LayerCache.conv``: ``(B, D, K - 1)`` the last inputs of the causal depthwise convolution;
- ``offset``: encoder frames already emitted (the absolute position of the next frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["EncoderCache", "LayerCache"]


@dataclass(frozen=True)
class LayerCache:
    """Streaming state of one virtual Conformer layer."""

    key: torch.Tensor  # (B, H, L, Dh)
    value: torch.Tensor  # (B, H, L, Dh)
    conv: torch.Tensor  # (B, D, K - 1)


@dataclass(frozen=True)
class EncoderCache:
    """Streaming state of the whole encoder for ``B`` lock-step streams."""

    feats: torch.Tensor  # (B, r, 80)
    pending: torch.Tensor  # (B, p, D)
    layers: tuple[LayerCache, ...]
    offset: int
    chunk_frames: int
    left_chunks: int

    @property
    def left_frames(self) -> int:
        """Attention left context in encoder frames (-1 = unlimited)."""
        return -1 if self.left_chunks < 0 else self.left_chunks * self.chunk_frames
