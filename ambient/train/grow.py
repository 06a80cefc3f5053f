"""Grow a trained model's low-rank factors without changing what it computes.

Every projection of a ``residual`` (ResidualTransformer) or ``lowrank`` model holds a low-rank term
``U·V`` (``U (out, r)``, ``V (r, in)``). Growing the rank from ``r`` to ``R`` keeps the trained
``U`` and ``V`` in the first ``r`` columns / rows, gives the new rows of ``V`` the usual fresh
initialization and sets the new columns of ``U`` to zero (as LoRA starts its adapters), so the grown
model's output is exactly the trained one's and training picks up from there: the gradient of the
new ``U`` columns is not zero, because the new ``V`` rows are. Everything else (shared full-rank
weights, diagonals, biases, front end, head, normalization) is copied unchanged.

This adds stored capacity to a model that underfits at a small cost in compute (the factors are
applied factored, ``x·Vᵀ·Uᵀ``), while the full-rank weights stay shared across layers.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ambient.errors import CheckpointError, ConfigError
from ambient.model.asr import AsrModel
from ambient.model.checkpoint import load_model, save_model
from ambient.model.dims import ModelDims
from ambient.model.info import stored_params
from ambient.model.sharing import init_bound

__all__ = ["grow_depth", "grow_model_file", "grow_rank", "load_fp32_model", "reshaped_copy"]


def grow_rank(model: AsrModel, rank: int, *, seed: int = 0) -> AsrModel:
    """A copy of ``model`` whose low-rank factors have rank ``rank``, computing the same function.

    Args:
        model: an fp32 model with low-rank factors (scheme ``residual`` or ``lowrank``).
        rank: the new rank, at least the current one.
        seed: seeds the fresh rows of ``V``.

    Raises:
        ConfigError: the scheme has no low-rank factors, or ``rank`` is below the current rank.
    """
    sharing = model.dims.sharing
    if sharing.rank < 1:
        raise ConfigError(f"sharing scheme {sharing.scheme!r} has no low-rank factors to grow")
    if rank < sharing.rank:
        raise ConfigError(f"the new rank ({rank}) is below the model's rank ({sharing.rank})")
    grown = reshaped_copy(model, dataclasses.replace(model.dims, sharing=dataclasses.replace(sharing, rank=rank)))
    old = model.state_dict()
    gen = torch.Generator().manual_seed(seed)
    new: dict[str, torch.Tensor] = {}
    r = sharing.rank
    for name, target in grown.state_dict().items():
        src = old[name]
        if src.shape == target.shape:
            new[name] = src.clone()
        elif _is_factor(name, "u") and src.shape == (target.shape[0], r):
            w = torch.zeros_like(target)
            w[:, :r] = src
            new[name] = w
        elif _is_factor(name, "v") and src.shape == (r, target.shape[1]):
            bound = init_bound(target.shape[1])
            w = torch.empty_like(target).uniform_(-bound, bound, generator=gen)
            w[:r] = src
            new[name] = w
        else:  # pragma: no cover - only the factors depend on the rank
            raise CheckpointError(f"{name}: shape {tuple(src.shape)} does not grow to {tuple(target.shape)}")
    grown.load_state_dict(new, strict=True)
    grown.eval()
    return grown


def grow_depth(model: AsrModel, factor: int) -> AsrModel:
    """A copy of a ``residual`` model with ``factor``× the virtual layers over the same shared weights.

    Virtual layer ``j`` of the grown model starts as a copy of layer ``j // factor`` (each layer is
    repeated ``factor`` times in place, as progressive stacking does), and the sharing groups grow
    with it (``group_size`` × ``factor``), so the full-rank weights stay the same stored tensors and
    are now applied by ``factor``× as many layers. The per-layer pieces (low-rank ``U``/``V``,
    diagonals, biases, norms, depthwise kernels) are copied per new layer, so the copies can learn
    to differ. Unlike :func:`grow_rank` this does change the function (a layer now runs twice), so
    the grown model needs training; the front end, head and normalization are copied unchanged.

    Raises:
        ConfigError: the scheme is not ``residual``, or ``factor`` is below 2.
    """
    sharing = model.dims.sharing
    if sharing.scheme != "residual":
        raise ConfigError(f"depth growth needs sharing scheme 'residual', not {sharing.scheme!r}")
    if factor < 2:
        raise ConfigError(f"the depth factor must be at least 2, not {factor}")
    old_layers = model.dims.n_layers
    group = sharing.group_size or old_layers
    dims = dataclasses.replace(
        model.dims,
        n_layers=old_layers * factor,
        sharing=dataclasses.replace(sharing, group_size=group * factor),
    )
    grown = reshaped_copy(model, dims)
    old = model.state_dict()
    rows = torch.arange(dims.n_layers) // factor
    new: dict[str, torch.Tensor] = {}
    for name, target in grown.state_dict().items():
        parts = name.split(".")
        if _is_factor(name, "u") or _is_factor(name, "v"):
            parts[-2] = str(int(parts[-2]) // factor)
            src = old[".".join(parts)]
        elif name.startswith("encoder.") and _per_layer(old[name], target, old_layers, dims.n_layers):
            src = old[name].index_select(0, rows)  # one row per virtual layer: diagonals, biases, vectors
        else:
            src = old[name]
        if src.shape != target.shape:  # pragma: no cover - every encoder tensor is per layer or shared
            raise CheckpointError(f"{name}: shape {tuple(src.shape)} does not grow to {tuple(target.shape)}")
        new[name] = src.clone()
    grown.load_state_dict(new, strict=True)
    grown.eval()
    return grown


def load_fp32_model(src: str | Path, action: str) -> AsrModel:
    """Load an fp32 model file to reshape it; ``action`` ("grown", "shrunk") names what int8 refuses.

    Raises:
        CheckpointError: ``src`` is unreadable, or an int8 file (its packed weights cannot be reshaped).
    """
    model = load_model(src)
    if model.meta.get("int8"):
        raise CheckpointError(f"{src}: an int8 model file cannot be {action}; use the fp32 file")
    return model


def _per_layer(old: torch.Tensor, new: torch.Tensor, old_layers: int, new_layers: int) -> bool:
    """Whether a tensor holds one row per virtual layer (diagonals, biases, norms, depthwise kernels)."""
    return old.dim() >= 1 and old.shape[0] == old_layers and new.shape[0] == new_layers


def reshaped_copy(model: AsrModel, dims: ModelDims) -> AsrModel:
    """A fresh (untrained) model of ``dims`` with ``model``'s tokenizer, feature normalization and meta;
    the caller loads the reshaped weights (``grow_*`` here, :func:`ambient.train.shrink.shrink_rank`)."""
    return AsrModel(
        dims=dims, tokenizer=model.tokenizer, norm_mean=model.norm_mean, norm_std=model.norm_std, meta=dict(model.meta)
    )


def _is_factor(name: str, which: str) -> bool:
    """Whether ``name`` is a ``LinearBank``'s ``u`` or ``v`` factor weight (``...<slot>.u.<i>.weight``)."""
    parts = name.split(".")
    return len(parts) >= 3 and parts[-3] == which and parts[-1] == "weight" and parts[-2].isdigit()


def grow_model_file(
    src: str | Path, rank: int | None, out: str | Path, *, seed: int = 0, depth: int = 1
) -> tuple[str, int, int]:
    """Write ``src`` grown to ``rank`` (``None``: unchanged) and ``depth``× the layers as ``out``.

    Returns ``(sha256 of out, stored parameters before, stored parameters after)``.

    ``out``'s meta records the source under ``training.grown_from`` (file name and old rank).

    Raises:
        CheckpointError: ``src`` is not a readable fp32 model file.
        ConfigError: see :func:`grow_rank`.
    """
    model = load_fp32_model(src, "grown")
    grown = model if rank is None else grow_rank(model, rank, seed=seed)
    if depth > 1:
        grown = grow_depth(grown, depth)
    training = dict(model.meta.get("training") or {})
    training["grown_from"] = {
        "file": Path(src).name,
        "rank": model.dims.sharing.rank,
        "n_layers": model.dims.n_layers,
    }
    sha = save_model(grown, out, meta={"training": training})
    return sha, stored_params(model), stored_params(grown)
