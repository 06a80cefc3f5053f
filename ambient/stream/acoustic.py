"""What the streaming recognizer needs from an acoustic model, whatever runs it (torch or onnxruntime).

A backend turns PCM into CTC log-probabilities; the recognizer does the rest (when to run, decoding,
two-pass finals). Two implementations: :class:`ambient.stream.torch_backend.TorchAcoustic` (the
checkpoint through torch, for training and tools) and :class:`ambient.runtime.onnx_model.OnnxAcoustic`
(the exported graph through onnxruntime, with a numpy front end: the daemon without torch). Both
return numpy arrays, so nothing downstream imports torch.

Shapes: ``n`` samples, ``T'`` encoder frames, ``V`` vocabulary.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from ambient.model.tokenizer import Tokenizer

__all__ = ["AcousticModel", "AcousticStream"]


class AcousticStream(Protocol):
    """One utterance's streaming state (front end + encoder caches) at a fixed chunking."""

    def accept(self, pcm: np.ndarray) -> np.ndarray:
        """Feed ``(n,)`` float32 samples; returns ``(T', V)`` log-probs of every chunk they completed."""
        ...

    def finish(self) -> np.ndarray:
        """Flush the last, partial chunk: its ``(T', V)`` log-probs (the stream is then spent)."""
        ...


@runtime_checkable
class AcousticModel(Protocol):
    """A loaded acoustic model: its identity, its units and its two ways of running."""

    #: ``"torch"`` or ``"onnx"``.
    backend: str
    meta: dict[str, Any]
    tokenizer: Tokenizer

    @property
    def name(self) -> str:
        """The model's name (from its metadata)."""
        ...

    @property
    def frame_shift_s(self) -> float:
        """Seconds per encoder frame."""
        ...

    @property
    def vocab_size(self) -> int:
        """Output units, blank included."""
        ...

    @property
    def int8(self) -> bool:
        """Whether the weights are int8-quantized."""
        ...

    def ready_frames(self, feature_frames: int) -> int:
        """Encoder frames that ``feature_frames`` feature frames are enough to compute."""
        ...

    def new_stream(self, *, chunk_frames: int, left_chunks: int) -> AcousticStream:
        """A fresh stream: chunks of ``chunk_frames`` encoder frames, ``left_chunks`` of left context
        (``< 0`` unlimited)."""
        ...

    def full_context_log_probs(self, pcm: np.ndarray) -> np.ndarray:
        """``(n,)`` float32 samples of a whole utterance -> ``(T', V)`` log-probs with full attention
        context (the second pass of two-pass finals)."""
        ...
