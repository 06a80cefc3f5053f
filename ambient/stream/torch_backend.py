"""The torch backend of :class:`~ambient.stream.acoustic.AcousticModel`: a checkpoint run by torch.

Used by training (dev decoding), ``recognizer.backend: torch`` and tools that need the torch model;
the daemon's default is the ONNX backend (:mod:`ambient.runtime.onnx_model`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ambient.audio.features import StreamingFbank, compute_fbank
from ambient.model.asr import AsrModel
from ambient.model.cache import EncoderCache
from ambient.model.tokenizer import Tokenizer

__all__ = ["FULL_PASS_BUCKET_FRAMES", "TorchAcoustic"]

#: The full pass's input is padded to a multiple of this many feature frames (0.64 s): at most ~50
#: distinct shapes up to ``FULL_PASS_MAX_S``, so the kernels oneDNN caches per shape stay bounded.
FULL_PASS_BUCKET_FRAMES = 64


class _TorchStream:
    """Torch front end + :class:`EncoderCache` of one utterance."""

    def __init__(self, model: AsrModel, *, chunk_frames: int, left_chunks: int) -> None:
        self._model = model
        self._fbank = StreamingFbank()
        self._cache: EncoderCache = model.init_cache(chunk_frames=chunk_frames, left_chunks=left_chunks)

    def _run(self, feats: torch.Tensor, *, final: bool) -> np.ndarray:
        with torch.inference_mode():
            log_probs, self._cache = self._model.forward_chunk(feats[None], self._cache, final=final)
        return log_probs[0].numpy()

    def accept(self, pcm: np.ndarray) -> np.ndarray:
        """Feed samples; the log-probs of the chunks they completed."""
        feats = self._fbank.accept(pcm)
        if feats.size(0) == 0:
            return np.zeros((0, self._model.dims.vocab_size), np.float32)
        return self._run(feats, final=False)

    def finish(self) -> np.ndarray:
        """The last, partial chunk."""
        return self._run(torch.zeros(0, self._model.dims.n_mels), final=True)


class TorchAcoustic:
    """An :class:`AsrModel` behind the :class:`~ambient.stream.acoustic.AcousticModel` interface."""

    backend = "torch"

    def __init__(self, model: AsrModel) -> None:
        self.model = model
        self.meta: dict[str, Any] = model.meta
        self.tokenizer: Tokenizer = model.tokenizer

    @property
    def name(self) -> str:
        """The model's name."""
        return self.model.name

    @property
    def frame_shift_s(self) -> float:
        """Seconds per encoder frame."""
        return self.model.frame_shift_s

    @property
    def vocab_size(self) -> int:
        """Output units."""
        return self.model.dims.vocab_size

    @property
    def int8(self) -> bool:
        """Whether the linears are int8-quantized."""
        return bool(self.meta.get("int8", False))

    def ready_frames(self, feature_frames: int) -> int:
        """Encoder frames computable from ``feature_frames`` feature frames."""
        return self.model.encoder.ready_frames(feature_frames)

    def new_stream(self, *, chunk_frames: int, left_chunks: int) -> _TorchStream:
        """A fresh stream at this chunking."""
        return _TorchStream(self.model, chunk_frames=chunk_frames, left_chunks=left_chunks)

    def full_context_log_probs(self, pcm: np.ndarray) -> np.ndarray:
        """One full-context pass over ``pcm``."""
        feats = compute_fbank(pcm)
        t = feats.size(0)
        if t == 0:
            return np.zeros((0, self.vocab_size), np.float32)
        # Padded (and masked) to a multiple of FULL_PASS_BUCKET_FRAMES: oneDNN caches its kernels per
        # input shape, so one shape per utterance length would grow the daemon's memory for good.
        padded = math.ceil(t / FULL_PASS_BUCKET_FRAMES) * FULL_PASS_BUCKET_FRAMES
        feats = torch.nn.functional.pad(feats, (0, 0, 0, padded - t))
        with torch.inference_mode():
            log_probs, out_len = self.model(feats[None], torch.tensor([t]))
        return log_probs[0, : int(out_len[0])].numpy()
