"""Parameter accounting: stored (in memory and on disk) versus virtual (applied per frame)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ambient.model.asr import AsrModel
from ambient.model.checkpoint import LOAD_TIME_META
from ambient.model.sharing import LinearBank, VectorBank

__all__ = ["model_info", "stored_params", "virtual_params"]


def _quantized_linear_weights(model: nn.Module) -> list[torch.Tensor]:
    """Weights and biases of int8 dynamic-quantized linears (packed, so not ``parameters()``)."""
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    out: list[torch.Tensor] = []
    for m in model.modules():
        if isinstance(m, QLinear):
            out.append(m.weight())
            b = m.bias()
            if b is not None:
                out.append(b)
    return out


def stored_params(model: nn.Module) -> int:
    """Parameters stored once each (shared tensors counted once, by storage; int8 weights included)."""
    seen: set[int] = set()
    total = 0
    for p in [*model.parameters(), *_quantized_linear_weights(model)]:
        key = id(p) if p.is_quantized else p.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += p.numel()
    return total


def virtual_params(model: AsrModel) -> int:
    """Parameters applied per encoder frame, counting every reuse by a virtual layer.

    Counts the fp32 model's banks; subsampling, head and normalization are counted once.
    """
    total = 0
    banked: set[int] = set()
    for mod in model.modules():
        if isinstance(mod, (LinearBank, VectorBank)):
            total += mod.virtual_params()
            banked.update(id(p) for p in mod.parameters())
    for p in model.parameters():
        if id(p) not in banked:
            total += p.numel()
    return total


def model_info(model: AsrModel, path: Path | None = None, sha256: str | None = None) -> dict[str, Any]:
    """Everything ``ambient model info`` prints."""
    d = model.dims
    info: dict[str, Any] = {
        "name": model.name,
        "stored_params": stored_params(model),
        "virtual_params": virtual_params(model),
        "sharing": d.sharing.scheme,
        "sharing_detail": d.sharing.describe(),
        "sharing_config": d.to_dict()["sharing"],
        "dims": {k: v for k, v in d.to_dict().items() if k != "sharing"},
        "tokenizer": model.tokenizer.to_dict()["type"],
        "vocab_size": d.vocab_size,
        "frame_shift_ms": round(model.frame_shift_s * 1000, 3),
        "int8": bool(model.meta.get("int8", False)),
        "meta": {k: v for k, v in model.meta.items() if k not in LOAD_TIME_META},
    }
    if path is not None:
        info["file"] = str(path)
        info["file_size"] = path.stat().st_size
        info["sha256"] = sha256
    return info


def count_tensor_bytes(state: dict[str, torch.Tensor]) -> int:
    """Bytes of tensor data in a state dict (each storage once)."""
    seen: set[int] = set()
    total = 0
    for t in state.values():
        if isinstance(t, torch.Tensor):
            s = t.untyped_storage()
            if s.data_ptr() not in seen:
                seen.add(s.data_ptr())
                total += s.nbytes()
    return total
