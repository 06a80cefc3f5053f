"""The streaming recognizer shared by the daemon, ``ambient transcribe`` and ``ambient eval``.

PCM -> :class:`StreamingFbank` -> ``model.forward_chunk`` (explicit :class:`EncoderCache`) ->
greedy CTC over all frames of the utterance so far. The result depends on the model, ``chunk_ms``
and ``left_chunks`` only, never on how the audio was split into ``accept`` calls.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch

from ambient.audio.features import N_MELS, SAMPLE_RATE, StreamingFbank
from ambient.model.asr import AsrModel
from ambient.model.cache import EncoderCache
from ambient.model.ctc import FrameBest, Hypothesis, best_path, hypothesis_from_best

__all__ = ["DEFAULT_LEFT_CONTEXT_S", "StreamingRecognizer", "transcribe_blocks"]

#: Attention left context used when the model metadata does not say otherwise.
DEFAULT_LEFT_CONTEXT_S = 10.24


class StreamingRecognizer:
    """Incremental recognition of one utterance at a time (caches reset by :meth:`finish`)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, model: AsrModel, *, chunk_ms: int = 640, left_chunks: int | None = None) -> None:
        self.model = model
        self.chunk_frames = max(1, round(chunk_ms / 1000 / model.frame_shift_s))
        self.chunk_ms = round(self.chunk_frames * model.frame_shift_s * 1000)
        if left_chunks is None:
            left_s = float(model.meta.get("left_context_s", DEFAULT_LEFT_CONTEXT_S))
            left_chunks = max(1, math.ceil(left_s * 1000 / self.chunk_ms)) if left_s >= 0 else -1
        self.left_chunks = left_chunks
        self._fbank = StreamingFbank()
        self.reset()

    def reset(self) -> None:
        """Drop all state: the next sample starts a new utterance."""
        self._fbank.reset()
        self._cache: EncoderCache = self.model.init_cache(chunk_frames=self.chunk_frames, left_chunks=self.left_chunks)
        self._ids: list[torch.Tensor] = []
        self._probs: list[torch.Tensor] = []
        self._samples = 0
        self._last_text = ""

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio fed in this utterance."""
        return self._samples / SAMPLE_RATE

    @property
    def frames_decoded(self) -> int:
        """Encoder frames decoded in this utterance."""
        return sum(int(t.numel()) for t in self._ids)

    def _step(self, feats: torch.Tensor, *, final: bool) -> bool:
        with torch.inference_mode():
            log_probs, self._cache = self.model.forward_chunk(feats[None], self._cache, final=final)
        if log_probs.size(1) == 0:
            return False
        best = best_path(log_probs[0])
        self._ids.append(best.ids)
        self._probs.append(best.probs)
        return True

    def _hypothesis(self) -> Hypothesis:
        ids = torch.cat(self._ids) if self._ids else torch.zeros(0, dtype=torch.long)
        probs = torch.cat(self._probs) if self._probs else torch.zeros(0)
        return hypothesis_from_best(
            FrameBest(ids=ids, probs=probs),
            self.model.tokenizer,
            frame_shift_s=self.model.frame_shift_s,
        )

    def accept(self, pcm: np.ndarray) -> Hypothesis | None:
        """Feed ``(n,)`` int16 or float32 samples; returns the hypothesis if it changed."""
        pcm = np.asarray(pcm)
        if pcm.ndim != 1:
            raise ValueError(f"expected mono samples of shape (n,), got {pcm.shape}")
        self._samples += len(pcm)
        feats = self._fbank.accept(pcm)
        if feats.size(0) == 0 or not self._step(feats, final=False):
            return None
        hyp = self._hypothesis()
        if hyp.text == self._last_text:
            return None
        self._last_text = hyp.text
        return hyp

    def finish(self) -> Hypothesis:
        """End the utterance: flush the last partial chunk, return the final, reset."""
        self._step(torch.zeros(0, N_MELS), final=True)
        hyp = self._hypothesis()
        self.reset()
        return hyp


def transcribe_blocks(recognizer: StreamingRecognizer, blocks: Iterable[np.ndarray]) -> tuple[Hypothesis, float]:
    """Run a whole stream through ``recognizer``; returns the final hypothesis and seconds of audio."""
    recognizer.reset()
    for block in blocks:
        recognizer.accept(block)
    seconds = recognizer.audio_seconds
    return recognizer.finish(), seconds
