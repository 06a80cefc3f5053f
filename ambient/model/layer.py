"""One virtual Conformer layer: a thin view over the encoder's shared weight banks.

A :class:`ConformerLayer` owns no parameter. It holds its virtual-layer index and references to the
:class:`~ambient.model.sharing.LinearBank` / :class:`~ambient.model.sharing.VectorBank` entries it
uses; the banks stay registered once, in the encoder, so a shared tensor is stored once in memory
and in the state dict, and int8 quantization replaces each stored piece once. What the view adds:
``print(model)`` names every layer and the stored tensor each of its slots uses (and which other
layers use it too), forward hooks can be put on one layer, and a slot name is an attribute that mypy
checks instead of a string looked up at the first forward.

Layer (macaron Conformer, Gulati et al. 2020): ½·FFN, multi-head self-attention with rotary relative
positions, a causal depthwise convolution module (LayerNorm instead of BatchNorm so padding and
chunking cannot leak), ½·FFN, LayerNorm.

Shapes: ``B`` batch, ``T`` frames of this call, ``L`` cached frames, ``D`` model dim, ``H`` heads,
``Dh = D / H``, ``K`` conv kernel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ambient.model.cache import LayerCache
from ambient.model.dims import ModelDims
from ambient.model.sharing import SLOTS, VECTORS, LinearBank, VectorBank

__all__ = ["ConformerLayer", "Rope", "rotary_tables"]

#: ``cos``, ``sin`` tables of shape ``(T, Dh/2)`` (see :func:`rotary_tables`).
Rope = tuple[torch.Tensor, torch.Tensor]


def rotary_tables(pos: torch.Tensor, head_dim: int) -> Rope:
    """``cos``, ``sin`` of shape ``(T, Dh/2)`` for absolute positions ``pos (T,)``; computed once per
    forward and shared by every layer."""
    inv = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, device=pos.device, dtype=torch.float32) / head_dim))
    ang = pos.to(torch.float32)[:, None] * inv[None, :]  # (T, Dh/2)
    return ang.cos(), ang.sin()


def _rotary(x: torch.Tensor, rope: Rope) -> torch.Tensor:
    """Rotate ``x (B, H, T, Dh)`` by the tables of :func:`rotary_tables` (rotary embedding)."""
    cos, sin = rope[0].to(x.dtype), rope[1].to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


@dataclass(frozen=True)
class _Proj:
    """Projection slot ``bank`` as applied by virtual ``layer`` (a plain reference, not a submodule)."""

    bank: LinearBank
    layer: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x (..., d_in)`` -> ``(..., d_out)``."""
        return self.bank.forward(x, self.layer)


@dataclass(frozen=True)
class _Vec:
    """The stored row ``index`` of a :class:`VectorBank` (a plain reference, not a submodule)."""

    bank: VectorBank
    index: int

    def __call__(self) -> torch.Tensor:
        """The tensor, shape of one bank row."""
        return self.bank.value[self.index]


def _norm(x: torch.Tensor, w: _Vec, b: _Vec) -> torch.Tensor:
    return F.layer_norm(x, (x.size(-1),), w(), b())


def _layers_text(layers: list[int]) -> str:
    return f"layer {layers[0]}" if len(layers) == 1 else "layers " + ",".join(map(str, layers))


