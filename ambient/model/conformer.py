"""Streaming Conformer encoder whose M virtual layers draw their weights from shared banks.

One class, two modes (the central test proves they agree):

- ``forward(x, lengths, chunk_frames=, left_chunks=)``: a whole padded batch under a chunk
  attention mask (training, and the reference for streaming);
- ``forward_chunk(x, cache) -> (y, cache)``: streaming, with an explicit :class:`EncoderCache`.

Every stored weight lives in two banks, ``slots`` (projections) and ``vectors`` (norms, depthwise
kernel), built by :func:`~ambient.model.sharing.resolve`; ``layers`` holds one
:class:`~ambient.model.layer.ConformerLayer` per virtual layer, a parameter-free view naming the
stored tensors it uses (``print(model)`` shows the sharing). Positions are rotary (RoPE: scores
depend only on the distance between frames, and keys cached with their absolute rotation stay valid).

Shapes: ``B`` batch, ``T`` input frames, ``T'`` encoder frames, ``D`` model dim, ``H`` heads,
``Dh = D / H``, ``K`` conv kernel.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ambient.model.cache import EncoderCache, LayerCache
from ambient.model.dims import ModelDims
from ambient.model.layer import ConformerLayer, rotary_tables
from ambient.model.sharing import SLOTS, VECTORS, LinearBank, VectorBank, dim_value, resolve, vector_group
from ambient.model.subsampling import ConvSubsampling

__all__ = ["ConformerEncoder", "chunk_attention_mask"]


def chunk_attention_mask(t: int, chunk_frames: int, left_chunks: int, device: torch.device) -> torch.Tensor:
    """``(T', T')`` bool mask: frame i may attend frame j iff j's chunk is i's or one of the
    ``left_chunks`` chunks before it (all earlier chunks if ``left_chunks < 0``; no masking if
    ``chunk_frames <= 0``)."""
    if chunk_frames <= 0:
        return torch.ones(t, t, dtype=torch.bool, device=device)
    c = torch.arange(t, device=device) // chunk_frames
    allowed = c[None, :] <= c[:, None]
    if left_chunks >= 0:
        allowed &= c[None, :] >= c[:, None] - left_chunks
    return allowed


class ConformerEncoder(nn.Module):
    """Subsampling + M virtual Conformer layers over shared weight banks."""

    def __init__(self, *, dims: ModelDims) -> None:
        super().__init__()
        self.dims = dims
        m, sharing = dims.n_layers, dims.sharing
        self.subsampling = ConvSubsampling(
            n_mels=dims.n_mels,
            d_model=dims.d_model,
            channels=dims.sub_channels,
            factor=dims.subsampling,
        )
        # Every stored weight of every virtual layer is in these two dicts (see sharing.resolve).
        specs = resolve(sharing, m)
        self.slots = nn.ModuleDict(
            {
                name.replace(".", "_"): LinearBank(
                    d_in=dim_value(i, dims),
                    d_out=dim_value(o, dims),
                    spec=specs[name],
                    n_layers=m,
                    order=sharing.order,
                )
                for name, (i, o) in SLOTS.items()
            }
        )
        self.vectors = nn.ModuleDict(
            {
                name.replace(".", "_"): VectorBank(
                    shape=tuple(dim_value(s, dims) for s in shape),
                    group=vector_group(sharing, name, m),
                    n_layers=m,
                    init=1.0 if name.endswith("norm.w") or name.endswith("ln.w") else 0.0,
                    order=sharing.order,
                )
                for name, shape in VECTORS.items()
            }
        )
        bound = 1.0 / math.sqrt(dims.conv_kernel)
        dw: VectorBank = self.vectors["conv_dw_w"]  # type: ignore[assignment]
        nn.init.uniform_(dw.value, -bound, bound)
        slots = {k: b for k, b in self.slots.items() if isinstance(b, LinearBank)}
        vectors = {k: b for k, b in self.vectors.items() if isinstance(b, VectorBank)}
        # Parameter-free views: the banks above stay the only place each tensor is registered.
        self.layers = nn.ModuleList(ConformerLayer(index=i, dims=dims, slots=slots, vectors=vectors) for i in range(m))
        self.dropout = nn.Dropout(dims.dropout)

    def ready_frames(self, feature_frames: int) -> int:
        """Encoder frames the subsampling can compute from the first ``feature_frames`` feature
        frames (output frame ``j`` needs input frames ``[s*j, s*j + rf)``; :meth:`ModelDims.ready_frames`)."""
        return self.dims.ready_frames(feature_frames)

    def _empty_layer_cache(self, batch: int, device: torch.device, dtype: torch.dtype) -> LayerCache:
        d, h = self.dims.d_model, self.dims.n_heads
        return LayerCache(
            key=torch.zeros(batch, h, 0, d // h, device=device, dtype=dtype),
            value=torch.zeros(batch, h, 0, d // h, device=device, dtype=dtype),
            conv=torch.zeros(batch, d, self.dims.conv_kernel - 1, device=device, dtype=dtype),
        )

    # ----------------------------------------------------------------- full (training) mode
    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor,
        *,
        chunk_frames: int = 0,
        left_chunks: int = -1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a padded batch under a chunk attention mask.

        Args:
            x: ``(B, T, 80)`` normalized log-mel.
            lengths: ``(B,)`` valid input frames per row.
            chunk_frames: encoder frames per chunk; ``<= 0`` = full context.
            left_chunks: chunks of left context; ``< 0`` = unlimited.
        Returns:
            ``(B, T', D)`` encodings and ``(B,)`` output lengths.
        """
        h = self.subsampling(x)  # (B, T', D)
        out_len = self.subsampling.output_lengths(lengths)
        b, t, _ = h.shape
        valid = torch.arange(t, device=h.device)[None, :] < out_len[:, None]  # (B, T')
        mask = chunk_attention_mask(t, chunk_frames, left_chunks, h.device)[None] & valid[:, None, :]
        mask = (mask | torch.eye(t, dtype=torch.bool, device=h.device)[None]).unsqueeze(1)  # (B, 1, T', T')
        rope = rotary_tables(torch.arange(t, device=h.device), self.dims.d_model // self.dims.n_heads)
        h = self.dropout(h)
        empty = self._empty_layer_cache(b, h.device, h.dtype)
        for layer in self.layers:
            h, _ = layer(h, rope, empty, mask)
        return h, out_len

    # ----------------------------------------------------------------- streaming mode
    def init_cache(
        self,
        *,
        batch: int = 1,
        chunk_frames: int,
        left_chunks: int,
        device: torch.device | None = None,
    ) -> EncoderCache:
        """An empty cache for ``batch`` lock-step streams with the given chunking."""
        if chunk_frames <= 0:
            raise ValueError("streaming needs chunk_frames >= 1")
        dev: torch.device = device or self.subsampling.proj_device
        dtype = torch.float32
        return EncoderCache(
            feats=torch.zeros(batch, 0, self.dims.n_mels, device=dev),
            pending=torch.zeros(batch, 0, self.dims.d_model, device=dev),
            layers=tuple(self._empty_layer_cache(batch, dev, dtype) for _ in range(self.dims.n_layers)),
            offset=0,
            chunk_frames=chunk_frames,
            left_chunks=left_chunks,
        )

    def forward_chunk(
        self, x: torch.Tensor, cache: EncoderCache, *, final: bool = False
    ) -> tuple[torch.Tensor, EncoderCache]:
        """Consume ``x (B, t, 80)`` normalized log-mel frames (any ``t >= 0``).

        Returns the encodings of every chunk completed by this call, ``(B, n, D)`` with ``n`` a
        multiple of ``chunk_frames`` (or the remainder when ``final``), and the new cache.
        """
        s, rf = self.subsampling.factor, self.subsampling.receptive_field
        buf = torch.cat([cache.feats, x], dim=1)  # (B, r + t, 80)
        n_sub = self.ready_frames(buf.size(1))
        sub = (
            self.subsampling(buf[:, : (n_sub - 1) * s + rf])
            if n_sub
            else buf.new_zeros(buf.size(0), 0, self.dims.d_model)
        )
        pending = torch.cat([cache.pending, sub], dim=1)  # (B, p, D)
        rest = buf[:, n_sub * s :]
        layers, offset, outputs = cache.layers, cache.offset, []
        c, left = cache.chunk_frames, cache.left_frames
        while pending.size(1) >= c or (final and pending.size(1) > 0):
            h, pending = pending[:, :c], pending[:, c:]
            pos = torch.arange(offset, offset + h.size(1), device=h.device)
            rope = rotary_tables(pos, self.dims.d_model // self.dims.n_heads)
            new_layers = []
            for layer, layer_cache in zip(self.layers, layers, strict=True):
                h, lc = layer(h, rope, layer_cache, None)
                if left >= 0 and lc.key.size(2) > left:
                    lc = LayerCache(
                        key=lc.key[:, :, -left:] if left else lc.key[:, :, :0],
                        value=lc.value[:, :, -left:] if left else lc.value[:, :, :0],
                        conv=lc.conv,
                    )
                new_layers.append(lc)
            layers = tuple(new_layers)
            offset += h.size(1)
            outputs.append(h)
        y = torch.cat(outputs, dim=1) if outputs else x.new_zeros(x.size(0), 0, self.dims.d_model)
        new_cache = EncoderCache(
            feats=rest if not final else rest[:, :0],
            pending=pending,
            layers=layers,
            offset=offset,
            chunk_frames=c,
            left_chunks=cache.left_chunks,
        )
        return y, new_cache
