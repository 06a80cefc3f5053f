"""Is one recognizer really better than another on these files? A paired bootstrap over utterances.

Two systems' word error rates on the same few hundred utterances differ partly by chance: which
sentences happened to be in the set. The paired bootstrap (Koehn 2004; Bisani & Ney 2004) draws
utterance sets of the same size with replacement, each system's errors on the *same* draw, and
looks at the spread of the WER difference. ``ci95`` is its 2.5-97.5 % interval in WER points;
``p_better`` the share of draws where the first system has fewer errors. A difference whose
interval excludes 0 is one that the choice of utterances does not explain.

Per-utterance counts come from jiwer over the same normalization as the WER (numbers spelled out,
lower case, no punctuation); utterances whose reference normalizes to nothing are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import jiwer
import numpy as np

from ambient.text.normalize import normalize_text

__all__ = ["PairedResult", "paired_bootstrap", "utterance_errors"]


def utterance_errors(refs: list[str], hyps: list[str]) -> np.ndarray:
    """Word errors and reference words of each utterance: ``(U, 2)`` int64, rows ``(errors, words)``,
    for the ``U`` utterances whose normalized reference is not empty (in order)."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    rows = []
    for ref, hyp in zip(refs, hyps, strict=True):
        r, h = normalize_text(ref), normalize_text(hyp)
        if not r:
            continue
        out = jiwer.process_words(r, h)
        rows.append((out.substitutions + out.deletions + out.insertions, len(r.split())))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 2)


@dataclass(frozen=True)
class PairedResult:
    """``delta_pts``: WER of ``b`` minus WER of ``a`` in points (positive: ``a`` is better)."""

    delta_pts: float
    ci95: tuple[float, float]
    p_better: float
    utterances: int
    resamples: int

    def as_dict(self) -> dict[str, object]:
        return {
            "delta_pts": round(self.delta_pts, 2),
            "ci95": [round(self.ci95[0], 2), round(self.ci95[1], 2)],
            "p_better": round(self.p_better, 4),
            "utterances": self.utterances,
            "resamples": self.resamples,
        }


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, resamples: int = 10_000, seed: int = 0) -> PairedResult:
    """Compare systems ``a`` and ``b`` from their :func:`utterance_errors` on the same utterances.

    ``a``, ``b``: ``(U, 2)`` with identical word counts (the same references). Deterministic for a
    given ``seed``.
    """
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"error tables must both be (U, 2) over the same utterances: {a.shape} vs {b.shape}")
    if not np.array_equal(a[:, 1], b[:, 1]):
        raise ValueError("the two systems were scored against different references")
    n = a.shape[0]
    if n == 0 or a[:, 1].sum() == 0:
        raise ValueError("no reference words to compare on")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))  # (R, U) utterance draws
    words = a[idx, 1].sum(axis=1)  # (R,)
    ea, eb = a[idx, 0].sum(axis=1), b[idx, 0].sum(axis=1)
    keep = words > 0
    delta = 100.0 * (eb[keep] - ea[keep]) / words[keep]
    lo, hi = np.percentile(delta, [2.5, 97.5])
    point = 100.0 * (b[:, 0].sum() - a[:, 0].sum()) / a[:, 1].sum()
    return PairedResult(
        delta_pts=float(point),
        ci95=(float(lo), float(hi)),
        p_better=float(np.mean(delta > 0)),
        utterances=n,
        resamples=int(keep.sum()),
    )
