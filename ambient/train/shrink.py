"""Shrink a trained model's low-rank factors to the rank they actually use (truncated SVD).

Every projection of a ``residual`` (ResidualTransformer) or ``lowrank`` model holds a low-rank term
``U·V`` (``U (out, r)``, ``V (r, in)``). Training does not have to use all ``r`` directions: the
stage-16 ambient-base, trained at rank 48 after growing from 16, keeps 97-100 % of the energy
(squared singular values) of every per-layer ``U·V`` in its first 16 singular directions. Storing
the other 32 costs 0.9M of its 2.6M stored parameters for almost nothing.

:func:`shrink_rank` replaces each stored product ``U·V`` by its best rank-``R`` approximation
(Eckart-Young: the truncated SVD ``U_R Σ_R V_Rᵀ``), split evenly as ``U' = U_R Σ_R^½`` and
``V' = Σ_R^½ V_Rᵀ`` so that both factors keep comparable scales for further training. Everything
else (shared full-rank weights, diagonals, biases, front end, head, normalization) is copied
unchanged. The outputs change by what the dropped directions carried; :func:`factor_energy` reports
that share per slot before one commits to a rank.

The opposite operation, growing the rank with the outputs unchanged, is :mod:`ambient.train.grow`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from ambient.errors import CheckpointError, ConfigError
from ambient.model.asr import AsrModel
from ambient.model.checkpoint import save_model
from ambient.model.info import stored_params
from ambient.model.sharing import LinearBank
from ambient.train.grow import load_fp32_model, reshaped_copy

__all__ = ["factor_energy", "shrink_model_file", "shrink_rank"]


def _product(bank: LinearBank, i: int) -> torch.Tensor:
    """The stored low-rank product ``U_i·V_i``, ``(d_out, d_in)``, in float64."""
    u, v = bank.u[i], bank.v[i]
    if not isinstance(u, nn.Linear) or not isinstance(v, nn.Linear):
        raise CheckpointError("an int8 model's factors cannot be shrunk; use the fp32 file")
    return u.weight.double() @ v.weight.double()


def _factor_pairs(model: AsrModel) -> list[tuple[str, LinearBank, int]]:
    """``(slot name, bank, index)`` of every stored ``U``/``V`` pair, in module order."""
    out: list[tuple[str, LinearBank, int]] = []
    for name, mod in model.named_modules():
        if isinstance(mod, LinearBank) and mod.spec.rank:
            if len(mod.u) != len(mod.v):  # lowrank with one factor shared: products are not per pair
                raise ConfigError(
                    "shrinking needs one U per V (scheme 'residual', or 'lowrank' with shared_factor 'both')"
                )
            out.extend((name, mod, i) for i in range(len(mod.u)))
    return out


def _energy_share(s: torch.Tensor, rank: int) -> float:
    """Share of the squared singular values ``s`` (descending) in the first ``rank`` (1.0 if all zero)."""
    total = float((s**2).sum())
    return float((s[:rank] ** 2).sum()) / total if total > 0 else 1.0


def factor_energy(model: AsrModel, rank: int) -> dict[str, float]:
    """Share of the squared singular values of each stored ``U·V`` within its first ``rank`` directions.

    Returns ``{"<slot>[<index>]": share in [0, 1]}`` (1.0 for a zero product).
    """
    with torch.no_grad():
        return {
            f"{name}[{i}]": _energy_share(torch.linalg.svdvals(_product(bank, i)), rank)
            for name, bank, i in _factor_pairs(model)
        }


def _truncate(model: AsrModel, rank: int) -> tuple[AsrModel, dict[str, float]]:
    """:func:`shrink_rank`'s model and :func:`factor_energy`'s shares, from one SVD per product."""
    sharing = model.dims.sharing
    if sharing.rank < 1:
        raise ConfigError(f"sharing scheme {sharing.scheme!r} has no low-rank factors to shrink")
    if not 1 <= rank <= sharing.rank:
        raise ConfigError(f"the new rank ({rank}) must be between 1 and the model's rank ({sharing.rank})")
    pairs = _factor_pairs(model)
    small = reshaped_copy(model, dataclasses.replace(model.dims, sharing=dataclasses.replace(sharing, rank=rank)))
    new = {k: v.clone() for k, v in model.state_dict().items()}
    shares: dict[str, float] = {}
    with torch.no_grad():
        for name, bank, i in pairs:
            u, s, vt = torch.linalg.svd(_product(bank, i), full_matrices=False)  # of (out, in)
            root = s[:rank].sqrt()
            new[f"{name}.u.{i}.weight"] = (u[:, :rank] * root).float()
            new[f"{name}.v.{i}.weight"] = (root[:, None] * vt[:rank]).float()
            shares[f"{name}[{i}]"] = _energy_share(s, rank)
    small.load_state_dict(new, strict=True)
    small.eval()
    return small, shares


def shrink_rank(model: AsrModel, rank: int) -> AsrModel:
    """A copy of ``model`` whose low-rank factors are the rank-``rank`` truncated SVD of the old ``U·V``.

    Args:
        model: an fp32 model with low-rank factors (scheme ``residual``, or ``lowrank`` with one ``U``
            per ``V``).
        rank: the new rank, at least 1 and at most the current one.

    Raises:
        ConfigError: the scheme has no low-rank factors, or ``rank`` is out of range.
    """
    return _truncate(model, rank)[0]


def shrink_model_file(src: str | Path, rank: int, out: str | Path) -> tuple[str, int, int, float]:
    """Write ``src`` with its factors shrunk to ``rank`` as ``out``.

    Returns ``(sha256 of out, stored parameters before, after, the smallest kept energy share over
    all slots)``. ``out``'s meta records the source under ``training.shrunk_from``.

    Raises:
        CheckpointError: ``src`` is not a readable fp32 model file.
        ConfigError: see :func:`shrink_rank`.
    """
    model = load_fp32_model(src, "shrunk")
    small, shares = _truncate(model, rank)
    kept = min(shares.values())
    training = dict(model.meta.get("training") or {})
    training["shrunk_from"] = {"file": Path(src).name, "rank": model.dims.sharing.rank, "min_energy_kept": kept}
    sha = save_model(small, out, meta={"training": training})
    return sha, stored_params(model), stored_params(small), kept
