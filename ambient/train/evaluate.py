"""Word error rate: batched during training, and through the daemon's streaming path for ``ambient eval``.

References and hypotheses both go through :func:`~ambient.text.normalize.normalize_text`, so the
figures of training and of ``ambient eval`` are comparable. Errors are counted with jiwer and kept
as additive counts (:class:`ErrorCounts`), so shards evaluated on different ranks or groups of
utterances (per source, per speaker) sum exactly.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jiwer
import torch

from ambient.audio.io import iter_audio_blocks
from ambient.errors import AudioError
from ambient.model.asr import AsrModel
from ambient.model.ctc import greedy_decode
from ambient.model.lexicon_lm import LexiconLm
from ambient.stream.recognizer import FinalPass, StreamingRecognizer, transcribe_blocks
from ambient.text.normalize import normalize_text
from ambient.train.dataset import Batch
from ambient.train.manifest import Utterance

__all__ = [
    "ErrorCounts",
    "EvalReport",
    "UtteranceResult",
    "decode_batch",
    "evaluate_batches",
    "evaluate_streaming",
]


@dataclass
class ErrorCounts:
    """Word errors against ``ref_words`` reference words over ``utterances`` utterances."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    ref_words: int = 0
    utterances: int = 0

    @classmethod
    def of(cls, refs: Sequence[str], hyps: Sequence[str]) -> ErrorCounts:
        """Count the errors of normalized hypotheses against normalized references."""
        if len(refs) != len(hyps):
            raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
        if not refs:
            return cls()
        out = jiwer.process_words(list(refs), list(hyps))
        return cls(
            substitutions=out.substitutions,
            deletions=out.deletions,
            insertions=out.insertions,
            ref_words=out.substitutions + out.deletions + out.hits,
            utterances=len(refs),
        )

    @property
    def errors(self) -> int:
        """Substitutions + deletions + insertions."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """Errors per reference word (0.0 for no reference words and no errors)."""
        if self.ref_words == 0:
            return 0.0 if self.errors == 0 else 1.0
        return self.errors / self.ref_words

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            substitutions=self.substitutions + other.substitutions,
            deletions=self.deletions + other.deletions,
            insertions=self.insertions + other.insertions,
            ref_words=self.ref_words + other.ref_words,
            utterances=self.utterances + other.utterances,
        )

    def as_list(self) -> list[int]:
        """The counts in field order (for summing across ranks)."""
        return [self.substitutions, self.deletions, self.insertions, self.ref_words, self.utterances]

    @classmethod
    def from_list(cls, values: Sequence[int]) -> ErrorCounts:
        """Inverse of :meth:`as_list`."""
        s, d, i, n, u = (int(v) for v in values)
        return cls(substitutions=s, deletions=d, insertions=i, ref_words=n, utterances=u)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "wer": round(self.wer, 6),
            "errors": self.errors,
            "substitutions": self.substitutions,
            "deletions": self.deletions,
            "insertions": self.insertions,
            "ref_words": self.ref_words,
            "utterances": self.utterances,
        }


def decode_batch(model: AsrModel, batch: Batch, *, chunk_frames: int, left_chunks: int) -> list[str]:
    """Greedy CTC transcripts of a batch under a chunk mask (``chunk_frames <= 0``: full context).

    ``batch.feats (B, T, 80)`` must be on the model's device. Runs without gradients; the caller
    sets eval mode.
    """
    if batch.size == 0:
        return []
    with torch.inference_mode():
        log_probs, out_lengths = model(
            batch.feats, batch.feat_lengths, chunk_frames=chunk_frames, left_chunks=left_chunks
        )  # (B, T', V), (B,)
    return [
        greedy_decode(
            log_probs[i, : int(out_lengths[i])].cpu(), model.tokenizer, frame_shift_s=model.frame_shift_s
        ).text
        for i in range(batch.size)
    ]


def evaluate_batches(
    model: AsrModel,
    batches: Iterable[Batch],
    references: Sequence[str],
    *,
    settings: dict[str, tuple[int, int]],
) -> dict[str, ErrorCounts]:
    """Error counts of the model on preloaded batches, for each named ``(chunk_frames, left_chunks)``.

    ``references[i]`` is the normalized transcript of utterance ``i`` (``Batch.utts`` indexes it).
    """
    counts = {name: ErrorCounts() for name in settings}
    for batch in batches:
        refs = [references[u] for u in batch.utts]
        for name, (chunk_frames, left_chunks) in settings.items():
            hyps = decode_batch(model, batch, chunk_frames=chunk_frames, left_chunks=left_chunks)
            counts[name] = counts[name] + ErrorCounts.of(refs, [normalize_text(h) for h in hyps])
    return counts


@dataclass(frozen=True)
class UtteranceResult:
    """One decoded utterance of ``ambient eval``."""

    audio: str
    source: str
    speaker: str
    reference: str
    hypothesis: str
    seconds: float


@dataclass
class EvalReport:
    """The outcome of :func:`evaluate_streaming`."""

    overall: ErrorCounts
    by_source: dict[str, ErrorCounts]
    by_speaker: dict[str, ErrorCounts]
    chunk_ms: int
    left_chunks: int
    audio_seconds: float
    decode_seconds: float
    final_pass: str = "streaming"
    skipped: list[str] = field(default_factory=list)
    results: list[UtteranceResult] = field(default_factory=list)

    @property
    def rtf(self) -> float:
        """Decoding wall time per second of audio (features, encoder and decoding, one thread)."""
        return self.decode_seconds / self.audio_seconds if self.audio_seconds else 0.0

    def to_dict(self, *, per_speaker: bool = False, per_utterance: bool = False) -> dict[str, Any]:
        """Plain data for ``--json``."""
        out: dict[str, Any] = {
            **self.overall.to_dict(),
            "chunk_ms": self.chunk_ms,
            "left_chunks": self.left_chunks,
            "final_pass": self.final_pass,
            "audio_seconds": round(self.audio_seconds, 3),
            "rtf": round(self.rtf, 5),
            "skipped": self.skipped,
            "by_source": {k: v.to_dict() for k, v in sorted(self.by_source.items())},
        }
        if per_speaker:
            out["by_speaker"] = {k: v.to_dict() for k, v in sorted(self.by_speaker.items())}
        if per_utterance:
            out["utterances_detail"] = [dataclasses.asdict(r) for r in self.results]
        return out


def evaluate_streaming(
    model: AsrModel,
    utterances: Sequence[Utterance],
    *,
    chunk_ms: int,
    left_chunks: int | None = None,
    block_samples: int = 16000,
    on_result: Callable[[UtteranceResult], None] | None = None,
    lm: LexiconLm | None = None,
    final_pass: FinalPass = "streaming",
) -> EvalReport:
    """WER of ``model`` decoding each utterance through :class:`StreamingRecognizer` (the daemon's path).

    Each file is streamed in ``block_samples`` blocks (the result does not depend on the block size)
    and finished as one utterance, decoded greedily or with ``lm``; its final comes from the chunked
    pass or, with ``final_pass="full"``, from a full-context second pass. Unreadable files are listed in
    ``skipped``, not counted.
    """
    rec = StreamingRecognizer(model, chunk_ms=chunk_ms, left_chunks=left_chunks, lm=lm, final_pass=final_pass)
    overall = ErrorCounts()
    by_source: dict[str, ErrorCounts] = {}
    by_speaker: dict[str, ErrorCounts] = {}
    skipped: list[str] = []
    results: list[UtteranceResult] = []
    audio_s = decode_s = 0.0
    for utt in utterances:
        t0 = time.perf_counter()
        try:
            hyp, seconds = transcribe_blocks(rec, iter_audio_blocks(utt.audio, block_samples=block_samples))
        except AudioError as e:
            skipped.append(str(e))
            rec.reset()
            continue
        decode_s += time.perf_counter() - t0
        audio_s += seconds
        ref, text = normalize_text(utt.text), normalize_text(hyp.text)
        c = ErrorCounts.of([ref], [text])
        overall = overall + c
        by_source[utt.source] = by_source.get(utt.source, ErrorCounts()) + c
        by_speaker[utt.speaker] = by_speaker.get(utt.speaker, ErrorCounts()) + c
        result = UtteranceResult(
            audio=str(utt.audio),
            source=utt.source,
            speaker=utt.speaker,
            reference=ref,
            hypothesis=text,
            seconds=seconds,
        )
        results.append(result)
        if on_result is not None:
            on_result(result)
    return EvalReport(
        overall=overall,
        by_source=by_source,
        by_speaker=by_speaker,
        chunk_ms=rec.chunk_ms,
        left_chunks=rec.left_chunks,
        audio_seconds=audio_s,
        decode_seconds=decode_s,
        final_pass=final_pass,
        skipped=skipped,
        results=results,
    )
