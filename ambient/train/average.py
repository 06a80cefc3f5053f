"""Checkpoint averaging: the mean of the weights of a run's last training states.

Averaging the parameters of the last few checkpoints of a run (as WeNet's ``average_model.py`` and
ESPnet do) smooths the noise of the final optimizer steps and is usually worth a few percent of WER
for free. The inputs are training states (``state-<step>.pt``, which hold the model's state dict
under ``"model"``) or model files (``last.pt``, ``best.pt``); the output is a model file like
``last.pt``, whose dims, tokenizer and meta come from a reference model file of the same run.

Floating tensors (weights, norm statistics) are averaged in float64 and cast back; integer buffers
(BatchNorm's ``num_batches_tracked``) are taken from the newest input.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ambient.errors import CheckpointError, ConfigError
from ambient.model.checkpoint import check_payload, load_model, save_model, verify_sha256
from ambient.train.checkpointing import list_training_states

__all__ = ["average_checkpoints", "average_state_dicts", "last_training_states"]


def average_state_dicts(dicts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of ``dicts`` (same keys and shapes); integer tensors from the last one.

    Raises:
        ValueError: no input, or the inputs differ in keys or shapes.
    """
    if not dicts:
        raise ValueError("nothing to average")
    keys = list(dicts[-1])
    out: dict[str, torch.Tensor] = {}
    for i, d in enumerate(dicts):
        if sorted(d) != sorted(keys):
            raise ValueError(f"input {i} has different parameters from the last input")
    for k in keys:
        last = dicts[-1][k]
        if any(d[k].shape != last.shape for d in dicts):
            raise ValueError(f"{k}: shapes differ between the inputs")
        if not last.is_floating_point():
            out[k] = last.clone()
            continue
        acc = torch.zeros(last.shape, dtype=torch.float64)
        for d in dicts:
            acc += d[k].to(torch.float64)
        out[k] = (acc / len(dicts)).to(last.dtype)
    return out


def last_training_states(run_dir: str | Path, n: int) -> list[Path]:
    """The newest ``n`` training states of ``run_dir``, oldest first.

    Raises:
        ConfigError: ``n`` is below 1.
        CheckpointError: fewer than ``n`` states in the directory.
    """
    if n < 1:
        raise ConfigError(f"the number of training states to average must be at least 1, got {n}")
    states = list_training_states(run_dir)
    if len(states) < n:
        raise CheckpointError(f"{run_dir}: {len(states)} training states, {n} asked for")
    return [p for _, p in states[-n:]]


def _model_state(path: Path) -> dict[str, torch.Tensor]:
    """The model state dict in a training state or a (non-quantized) model file."""
    try:
        raw: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for torn or foreign files
        raise CheckpointError(f"{path}: not readable ({str(e).splitlines()[0][:120]})") from None
    if isinstance(raw, dict) and "model" in raw and "step" in raw:
        return dict(raw["model"])
    verify_sha256(path)
    payload = check_payload(raw, path)
    if payload.get("quantized"):
        raise CheckpointError(f"{path}: an int8 model file cannot be averaged")
    return dict(payload["state_dict"])


def average_checkpoints(inputs: Sequence[Path], reference: Path, out: Path) -> str:
    """Average ``inputs`` into the model file ``out`` (dims, tokenizer, meta from ``reference``).

    Returns the SHA-256 of ``out``. ``out``'s meta records the averaged files under
    ``training.averaged_from``.
    """
    model = load_model(reference)
    avg = average_state_dicts([_model_state(Path(p)) for p in inputs])
    try:
        model.load_state_dict(avg, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"{reference}: the averaged weights do not fit its model ({str(e).splitlines()[0]})"
        ) from None
    training = dict(model.meta.get("training") or {})
    training["averaged_from"] = [Path(p).name for p in inputs]
    return save_model(model, out, meta={"training": training})
