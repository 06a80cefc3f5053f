"""Streaming Conformer encoder whose M virtual layers draw their weights from shared banks.

One class, two modes (the central test proves they agree):

- ``forward(x, lengths, chunk_frames=, left_chunks=)``: a whole padded batch under a chunk
  attention mask (training, and the reference for streaming);
- ``forward_chunk(x, cache) -> (y, cache)``: streaming, with an explicit :class:`EncoderCache`.

A layer is macaron Conformer (Gulati et al. 2020): ½·FFN, multi-head self-attention with rotary
relative positions (RoPE: scores depend only on the distance between frames, and keys cached with
their absolute rotation stay valid), a *causal* depthwise convolution module (LayerNorm instead of
BatchNorm so padding and chunking cannot leak), ½·FFN, LayerNorm.

Shapes: ``B`` batch, ``T`` input frames, ``T'`` encoder frames, ``D`` model dim, ``H`` heads,
``Dh = D / H``, ``K`` conv kernel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ambient.model.cache import EncoderCache, LayerCache
from ambient.model.dims import ModelDims
from ambient.model.sharing import (
    SLOTS,
    VECTORS,
    LinearBank,
    VectorBank,
    dim_value,
    group_index,
    resolve,
    vector_group,
)
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


def _rotary_tables(pos: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos``, ``sin`` of shape ``(T, Dh/2)`` for absolute positions ``pos (T,)``; computed once per
    forward and shared by every layer."""
    inv = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, device=pos.device, dtype=torch.float32) / head_dim))
    ang = pos.to(torch.float32)[:, None] * inv[None, :]  # (T, Dh/2)
    return ang.cos(), ang.sin()


def _rotary(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate ``x (B, H, T, Dh)`` by the tables of :func:`_rotary_tables` (rotary embedding)."""
    cos, sin = rope[0].to(x.dtype), rope[1].to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


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
        # Plain-dict views of the banks and of each vector's group per layer: streaming calls these
        # thousands of times per second, and ModuleDict lookups cost more than the small ops they feed.
        self._banks: dict[str, LinearBank] = {k: b for k, b in self.slots.items() if isinstance(b, LinearBank)}
        self._vector_banks: dict[str, tuple[VectorBank, list[int]]] = {
            k: (b, [group_index(i, b.group, m, sharing.order) for i in range(m)])
            for k, b in self.vectors.items()
            if isinstance(b, VectorBank)
        }
        self.dropout = nn.Dropout(dims.dropout)

    # ----------------------------------------------------------------- building blocks
    def _lin(self, slot: str, x: torch.Tensor, layer: int) -> torch.Tensor:
        return self._banks[slot].forward(x, layer)

    def _vec(self, name: str, layer: int) -> torch.Tensor:
        bank, index = self._vector_banks[name]
        return bank.value[index[layer]]

    def _norm(self, prefix: str, x: torch.Tensor, layer: int) -> torch.Tensor:
        return F.layer_norm(x, (x.size(-1),), self._vec(f"{prefix}_w", layer), self._vec(f"{prefix}_b", layer))

    def _ffn(self, which: str, x: torch.Tensor, layer: int) -> torch.Tensor:
        h = self._norm(f"{which}_norm", x, layer)
        h = self.dropout(F.silu(self._lin(f"{which}_w1", h, layer)))  # (B, T, F)
        return self.dropout(self._lin(f"{which}_w2", h, layer))  # (B, T, D)

    def _attention(
        self,
        x: torch.Tensor,
        layer: int,
        rope: tuple[torch.Tensor, torch.Tensor],
        prefix: LayerCache | None,
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Self-attention of ``x (B, T, D)`` over cached keys + itself. Returns (out, keys, values)."""
        b, t, d = x.shape
        h_ = self.dims.n_heads
        h = self._norm("att_norm", x, layer)

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, h_, d // h_).transpose(1, 2)  # (B, H, T, Dh)

        q = _rotary(heads(self._lin("att_q", h, layer)), rope)
        k = _rotary(heads(self._lin("att_k", h, layer)), rope)
        v = heads(self._lin("att_v", h, layer))
        if prefix is not None and prefix.key.size(2):
            k = torch.cat([prefix.key.to(k.dtype), k], dim=2)  # (B, H, L + T, Dh)
            v = torch.cat([prefix.value.to(v.dtype), v], dim=2)
        drop = self.dims.dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)  # (B, H, T, Dh)
        out = self._lin("att_o", a.transpose(1, 2).reshape(b, t, d), layer)
        return self.dropout(out), k, v

    def _conv(self, x: torch.Tensor, layer: int, prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal conv module on ``x (B, T, D)`` given the previous ``K - 1`` inputs ``prev (B, D, K-1)``."""
        h = self._norm("conv_norm", x, layer)
        h = F.glu(self._lin("conv_pw1", h, layer), dim=-1).transpose(1, 2)  # (B, D, T)
        h = torch.cat([prev.to(h.dtype), h], dim=2)  # (B, D, K - 1 + T)
        new_prev = h[:, :, h.size(2) - (self.dims.conv_kernel - 1) :]
        w, bias = self._vec("conv_dw_w", layer), self._vec("conv_dw_b", layer)
        h = F.conv1d(h, w.unsqueeze(1).to(h.dtype), bias.to(h.dtype), groups=h.size(1))  # (B, D, T)
        h = F.silu(self._norm("conv_ln", h.transpose(1, 2), layer))
        return self.dropout(self._lin("conv_pw2", h, layer)), new_prev

    def _layer(
        self,
        layer: int,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        cache: LayerCache,
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, LayerCache]:
        x = x + 0.5 * self._ffn("ff1", x, layer)
        a, k, v = self._attention(x, layer, rope, cache, mask)
        x = x + a
        c, conv_state = self._conv(x, layer, cache.conv)
        x = x + c
        x = x + 0.5 * self._ffn("ff2", x, layer)
        return self._norm("out_norm", x, layer), LayerCache(key=k, value=v, conv=conv_state)

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
        rope = _rotary_tables(torch.arange(t, device=h.device), self.dims.d_model // self.dims.n_heads)
        h = self.dropout(h)
        empty = self._empty_layer_cache(b, h.device, h.dtype)
        for layer in range(self.dims.n_layers):
            h, _ = self._layer(layer, h, rope, empty, mask)
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
        n_sub = (buf.size(1) - rf) // s + 1 if buf.size(1) >= rf else 0
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
            rope = _rotary_tables(pos, self.dims.d_model // self.dims.n_heads)
            new_layers = []
            for layer in range(self.dims.n_layers):
                h, lc = self._layer(layer, h, rope, layers[layer], None)
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
