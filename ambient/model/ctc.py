"""Greedy CTC decoding into text plus words with start/end times and confidences."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ambient.model.tokenizer import Tokenizer

__all__ = [
    "FrameBest",
    "Hypothesis",
    "WordTiming",
    "best_path",
    "greedy_decode",
    "hypothesis_from_best",
]


@dataclass(frozen=True)
class WordTiming:
    """One recognized word: times in seconds, confidence in [0, 1]."""

    word: str
    start: float
    end: float
    confidence: float


@dataclass(frozen=True)
class Hypothesis:
    """A transcript: text, words, and an utterance confidence in [0, 1] (1.0 when empty)."""

    text: str
    words: list[WordTiming] = field(default_factory=list)
    confidence: float = 1.0


@dataclass(frozen=True)
class FrameBest:
    """Per-frame best units and their posteriors: ``ids (T,)`` int64, ``probs (T,)`` float32."""

    ids: torch.Tensor
    probs: torch.Tensor


def best_path(log_probs: torch.Tensor) -> FrameBest:
    """Argmax per frame of ``log_probs (T, V)``."""
    lp, ids = log_probs.float().max(dim=-1)
    return FrameBest(ids=ids, probs=lp.exp())


def hypothesis_from_best(
    best: FrameBest, tokenizer: Tokenizer, *, frame_shift_s: float, time_offset_s: float = 0.0
) -> Hypothesis:
    """Collapse repeats, drop blanks, group units into words.

    A word starts at the frame of its first unit and ends one frame after its last; its confidence
    is the mean posterior of its units. Word boundaries are units whose text starts with a space.
    """
    ids, probs = best.ids.tolist(), best.probs.tolist()
    words: list[WordTiming] = []
    cur: list[str] = []
    cur_p: list[float] = []
    start = end = 0
    prev = tokenizer.blank_id

    def flush() -> None:
        text = "".join(cur).strip()
        if text:
            words.append(
                WordTiming(
                    word=text,
                    start=round(time_offset_s + start * frame_shift_s, 3),
                    end=round(time_offset_s + (end + 1) * frame_shift_s, 3),
                    confidence=round(sum(cur_p) / len(cur_p), 4),
                )
            )
        cur.clear()
        cur_p.clear()

    for t, (i, p) in enumerate(zip(ids, probs, strict=True)):
        if i != tokenizer.blank_id and i != prev:
            piece = tokenizer.id_to_piece(i)
            if piece.startswith(" "):
                flush()
                piece = piece[1:]
            if piece:
                if not cur:
                    start = t
                cur.append(piece)
                cur_p.append(p)
                end = t
        elif i != tokenizer.blank_id and cur:
            end = t  # a repeated unit extends the word
        prev = i
    flush()
    text = " ".join(w.word for w in words)
    conf = round(sum(w.confidence for w in words) / len(words), 4) if words else 1.0
    return Hypothesis(text=text, words=words, confidence=conf)


def greedy_decode(
    log_probs: torch.Tensor,
    tokenizer: Tokenizer,
    *,
    frame_shift_s: float,
    time_offset_s: float = 0.0,
) -> Hypothesis:
    """Greedy CTC decoding of ``log_probs (T, V)``."""
    return hypothesis_from_best(
        best_path(log_probs), tokenizer, frame_shift_s=frame_shift_s, time_offset_s=time_offset_s
    )
