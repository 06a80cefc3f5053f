"""Greedy CTC decoding into text plus words with start/end times and confidences.

numpy only: log-probs come from either backend (torch tensors on the CPU convert without a copy), and
the torch-free runtime decodes with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from ambient.model.tokenizer import Tokenizer

__all__ = [
    "FrameBest",
    "GreedyCollapser",
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

    ids: np.ndarray
    probs: np.ndarray


def best_path(log_probs: ArrayLike) -> FrameBest:
    """Argmax per frame of ``log_probs (T, V)``."""
    lp = np.asarray(log_probs, dtype=np.float32)
    ids = lp.argmax(axis=-1)
    return FrameBest(ids=ids, probs=np.exp(np.take_along_axis(lp, ids[..., None], axis=-1)[..., 0]))


class GreedyCollapser:
    """Incremental greedy CTC: frames in, words out, in time linear in the frames pushed.

    Feed the best path in pieces with :meth:`push`; :meth:`hypothesis` gives the same result as
    collapsing all frames at once. Words closed by a word boundary are final; only the word being
    spelled changes. A word starts at the frame of its first unit and ends one frame after its last;
    its confidence is the mean posterior of its units. Word boundaries are units whose text starts
    with a space.
    """

    def __init__(self, tokenizer: Tokenizer, *, frame_shift_s: float, time_offset_s: float = 0.0) -> None:
        self.tokenizer = tokenizer
        self.frame_shift_s = frame_shift_s
        self.time_offset_s = time_offset_s
        self._words: list[WordTiming] = []
        self._conf_sum = 0.0
        self._cur: list[str] = []
        self._cur_p: list[float] = []
        self._start = self._end = 0
        self._prev = tokenizer.blank_id
        self._t = 0

    @property
    def frames(self) -> int:
        """Frames pushed so far."""
        return self._t

    def _word(self) -> WordTiming | None:
        text = "".join(self._cur).strip()
        if not text:
            return None
        return WordTiming(
            word=text,
            start=round(self.time_offset_s + self._start * self.frame_shift_s, 3),
            end=round(self.time_offset_s + (self._end + 1) * self.frame_shift_s, 3),
            confidence=round(sum(self._cur_p) / len(self._cur_p), 4),
        )

    def _flush(self) -> None:
        w = self._word()
        if w is not None:
            self._words.append(w)
            self._conf_sum += w.confidence
        self._cur.clear()
        self._cur_p.clear()

    def push(self, best: FrameBest) -> bool:
        """Consume the next frames; returns whether the text changed."""
        blank, tok = self.tokenizer.blank_id, self.tokenizer
        changed = False
        for i, p in zip(best.ids.tolist(), best.probs.tolist(), strict=True):
            t = self._t
            self._t += 1
            if i != blank and i != self._prev:
                piece = tok.id_to_piece(i)
                if piece.startswith(" "):
                    self._flush()
                    piece = piece[1:]
                if piece:
                    if not self._cur:
                        self._start = t
                    self._cur.append(piece)
                    self._cur_p.append(p)
                    self._end = t
                    changed = True
            elif i != blank and self._cur:
                self._end = t  # a repeated unit extends the word
            self._prev = i
        return changed

    def hypothesis(self) -> Hypothesis:
        """Text, words and confidence of everything pushed so far."""
        last = self._word()
        words = [*self._words, last] if last is not None else list(self._words)
        total = self._conf_sum + (last.confidence if last is not None else 0.0)
        conf = round(total / len(words), 4) if words else 1.0
        return Hypothesis(text=" ".join(w.word for w in words), words=words, confidence=conf)


def hypothesis_from_best(
    best: FrameBest, tokenizer: Tokenizer, *, frame_shift_s: float, time_offset_s: float = 0.0
) -> Hypothesis:
    """Collapse repeats, drop blanks, group units into words (see :class:`GreedyCollapser`)."""
    collapser = GreedyCollapser(tokenizer, frame_shift_s=frame_shift_s, time_offset_s=time_offset_s)
    collapser.push(best)
    return collapser.hypothesis()


def greedy_decode(
    log_probs: ArrayLike,
    tokenizer: Tokenizer,
    *,
    frame_shift_s: float,
    time_offset_s: float = 0.0,
) -> Hypothesis:
    """Greedy CTC decoding of ``log_probs (T, V)``."""
    return hypothesis_from_best(
        best_path(log_probs), tokenizer, frame_shift_s=frame_shift_s, time_offset_s=time_offset_s
    )
