"""Where every weight is stored, and which virtual layers reuse it.

A virtual Conformer layer never owns its weights. Each projection matrix ("slot", e.g. ``att.q``)
of all M virtual layers lives in one :class:`LinearBank`, and each small vector (layer norms,
depthwise kernel) in one :class:`VectorBank`. A bank stores a tensor once per *group* of layers and
maps a virtual layer to its group, so a shared tensor exists once in memory and in the checkpoint.
:func:`resolve` turns a :class:`SharingConfig` into one :class:`SlotSpec` per slot — the whole
sharing scheme is readable in that one function.

The three pieces a slot may combine (``y = x·Wᵀ + b``):
``W_l = F[g_full(l)] + U[g_u(l)]·V[g_v(l)] + diag(d_l)`` — full-rank, low-rank and diagonal.
They are applied factored (``x·Vᵀ·Uᵀ``), never materialized, so low rank also saves compute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ambient.model.dims import SLOTS, ModelDims, SharingConfig

__all__ = [
    "SLOTS",
    "VECTORS",
    "LinearBank",
    "SlotSpec",
    "VectorBank",
    "group_index",
    "init_bound",
    "resolve",
    "vector_group",
]

#: Small per-layer tensors: name -> shape as dim names ("k" = conv kernel).
VECTORS: dict[str, tuple[str, ...]] = {
    "ff1.norm.w": ("d",),
    "ff1.norm.b": ("d",),
    "att.norm.w": ("d",),
    "att.norm.b": ("d",),
    "conv.norm.w": ("d",),
    "conv.norm.b": ("d",),
    "conv.dw.w": ("d", "k"),
    "conv.dw.b": ("d",),
    "conv.ln.w": ("d",),
    "conv.ln.b": ("d",),
    "ff2.norm.w": ("d",),
    "ff2.norm.b": ("d",),
    "out.norm.w": ("d",),
    "out.norm.b": ("d",),
}


def _module_of(name: str) -> str:
    """``ff1.w1`` -> ``ff``; ``att.q`` -> ``att``; ``out.norm.w`` -> ``out``."""
    head = name.split(".")[0]
    return "ff" if head in ("ff1", "ff2") else head


@dataclass(frozen=True)
class SlotSpec:
    """How one projection slot is stored. Group sizes count adjacent virtual layers; 0 = absent."""

    full_group: int
    rank: int
    u_group: int
    v_group: int
    diag: bool
    bias_group: int


def group_index(layer: int, size: int, n_layers: int, order: str = "stack") -> int:
    """Index of the stored tensor used by virtual ``layer`` when ``size`` layers share one."""
    if order == "cycle":
        return layer % math.ceil(n_layers / size)
    return layer // size


def _n_groups(size: int, n_layers: int) -> int:
    return math.ceil(n_layers / size)


def _size(cfg: SharingConfig, n_layers: int) -> int:
    """Layers per group (``ModelDims`` has checked ``group_size <= n_layers``)."""
    return n_layers if cfg.group_size == 0 else cfg.group_size


def resolve(cfg: SharingConfig, n_layers: int) -> dict[str, SlotSpec]:
    """The storage plan of every projection slot under a sharing scheme."""
    k = _size(cfg, n_layers)
    per_layer = SlotSpec(full_group=1, rank=0, u_group=0, v_group=0, diag=False, bias_group=1)
    specs: dict[str, SlotSpec] = {}
    for slot in SLOTS:
        module = _module_of(slot)
        if cfg.scheme == "none":
            specs[slot] = per_layer
        elif cfg.scheme == "repeat":
            r = n_layers // cfg.n_stored_blocks  # ModelDims has checked that it divides
            specs[slot] = SlotSpec(full_group=r, rank=0, u_group=0, v_group=0, diag=False, bias_group=r)
        elif cfg.scheme == "module":
            g = k if module in cfg.shared_modules else 1
            specs[slot] = SlotSpec(full_group=g, rank=0, u_group=0, v_group=0, diag=False, bias_group=g)
        elif cfg.scheme == "subcomponent":
            generic = f"ff.{slot.split('.')[1]}" if module == "ff" else slot
            g = k if (slot in cfg.shared_slots or generic in cfg.shared_slots) else 1
            specs[slot] = SlotSpec(full_group=g, rank=0, u_group=0, v_group=0, diag=False, bias_group=g)
        elif cfg.scheme == "lowrank":
            ug = k if cfg.shared_factor in ("u", "both") else 1
            vg = k if cfg.shared_factor in ("v", "both") else 1
            specs[slot] = SlotSpec(full_group=0, rank=cfg.rank, u_group=ug, v_group=vg, diag=False, bias_group=1)
        else:  # residual
            specs[slot] = SlotSpec(full_group=k, rank=cfg.rank, u_group=1, v_group=1, diag=cfg.diag, bias_group=1)
    return specs


def vector_group(cfg: SharingConfig, name: str, n_layers: int) -> int:
    """Group size of a small per-layer tensor (norms, depthwise kernel) under a sharing scheme."""
    if cfg.scheme == "repeat":
        return n_layers // cfg.n_stored_blocks
    if cfg.scheme == "module" and _module_of(name) in cfg.shared_modules:
        return _size(cfg, n_layers)
    return 1


def _apply(lin: nn.Module, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``lin(x) (+ bias)``; a plain ``nn.Linear`` without its module-call overhead."""
    if type(lin) is nn.Linear:
        return F.linear(x, lin.weight, bias)
    y: torch.Tensor = lin(x)
    return y if bias is None else y + bias


