"""Small random-weight models and checkpoints for tests (never for real use)."""

from __future__ import annotations

from pathlib import Path

import torch

from ambient.model.asr import AsrModel
from ambient.model.checkpoint import save_model
from ambient.model.dims import ModelDims, SharingConfig

__all__ = ["SCHEME_EXAMPLES", "build_tiny_model", "write_tiny_checkpoint"]

#: One small example configuration per sharing scheme.
SCHEME_EXAMPLES: dict[str, SharingConfig] = {
    "none": SharingConfig(),
    "repeat": SharingConfig(scheme="repeat", n_stored_blocks=2),
    "module": SharingConfig(scheme="module", shared_modules=("ff", "conv")),
    "subcomponent": SharingConfig(scheme="subcomponent", shared_slots=("att.q", "att.k", "ff.w1")),
    "lowrank": SharingConfig(scheme="lowrank", rank=8, shared_factor="u"),
    "residual": SharingConfig(scheme="residual", rank=4, group_size=2, diag=True),
}


def build_tiny_model(scheme: str = "none", *, seed: int = 0, n_layers: int = 4, subsampling: int = 4) -> AsrModel:
    """A small random model (d=64, 4 virtual layers) with the example config of ``scheme``."""
    torch.manual_seed(seed)
    dims = ModelDims(
        d_model=64,
        n_heads=4,
        d_ff=128,
        n_layers=n_layers,
        conv_kernel=5,
        sub_channels=16,
        subsampling=subsampling,  # type: ignore[arg-type]
        dropout=0.0,
        sharing=SCHEME_EXAMPLES[scheme],
    )
    return AsrModel(dims=dims, meta={"name": f"tiny-{scheme}"}).eval()


def write_tiny_checkpoint(path: str | Path, *, scheme: str = "repeat", seed: int = 0) -> Path:
    """Write a tiny random checkpoint (plus ``.sha256``) and return its path."""
    p = Path(path)
    save_model(build_tiny_model(scheme, seed=seed), p)
    return p
