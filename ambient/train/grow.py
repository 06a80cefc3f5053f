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
from ambient.model.info import stored_params
from ambient.model.sharing import init_bound

__all__ = ["grow_model_file", "grow_rank"]


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
    dims = dataclasses.replace(model.dims, sharing=dataclasses.replace(sharing, rank=rank))
    grown = AsrModel(
        dims=dims,
        tokenizer=model.tokenizer,
        norm_mean=model.norm_mean,
        norm_std=model.norm_std,
        meta=dict(model.meta),
    )
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


def _is_factor(name: str, which: str) -> bool:
    """Whether ``name`` is a ``LinearBank``'s ``u`` or ``v`` factor weight (``...<slot>.u.<i>.weight``)."""
    parts = name.split(".")
    return len(parts) >= 3 and parts[-3] == which and parts[-1] == "weight" and parts[-2].isdigit()


def grow_model_file(src: str | Path, rank: int, out: str | Path, *, seed: int = 0) -> tuple[str, int, int]:
    """Write ``src`` grown to ``rank`` as the model file ``out``.

    Returns ``(sha256 of out, stored parameters before, stored parameters after)``.

    ``out``'s meta records the source under ``training.grown_from`` (file name and old rank).

    Raises:
        CheckpointError: ``src`` is not a readable fp32 model file.
        ConfigError: see :func:`grow_rank`.
    """
    model = load_model(src)
    if model.meta.get("int8"):
        raise CheckpointError(f"{src}: an int8 model file cannot be grown; use the fp32 file")
    grown = grow_rank(model, rank, seed=seed)
    training = dict(model.meta.get("training") or {})
    training["grown_from"] = {"file": Path(src).name, "rank": model.dims.sharing.rank}
    sha = save_model(grown, out, meta={"training": training})
    return sha, stored_params(model), stored_params(grown)
