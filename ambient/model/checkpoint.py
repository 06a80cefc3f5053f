"""One-file checkpoints: dims, tokenizer, normalization statistics, metadata and weights.

Layout (a ``torch.save`` zip, loaded with ``weights_only=True``)::

    {"format": "ambient-asr", "version": 1, "dims": {...}, "tokenizer": {...},
     "meta": {...}, "quantized": "int8" | None, "state_dict": {...}}

The SHA-256 of the file is recorded beside it (``model.pt.sha256``, or a ``SHA256SUMS`` listing
it in the same folder) and verified on load. Every failure is a one-line :class:`CheckpointError`
naming the file. Shared tensors are stored once: the state dict holds each bank entry once.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ambient.errors import CheckpointError
from ambient.model.asr import AsrModel
from ambient.model.checksums import check_model_file, file_sha256, recorded_sha256, verify_sha256
from ambient.model.dims import ModelDims
from ambient.model.tokenizer import tokenizer_from_dict

__all__ = [
    "LOAD_TIME_META",
    "check_payload",
    "file_sha256",
    "load_model",
    "quantize_int8",
    "read_checkpoint",
    "recorded_sha256",
    "save_model",
    "verify_sha256",
]

FORMAT = "ambient-asr"
VERSION = 1
LOAD_TIME_META = ("path", "int8")  # meta keys load_model sets from the file it read; never stored


def quantize_int8(model: AsrModel) -> AsrModel:
    """int8 dynamic quantization of every ``nn.Linear`` (full, low-rank factors, head)."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch marks the eager quantized-tensor API deprecated; it still works
        warnings.simplefilter("ignore")
        q = quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=False)
    assert isinstance(q, AsrModel)
    q.meta = dict(model.meta)
    return q


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_model(model: AsrModel, path: str | Path, *, meta: dict[str, Any] | None = None, int8: bool = False) -> str:
    """Write ``model`` (fp32, or int8-quantized when ``int8``) to ``path`` plus ``path.sha256``.

    Returns the SHA-256. Both files are written atomically (temp file, fsync, rename). The meta keys
    :func:`load_model` derives from the file it read (``LOAD_TIME_META``) are not stored.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    m = quantize_int8(model) if int8 else model
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "dims": model.dims.to_dict(),
        "tokenizer": model.tokenizer.to_dict(),
        "meta": {k: v for k, v in {**model.meta, **(meta or {})}.items() if k not in LOAD_TIME_META},
        "quantized": "int8" if int8 else None,
        "state_dict": m.state_dict(),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    _atomic_write(p, data)
    _atomic_write(p.with_name(p.name + ".sha256"), f"{digest}  {p.name}\n".encode())
    return digest


def read_checkpoint(path: str | Path, *, verify: bool = True) -> dict[str, Any]:
    """Load and validate the raw checkpoint dict (no model built)."""
    p = Path(path)
    check_model_file(p, expected="model.pt", verify=verify)
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged file can make torch's unpickler fail in any way (IndexError, KeyError, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{p}: not a readable ambient model file ({first[:120]})") from None
    return check_payload(payload, p)


def check_payload(payload: object, path: Path) -> dict[str, Any]:
    """``payload`` (what ``torch.load`` read from ``path``) if it is an ambient model file of this
    version; CheckpointError naming ``path`` otherwise."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an ambient model file (foreign checkpoint)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: unsupported model file version {payload.get('version')!r} (expected {VERSION})")
    return payload


def load_model(path: str | Path, *, int8: bool = False, verify: bool = True) -> AsrModel:
    """Build the model from a checkpoint, in eval mode.

    Args:
        path: the model file.
        int8: quantize an fp32 checkpoint to int8 after loading (int8 files load as int8 anyway).
        verify: check the recorded SHA-256 first.
    """
    p = Path(path)
    payload = read_checkpoint(p, verify=verify)
    try:
        dims = ModelDims.from_dict(payload["dims"])
        tokenizer = tokenizer_from_dict(payload["tokenizer"])
        model = AsrModel(dims=dims, tokenizer=tokenizer, meta=payload.get("meta") or {})
        quantized = payload.get("quantized") == "int8"
        if quantized:
            model = quantize_int8(model)
        model.load_state_dict(payload["state_dict"], strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{p}: inconsistent model file ({first[:160]})") from None
    model.eval()
    if int8 and not quantized:
        model = quantize_int8(model)
        model.eval()
    model.meta.setdefault("name", p.parent.name if p.parent.name not in ("", ".") else p.stem)
    model.meta["path"] = str(p)
    model.meta["int8"] = bool(int8 or quantized)
    return model