def _linears(mods: nn.ModuleList) -> list[nn.Linear]:
    return [m for m in mods if isinstance(m, nn.Linear)]


def init_bound(d_in: int) -> float:
    """Half-width of the uniform initialization of full-rank weights and ``V`` factors over ``d_in``
    inputs (``ambient model grow`` initializes new ``V`` rows the same way)."""
    return 1.0 / math.sqrt(d_in)


class LinearBank(nn.Module):
    """All stored pieces of one projection slot for M virtual layers.

    ``full[i]``: ``nn.Linear(in, out, bias=False)``; ``u[i]``: ``nn.Linear(rank, out)``;
    ``v[i]``: ``nn.Linear(in, rank)``; ``diag``: ``(M, min(in, out))``; ``bias``: ``(n_bias, out)``.
    Pieces are ``nn.Linear`` so int8 dynamic quantization replaces each stored piece exactly once.
    """

    def __init__(self, *, d_in: int, d_out: int, spec: SlotSpec, n_layers: int, order: str = "stack") -> None:
        super().__init__()
        self.d_in, self.d_out, self.spec, self.n_layers, self.order = (
            d_in,
            d_out,
            spec,
            n_layers,
            order,
        )
        self.full = nn.ModuleList(
            nn.Linear(d_in, d_out, bias=False)
            for _ in range(_n_groups(spec.full_group, n_layers) if spec.full_group else 0)
        )
        self.u = nn.ModuleList(
            nn.Linear(spec.rank, d_out, bias=False)
            for _ in range(_n_groups(spec.u_group, n_layers) if spec.rank else 0)
        )
        self.v = nn.ModuleList(
            nn.Linear(d_in, spec.rank, bias=False) for _ in range(_n_groups(spec.v_group, n_layers) if spec.rank else 0)
        )
        self.n_diag = min(d_in, d_out)
        self.diag = nn.Parameter(torch.zeros(n_layers, self.n_diag)) if spec.diag else None
        self.bias = nn.Parameter(torch.zeros(_n_groups(spec.bias_group, n_layers), d_out))
        self._init_weights()

    def _init_weights(self) -> None:
        bound = init_bound(self.d_in)
        for lin in _linears(self.full):
            nn.init.uniform_(lin.weight, -bound, bound)
        # Low-rank terms start small beside a full-rank term (ResidualTransformer); alone they carry
        # the whole projection, so their product gets the same scale as a full matrix.
        lr_scale = 0.1 if self.spec.full_group else 1.0
        for lin in _linears(self.u):
            nn.init.uniform_(
                lin.weight,
                -lr_scale / math.sqrt(self.spec.rank),
                lr_scale / math.sqrt(self.spec.rank),
            )
        for lin in _linears(self.v):
            nn.init.uniform_(lin.weight, -bound, bound)

    def _g(self, layer: int, size: int) -> int:
        return group_index(layer, size, self.n_layers, self.order)

    def _plan(self, layer: int) -> tuple[nn.Module | None, nn.Module | None, nn.Module | None, int]:
        """``(full, u, v, bias group)`` of virtual ``layer``. Looked up per call (not cached) because
        int8 quantization replaces the stored ``nn.Linear`` pieces in place."""
        s = self.spec
        full = self.full[self._g(layer, s.full_group)] if s.full_group else None
        u = self.u[self._g(layer, s.u_group)] if s.rank else None
        v = self.v[self._g(layer, s.v_group)] if s.rank else None
        return full, u, v, self._g(layer, s.bias_group)

    def pieces(self, layer: int) -> list[tuple[str, int, list[int]]]:
        """``(piece, stored index, virtual layers using that stored tensor)`` for each stored piece
        (``full``, ``u``, ``v``, ``diag``, ``bias``) virtual ``layer`` applies: how ``print(model)``
        shows the sharing."""
        s = self.spec
        sizes = [("full", s.full_group), ("u", s.u_group if s.rank else 0), ("v", s.v_group if s.rank else 0)]
        sizes += [("diag", 1 if s.diag else 0), ("bias", s.bias_group)]
        out = []
        for piece, size in sizes:
            if size:
                g = self._g(layer, size)
                out.append((piece, g, [i for i in range(self.n_layers) if self._g(i, size) == g]))
        return out

    def forward(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """``x (..., d_in)`` -> ``(..., d_out)`` with virtual layer ``layer``'s weight.

        Streaming runs this on a few frames at a time, where the number of small operations, not
        their arithmetic, sets the cost: the bias rides in the full-rank matmul and plain
        ``nn.Linear`` pieces are applied with ``F.linear`` directly (int8 pieces through their module).
        """
        full, u, v, g_bias = self._plan(layer)
        bias = self.bias[g_bias]
        y = _apply(full, x, bias) if full is not None else None
        if u is not None and v is not None:
            low = _apply(u, _apply(v, x))
            y = low + bias if y is None else y + low
        if y is None:  # pragma: no cover - every scheme has a full or a low-rank term
            raise RuntimeError("a projection slot without weights")
        if self.diag is not None:
            m, d = self.n_diag, self.diag[layer]
            if m == self.d_out:
                y = torch.addcmul(y, x[..., :m], d)
            else:
                y = torch.cat([torch.addcmul(y[..., :m], x[..., :m], d), y[..., m:]], dim=-1)
        return y

    def virtual_params(self) -> int:
        """Parameters applied per frame by all M virtual layers together (reuse counted)."""
        s = self.spec
        per_layer = self.d_out  # bias
        if s.full_group:
            per_layer += self.d_in * self.d_out
        if s.rank:
            per_layer += s.rank * (self.d_in + self.d_out)
        if s.diag:
            per_layer += self.n_diag
        return per_layer * self.n_layers


class VectorBank(nn.Module):
    """A small tensor of shape ``shape`` stored once per group of ``group`` virtual layers."""

    def __init__(
        self,
        *,
        shape: tuple[int, ...],
        group: int,
        n_layers: int,
        init: float,
        order: str = "stack",
    ) -> None:
        super().__init__()
        self.group, self.n_layers, self.order = group, n_layers, order
        self.value = nn.Parameter(torch.full((_n_groups(group, n_layers), *shape), init))

    def group_of(self, layer: int) -> int:
        """Index of the stored row used by virtual ``layer``."""
        return group_index(layer, self.group, self.n_layers, self.order)

    def forward(self, layer: int) -> torch.Tensor:
        """The tensor used by virtual ``layer``, shape ``shape``."""
        return self.value[self.group_of(layer)]

    def virtual_params(self) -> int:
        """Parameters applied per frame by all virtual layers (reuse counted)."""
        return self.value[0].numel() * self.n_layers


def dim_value(name: str, dims: ModelDims) -> int:
    """Resolve a dim name from :data:`SLOTS`/:data:`VECTORS` to its size."""
    return {"d": dims.d_model, "f": dims.d_ff, "2d": 2 * dims.d_model, "k": dims.conv_kernel}[name]
