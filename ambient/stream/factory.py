"""Build the recognizer a configuration describes: the one construction the daemon, the Wyoming server
and ``ambient transcribe`` share.

``recognizer.backend`` picks what runs the acoustic model: ``onnx`` (onnxruntime on the exported
``model.onnx``; torch is never imported), ``torch`` (the ``model.pt`` checkpoint), or ``auto`` (onnx when
the model folder ships ``model.onnx``). The LM and the search settings come from
:mod:`ambient.stream.decoding`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ambient.errors import CheckpointError
from ambient.runtime.heap import release_memory
from ambient.stream.acoustic import AcousticModel
from ambient.stream.decoding import lm_for
from ambient.stream.recognizer import StreamingRecognizer

if TYPE_CHECKING:
    from ambient.config import Config

__all__ = ["Backend", "Precision", "build_recognizer", "load_acoustic_model", "resolve_backend"]

Backend = Literal["auto", "onnx", "torch"]


Precision = bool | Literal["auto"]


def resolve_backend(path: Path, *, backend: Backend, int8: Precision) -> tuple[Literal["onnx", "torch"], Path]:
    """The backend and the file it loads for ``model.path`` = ``path``: a ``.onnx`` path is the onnx
    backend's file; beside a ``.pt`` the onnx backend reads ``<stem>.onnx`` (``<stem>-int8.onnx`` with
    ``int8``), which ``auto`` uses when it exists. ``int8="auto"`` takes ``<stem>-int8.onnx`` when the
    onnx backend runs and that file exists, else the fp32 file of the backend."""
    if path.suffix == ".onnx":
        if backend == "torch":
            raise CheckpointError(f"{path}: the torch backend needs a torch checkpoint (model.pt), not an ONNX file")
        if int8 is True and not path.stem.endswith("-int8"):
            path = path.with_name(f"{path.stem}-int8.onnx")
        return "onnx", path
    if int8 == "auto":
        quantized = path.with_name(f"{path.stem}-int8.onnx")
        if backend != "torch" and quantized.exists():
            return "onnx", quantized
        int8 = path.stem.endswith("-int8")
    stem = path.stem if not int8 or path.stem.endswith("-int8") else f"{path.stem}-int8"
    onnx_file = path.with_name(f"{stem}.onnx")
    if backend == "onnx" or (backend == "auto" and onnx_file.exists()):
        return "onnx", onnx_file
    return "torch", path


def load_acoustic_model(
    path: Path, *, backend: Backend = "auto", int8: Precision = False, threads: int = 1
) -> AcousticModel:
    """Load the acoustic model for ``model.path`` = ``path`` on ``threads`` intra-op threads (see
    :func:`resolve_backend`). Raises ``CheckpointError`` (one line) for a missing, corrupt, truncated
    or foreign file, or for the torch backend without torch installed."""
    kind, file = resolve_backend(path, backend=backend, int8=int8)
    if kind == "onnx":
        from ambient.runtime.onnx_model import load_onnx_model

        return load_onnx_model(file, threads=threads)
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"{path}: the torch backend needs torch (scripts/setup.sh --train), or ship model.onnx beside it "
            "(ambient model export) for recognizer.backend: onnx"
        ) from None
    from ambient.model.checkpoint import load_model
    from ambient.stream.torch_backend import TorchAcoustic

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already set in this process
        torch.set_num_interop_threads(1)
    return TorchAcoustic(load_model(file, int8=int8 is True))


def build_recognizer(cfg: Config) -> StreamingRecognizer:
    """The recognizer of a configuration: ``model.*`` (file, int8, threads) and ``recognizer.*``
    (backend, chunking, LM and search, final pass). Raises ``CheckpointError``."""
    rc = cfg.recognizer
    model = load_acoustic_model(cfg.model.path, backend=rc.backend, int8=cfg.model.int8, threads=cfg.model.threads)
    lm = lm_for(rc, model_path=cfg.model.path, tokenizer=model.tokenizer)
    release_memory()  # what building the LM's trie and word lists freed (~15 MB)
    return StreamingRecognizer(model, chunk_ms=rc.chunk_ms, lm=lm, final_pass=rc.final_pass)