class ConformerLayer(nn.Module):
    """Virtual layer ``index`` of ``dims.n_layers``, drawing every weight from the shared banks.

    Args:
        index: this layer's position in the stack.
        dims: the model dimensions (heads, kernel, dropout).
        slots: the encoder's projection banks, keyed like :data:`SLOTS` with ``_`` for ``.``.
        vectors: the encoder's vector banks, keyed like :data:`VECTORS` with ``_`` for ``.``.
    """

    def __init__(
        self,
        *,
        index: int,
        dims: ModelDims,
        slots: Mapping[str, LinearBank],
        vectors: Mapping[str, VectorBank],
    ) -> None:
        super().__init__()
        self.index, self.n_heads, self.kernel, self.p_drop = index, dims.n_heads, dims.conv_kernel, dims.dropout
        self.dropout = nn.Dropout(dims.dropout)

        def proj(name: str) -> _Proj:
            return _Proj(slots[name.replace(".", "_")], index)

        def vec(name: str) -> _Vec:
            bank = vectors[name.replace(".", "_")]
            return _Vec(bank, bank.group_of(index))

        self.ff1_norm_w, self.ff1_norm_b = vec("ff1.norm.w"), vec("ff1.norm.b")
        self.ff1_w1, self.ff1_w2 = proj("ff1.w1"), proj("ff1.w2")
        self.att_norm_w, self.att_norm_b = vec("att.norm.w"), vec("att.norm.b")
        self.att_q, self.att_k, self.att_v, self.att_o = proj("att.q"), proj("att.k"), proj("att.v"), proj("att.o")
        self.conv_norm_w, self.conv_norm_b = vec("conv.norm.w"), vec("conv.norm.b")
        self.conv_pw1, self.conv_pw2 = proj("conv.pw1"), proj("conv.pw2")
        self.conv_dw_w, self.conv_dw_b = vec("conv.dw.w"), vec("conv.dw.b")
        self.conv_ln_w, self.conv_ln_b = vec("conv.ln.w"), vec("conv.ln.b")
        self.ff2_norm_w, self.ff2_norm_b = vec("ff2.norm.w"), vec("ff2.norm.b")
        self.ff2_w1, self.ff2_w2 = proj("ff2.w1"), proj("ff2.w2")
        self.out_norm_w, self.out_norm_b = vec("out.norm.w"), vec("out.norm.b")

    def _ffn(self, x: torch.Tensor, norm_w: _Vec, norm_b: _Vec, w1: _Proj, w2: _Proj) -> torch.Tensor:
        h = self.dropout(F.silu(w1(_norm(x, norm_w, norm_b))))  # (B, T, F)
        return self.dropout(w2(h))  # (B, T, D)

    def _attention(
        self, x: torch.Tensor, rope: Rope, prefix: LayerCache, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Self-attention of ``x (B, T, D)`` over cached keys + itself. Returns (out, keys, values)."""
        b, t, d = x.shape
        h_ = self.n_heads
        h = _norm(x, self.att_norm_w, self.att_norm_b)

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, h_, d // h_).transpose(1, 2)  # (B, H, T, Dh)

        q = _rotary(heads(self.att_q(h)), rope)
        k = _rotary(heads(self.att_k(h)), rope)
        v = heads(self.att_v(h))
        if prefix.key.size(2):
            k = torch.cat([prefix.key.to(k.dtype), k], dim=2)  # (B, H, L + T, Dh)
            v = torch.cat([prefix.value.to(v.dtype), v], dim=2)
        drop = self.p_drop if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)  # (B, H, T, Dh)
        out = self.att_o(a.transpose(1, 2).reshape(b, t, d))
        return self.dropout(out), k, v

    def _conv(self, x: torch.Tensor, prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal conv module on ``x (B, T, D)`` given the previous ``K - 1`` inputs ``prev (B, D, K-1)``."""
        h = _norm(x, self.conv_norm_w, self.conv_norm_b)
        h = F.glu(self.conv_pw1(h), dim=-1).transpose(1, 2)  # (B, D, T)
        h = torch.cat([prev.to(h.dtype), h], dim=2)  # (B, D, K - 1 + T)
        new_prev = h[:, :, h.size(2) - (self.kernel - 1) :]
        w, bias = self.conv_dw_w(), self.conv_dw_b()
        h = F.conv1d(h, w.unsqueeze(1).to(h.dtype), bias.to(h.dtype), groups=h.size(1))  # (B, D, T)
        h = F.silu(_norm(h.transpose(1, 2), self.conv_ln_w, self.conv_ln_b))
        return self.dropout(self.conv_pw2(h)), new_prev

    def forward(
        self, x: torch.Tensor, rope: Rope, cache: LayerCache, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, LayerCache]:
        """``x (B, T, D)`` with rotary tables ``rope`` for its positions, this layer's ``cache`` (its
        left-context keys/values and conv inputs) and an optional ``(B, 1, T, L + T)`` attention mask
        -> ``(B, T, D)`` and the new (untrimmed) cache."""
        x = x + 0.5 * self._ffn(x, self.ff1_norm_w, self.ff1_norm_b, self.ff1_w1, self.ff1_w2)
        a, k, v = self._attention(x, rope, cache, mask)
        x = x + a
        c, conv_state = self._conv(x, cache.conv)
        x = x + c
        x = x + 0.5 * self._ffn(x, self.ff2_norm_w, self.ff2_norm_b, self.ff2_w1, self.ff2_w2)
        return _norm(x, self.out_norm_w, self.out_norm_b), LayerCache(key=k, value=v, conv=conv_state)

    def extra_repr(self) -> str:
        """One line per slot and vector: the stored piece this layer uses and the layers sharing it."""
        lines = [f"index={self.index}"]
        for name in SLOTS:
            p: _Proj = getattr(self, name.replace(".", "_"))
            pieces = [
                f"{piece}{f'.{g}' if piece in ('full', 'u', 'v') else f'[{g}]'} ({_layers_text(users)})"
                for piece, g, users in p.bank.pieces(self.index)
            ]
            lines.append(f"{name}: slots.{name.replace('.', '_')} " + " + ".join(pieces))
        for name in VECTORS:
            v: _Vec = getattr(self, name.replace(".", "_"))
            users = [i for i in range(v.bank.n_layers) if v.bank.group_of(i) == v.index]
            lines.append(f"{name}: vectors.{name.replace('.', '_')}.value[{v.index}] ({_layers_text(users)})")
        return "\n".join(lines)
