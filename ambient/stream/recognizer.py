"""The streaming recognizer shared by the daemon, ``ambient transcribe`` and ``ambient eval``.

PCM -> an acoustic backend's stream (:class:`~ambient.stream.acoustic.AcousticModel`: log-mel front
end and encoder with explicit caches, run by onnxruntime or torch) -> incremental greedy CTC
(:class:`GreedyCollapser`) or, given a :class:`LexiconLm`, an incremental
lexicon + n-gram LM beam search (:class:`LmCollapser`). The result depends on the model, ``chunk_ms``
and ``left_chunks`` only, never on how the audio was split into ``accept`` calls.

Samples are held back until they complete the next encoder chunk, then features and encoder run
once for all of them: a chunk's output cannot change before it is complete, and one call per chunk
instead of one per 10 ms block saves most of the per-call overhead. Decoding is linear in the
frames, so an hour-long file costs an hour's worth of frames, not their square.

Two-pass finals (``final_pass="full"``): the chunked pass above still makes the partials, but the
final is a second pass over the whole utterance with full attention context, both directions (the
model is trained on both; see docs/model.md), decoded from scratch, with the LM's wider
``final_beam_size``. The daemon hides its cost in
the hangover: :meth:`StreamingRecognizer.speculate` runs it once the trailing silence begins, and
:meth:`StreamingRecognizer.finish` returns that result unless the caller dropped it because speech
resumed (:meth:`StreamingRecognizer.drop_speculation`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Literal

import numpy as np

from ambient.audio.fbank import SAMPLE_RATE, num_frames
from ambient.model.ctc import GreedyCollapser, Hypothesis, best_path
from ambient.model.lexicon_lm import LexiconLm, LmCollapser
from ambient.runtime.heap import release_memory
from ambient.stream.acoustic import AcousticModel, AcousticStream

if TYPE_CHECKING:
    from ambient.model.asr import AsrModel

__all__ = [
    "DEFAULT_LEFT_CONTEXT_S",
    "FINAL_PASSES",
    "FULL_PASS_MAX_S",
    "FinalPass",
    "StreamingRecognizer",
    "transcribe_blocks",
]

#: Attention left context used when the model metadata does not say otherwise.
DEFAULT_LEFT_CONTEXT_S = 10.24

#: How finals are made: ``streaming`` = the chunked pass's own result; ``full`` = a second pass over
#: the whole utterance with full attention context.
FinalPass = Literal["streaming", "full"]
FINAL_PASSES: tuple[FinalPass, ...] = ("streaming", "full")

#: Longest utterance the full pass takes (its attention is quadratic in the length, and training
#: utterances are at most 16 s); longer ones (a long file through ``ambient transcribe``) keep the
#: chunked pass's final. The daemon's utterances end at ``vad.max_utterance_s`` (20 s by default).
FULL_PASS_MAX_S = 30.0


class StreamingRecognizer:
    """Incremental recognition of one utterance at a time (caches reset by :meth:`finish`).

    ``model`` is an :class:`AcousticModel` (``ambient.stream.factory.load_acoustic_model``); a torch
    :class:`~ambient.model.asr.AsrModel` is taken as it is and run by the torch backend.
    """

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        model: AcousticModel | AsrModel,
        *,
        chunk_ms: int = 640,
        left_chunks: int | None = None,
        lm: LexiconLm | None = None,
        final_pass: FinalPass = "streaming",
    ) -> None:
        if final_pass not in FINAL_PASSES:
            raise ValueError(f"final_pass must be one of {FINAL_PASSES}, not {final_pass!r}")
        if not isinstance(model, AcousticModel):
            from ambient.stream.torch_backend import TorchAcoustic

            model = TorchAcoustic(model)
        self.model: AcousticModel = model
        self.lm = lm
        #: The full pass's search: ``lm`` at its ``final_beam_size``.
        self.final_lm = None if lm is None else lm.for_final_pass()
        self.final_pass: FinalPass = final_pass
        #: Called with each chunk's ``log_probs (T, V)`` before decoding (tools record them with it);
        #: the chunked pass only, not the full pass of two-pass finals.
        self.log_probs_hook: Callable[[np.ndarray], None] | None = None
        self.chunk_frames = max(1, round(chunk_ms / 1000 / model.frame_shift_s))
        self.chunk_ms = round(self.chunk_frames * model.frame_shift_s * 1000)
        if left_chunks is None:
            left_s = float(model.meta.get("left_context_s", DEFAULT_LEFT_CONTEXT_S))
            left_chunks = max(1, math.ceil(left_s * 1000 / self.chunk_ms)) if left_s >= 0 else -1
        self.left_chunks = left_chunks
        self.reset()

    def fork(self, *, lm: LexiconLm | None = None) -> StreamingRecognizer:
        """A recognizer with this one's model and settings and its own state: one per concurrent stream
        (the model and the LM are read-only and shared). ``lm`` replaces the LM (a phrase-biased one)."""
        return StreamingRecognizer(
            self.model,
            chunk_ms=self.chunk_ms,
            left_chunks=self.left_chunks,
            lm=self.lm if lm is None else lm,
            final_pass=self.final_pass,
        )

    def use_lm(self, lm: LexiconLm) -> None:
        """Search with ``lm`` (same tokenizer; a phrase-biased variant) from the next utterance on."""
        self.lm, self.final_lm = lm, lm.for_final_pass()

    def reset(self) -> None:
        """Drop all state: the next sample starts a new utterance."""
        self._stream: AcousticStream = self.model.new_stream(
            chunk_frames=self.chunk_frames, left_chunks=self.left_chunks
        )
        shift = self.model.frame_shift_s
        self._collapser: GreedyCollapser | LmCollapser = (
            GreedyCollapser(self.model.tokenizer, frame_shift_s=shift)
            if self.lm is None
            else LmCollapser(self.lm, frame_shift_s=shift)
        )
        self._held: list[np.ndarray] = []
        self._samples = 0
        self._chunks_done = 0
        self._utterance: list[np.ndarray] = []  # all float32 samples, kept for a full final pass
        self._speculation: Hypothesis | None = None
        self._too_long = False  # past FULL_PASS_MAX_S: the chunked pass makes the final

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio fed in this utterance."""
        return self._samples / SAMPLE_RATE

    @property
    def frames_decoded(self) -> int:
        """Encoder frames decoded in this utterance."""
        return self._collapser.frames

    def _chunks_available(self, samples: int) -> int:
        """Encoder chunks completed by the first ``samples`` samples of the utterance."""
        return self.model.ready_frames(num_frames(samples)) // self.chunk_frames

    def _step(self, *, final: bool) -> bool:
        """Run the held samples through features, encoder and decoder; True if the text changed."""
        pcm = np.concatenate(self._held) if len(self._held) > 1 else (self._held[0] if self._held else None)
        self._held = []
        log_probs = self._stream.accept(pcm) if pcm is not None and len(pcm) else None
        if final:
            tail = self._stream.finish()
            log_probs = tail if log_probs is None or not len(log_probs) else np.concatenate([log_probs, tail])
        if log_probs is None or len(log_probs) == 0:
            return False
        if self.log_probs_hook is not None:
            self.log_probs_hook(log_probs)
        if isinstance(self._collapser, LmCollapser):
            return self._collapser.push(log_probs)
        return self._collapser.push(best_path(log_probs))

    def accept(self, pcm: np.ndarray) -> Hypothesis | None:
        """Feed ``(n,)`` int16 or float32 samples; returns the hypothesis if it changed."""
        pcm = np.asarray(pcm)
        if pcm.ndim != 1:
            raise ValueError(f"expected mono samples of shape (n,), got {pcm.shape}")
        if pcm.dtype not in (np.int16, np.float32):
            pcm = pcm.astype(np.float32)
        if not len(pcm):
            return None
        samples = pcm.astype(np.float32) / 32768.0 if pcm.dtype == np.int16 else pcm
        self._held.append(samples)
        self._samples += len(pcm)
        if self.final_pass == "full" and not self._too_long:
            self._utterance.append(samples)
            if self._samples > FULL_PASS_MAX_S * SAMPLE_RATE:
                self._too_long, self._utterance = True, []
        chunks = self._chunks_available(self._samples)
        if chunks <= self._chunks_done:
            return None
        self._chunks_done = chunks
        return self._collapser.hypothesis() if self._step(final=False) else None

    def full_context_log_probs(self, pcm: np.ndarray) -> np.ndarray:
        """``pcm (n,)`` float32 samples of a whole utterance -> ``log_probs (T', V)`` from one encoder
        pass with full attention context (no chunking): the second pass of two-pass finals."""
        return self.model.full_context_log_probs(pcm)

    def _full_pass(self) -> Hypothesis:
        """Recognize all audio of the utterance so far with :meth:`full_context_log_probs`."""
        pcm = np.concatenate(self._utterance) if self._utterance else np.zeros(0, np.float32)
        log_probs = self.full_context_log_probs(pcm)
        shift = self.model.frame_shift_s
        if self.final_lm is None:
            greedy = GreedyCollapser(self.model.tokenizer, frame_shift_s=shift)
            greedy.push(best_path(log_probs))
            return greedy.hypothesis()
        beam = LmCollapser(self.final_lm, frame_shift_s=shift)
        beam.push(log_probs)
        return beam.finish()

    def speculate(self) -> None:
        """With ``final_pass="full"``: run the full pass now, on the audio so far, and keep it as the
        final. The daemon calls this once the trailing silence begins, so the pass runs while the
        hangover elapses; it must call :meth:`drop_speculation` if speech resumes. No-op otherwise."""
        if self.final_pass == "full" and not self._too_long:
            self._speculation = self._full_pass()

    def drop_speculation(self) -> None:
        """Forget a :meth:`speculate` result (more speech came): :meth:`finish` will run the pass."""
        self._speculation = None

    @property
    def speculated(self) -> bool:
        """True while a :meth:`speculate` result stands."""
        return self._speculation is not None

    def finish(self) -> Hypothesis:
        """End the utterance and reset. Streaming finals: flush the last partial chunk and return the
        chunked pass's result. Full finals: the standing speculation, else the full pass now (audio
        after a speculation is the caller's silence and is not decoded); past ``FULL_PASS_MAX_S``
        without a speculation, the chunked pass's result."""
        if self._speculation is not None:
            hyp = self._speculation
        elif self.final_pass == "full" and not self._too_long:
            hyp = self._full_pass()
        else:
            self._step(final=True)
            c = self._collapser
            hyp = c.finish() if isinstance(c, LmCollapser) else c.hypothesis()
        self.reset()
        release_memory()  # the utterance's audio, the beams and the full pass's buffers are free now
        return hyp


def transcribe_blocks(recognizer: StreamingRecognizer, blocks: Iterable[np.ndarray]) -> tuple[Hypothesis, float]:
    """Run a whole stream through ``recognizer``; returns the final hypothesis and seconds of audio."""
    recognizer.reset()
    for block in blocks:
        recognizer.accept(block)
    seconds = recognizer.audio_seconds
    return recognizer.finish(), seconds
