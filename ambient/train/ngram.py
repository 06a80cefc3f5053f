"""Word n-gram language model for lexicon decoding: interpolated modified Kneser-Ney, ARPA, lexicon.

What :func:`build_language_model` does, in order:

1. Reads ``text_dir/*.txt`` (one sentence per line) and normalizes every line with the transcript
   normalizer (:func:`ambient.text.normalize_text`), so LM words are spelled the way the CTC model
   spells them.
2. Drops held-out material (:class:`DevExclusion`): every sentence whose normalized text equals a
   transcript of the exclusion manifests, and every sentence sharing a word 6-gram with one.
3. Estimates the model (:func:`estimate`): the ``vocab_size`` most frequent words (ties broken
   alphabetically) plus ``<unk>`` (every other word), ``<s>`` and ``</s>``; interpolated modified
   Kneser-Ney (Chen & Goodman 1998) with discounts D1, D2, D3+ per order from counts-of-counts of
   the (adjusted) counts, as KenLM's ``lmplz`` does. Lower orders use continuation counts, except
   n-grams that start with ``<s>``, which keep their raw counts; unigrams interpolate with the
   uniform distribution over the vocabulary, ``<unk>`` and ``</s>``.
4. Count cutoffs: an n-gram of order n >= 2 seen fewer than ``min_counts[n-1]`` times is dropped
   unless it is a prefix or suffix of a kept longer n-gram (KenLM and decoders look up n-grams
   through their prefixes and suffixes). A dropped n-gram's whole count goes to its context's
   interpolation weight, so the pruned model is still normalized: for every context the
   probabilities of all words, ``<unk>`` and ``</s>`` sum to one.
5. Writes an ARPA file (log10 probabilities and backoff weights; ``.gz`` is gzip, which
   flashlight-text's bundled KenLM reads), a lexicon (``word<TAB>w o r d``, words of ``a``-``z`` and
   apostrophes only) and returns statistics, including the dev perplexity cross-checked against
   KenLM loading the written file.

For an interpolated model the ARPA form is exact, not an approximation: the probability of a stored
n-gram is the interpolated one, and the backoff weight of a context is its interpolation weight.

N-grams are packed into one int64 key per n-gram (``bits`` bits per word, first word highest), so
counting is a sort (:func:`numpy.unique`) and every context's n-grams are contiguous in key order.
That limits ``order * bits`` to 62 (order 4 with up to 32,765 words, order 3 with up to 2 million).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import tempfile
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import numpy.typing as npt

from ambient.errors import AmbientError
from ambient.text.normalize import normalize_text
from ambient.train.ngram_defaults import MIN_COUNTS, ORDER, VOCAB_SIZE

__all__ = [
    "BOS",
    "EOS",
    "OVERLAP_N",
    "UNK",
    "CorpusReport",
    "DevExclusion",
    "Discounts",
    "LanguageModelError",
    "NgramModel",
    "NgramOptions",
    "ScoreReport",
    "build_language_model",
    "estimate",
    "kenlm_sentence_log10",
    "read_corpus",
]

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
_UNK_ID, _BOS_ID, _EOS_ID = 0, 1, 2
_SPECIALS = (UNK, BOS, EOS)

#: Word n-gram length whose overlap with a held-out transcript drops a sentence.
OVERLAP_N = 6

#: ARPA's conventional log10 probability for ``<s>``, which is never predicted.
_LOG10_ZERO = -99.0
#: Discounts used where counts-of-counts give no valid estimate (as ``lmplz --discount_fallback``).
_FALLBACK = (0.5, 1.0, 1.5)
_LEXICON_WORD = re.compile(r"[a-z']+")
_KEY_BITS = 62
_KENLM_CHECK_SENTENCES = 20

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


class LanguageModelError(AmbientError):
    """Input a language model cannot be built from: no text folder, no sentences."""


# --- options and discounts --------------------------------------------------------------------


@dataclass(frozen=True)
class NgramOptions:
    """How to estimate the model.

    Attributes:
        order: n-gram order (1 or more).
        vocab_size: number of most frequent words kept; the rest become ``<unk>``.
        min_counts: minimum raw count per order, starting with unigrams (which are never pruned, so
            the first value must be 1); orders beyond the tuple use its last value.
    """

    order: int = ORDER
    vocab_size: int = VOCAB_SIZE
    min_counts: tuple[int, ...] = MIN_COUNTS

    def __post_init__(self) -> None:
        if self.order < 1:
            raise ValueError(f"order must be 1 or more, not {self.order}")
        if self.vocab_size < 1:
            raise ValueError(f"vocabulary size must be 1 or more, not {self.vocab_size}")
        if not self.min_counts or any(c < 1 for c in self.min_counts):
            raise ValueError(f"min counts must be 1 or more, not {self.min_counts}")
        if self.min_counts[0] != 1:
            raise ValueError("unigrams are not pruned (the vocabulary size limits them): the first min count must be 1")
        bits = _bits(self.vocab_size + len(_SPECIALS))
        if self.order * bits > _KEY_BITS:
            raise ValueError(
                f"order {self.order} with {self.vocab_size} words needs {self.order * bits} bits per n-gram "
                f"(at most {_KEY_BITS}): lower the order or the vocabulary"
            )

    def min_count(self, n: int) -> int:
        """Minimum raw count of a kept n-gram of order ``n``."""
        return self.min_counts[min(n, len(self.min_counts)) - 1]


@dataclass(frozen=True)
class Discounts:
    """Modified Kneser-Ney discounts of one order: D1, D2 and D3+ (``fallback``: not estimated)."""

    d1: float
    d2: float
    d3: float
    fallback: bool = False

    @classmethod
    def estimate(cls, counts: I64) -> Discounts:
        """Chen & Goodman's estimates from the counts-of-counts of ``counts`` (zeros ignored)."""
        t = np.bincount(np.minimum(counts, 5), minlength=6)[1:5].astype(np.float64)
        if np.all(t > 0):
            y = t[0] / (t[0] + 2 * t[1])
            d = (1 - 2 * y * t[1] / t[0], 2 - 3 * y * t[2] / t[1], 3 - 4 * y * t[3] / t[2])
            if all(0 < dk < k for k, dk in enumerate(d, 1)):
                return cls(*d)
        return cls(*_FALLBACK, fallback=True)

    def of(self, counts: I64) -> F64:
        """The discount of each count (0 for a zero count)."""
        table = np.array([0.0, self.d1, self.d2, self.d3])
        return table[np.minimum(counts, 3)]


def _bits(n_tokens: int) -> int:
    return max(1, (n_tokens - 1).bit_length())


# --- the model ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreReport:
    """Log10 probability of some sentences (``</s>`` included) and what it means per token.

    ``perplexity`` counts every word and ``</s>``, out-of-vocabulary words scored as ``<unk>``;
    ``perplexity_known`` leaves the out-of-vocabulary words out (as SRILM's ``ppl``), which is the
    figure to compare between vocabularies of different sizes together with the OOV rate.
    """

    sentences: int
    words: int
    oov: int
    log10_prob: float
    oov_log10_prob: float = 0.0

    @property
    def oov_rate(self) -> float:
        """Share of words (``</s>`` not counted) outside the vocabulary."""
        return self.oov / self.words if self.words else 0.0

    @property
    def perplexity(self) -> float:
        """``10 ** (-log10_prob / (words + sentences))``."""
        tokens = self.words + self.sentences
        return 10 ** (-self.log10_prob / tokens) if tokens else float("nan")

    @property
    def perplexity_known(self) -> float:
        """Perplexity over the in-vocabulary words and ``</s>``."""
        tokens = self.words - self.oov + self.sentences
        return 10 ** (-(self.log10_prob - self.oov_log10_prob) / tokens) if tokens else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict."""
        return {
            "sentences": self.sentences,
            "words": self.words,
            "oov": self.oov,
            "oov_rate": round(self.oov_rate, 5),
            "log10_prob": round(self.log10_prob, 4),
            "perplexity": round(self.perplexity, 3),
            "perplexity_known": round(self.perplexity_known, 3),
        }


@dataclass(frozen=True)
class _Order:
    """The kept n-grams of one order: sorted keys, log10 probabilities, log10 backoff weights."""

    keys: I64
    logp: F64
    logbow: F64


@dataclass
class NgramModel:
    """A backoff n-gram model over ``vocab`` (``<unk>``, ``<s>``, ``</s>``, then words by frequency).

    Build one with :func:`estimate`. Probabilities are log10, as in ARPA files.
    """

    vocab: tuple[str, ...]
    orders: tuple[_Order, ...]
    discounts: tuple[Discounts, ...]
    seen: tuple[int, ...]
    tokens: int
    sentences: int
    word_types: int
    _index: dict[str, int] = field(init=False, repr=False)
    _bits: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {w: i for i, w in enumerate(self.vocab)}
        self._bits = _bits(len(self.vocab))

    @property
    def order(self) -> int:
        """The n-gram order."""
        return len(self.orders)

    @property
    def words(self) -> tuple[str, ...]:
        """The vocabulary without ``<unk>``, ``<s>`` and ``</s>``, most frequent first."""
        return self.vocab[len(_SPECIALS) :]

    @property
    def ngram_counts(self) -> tuple[int, ...]:
        """Number of stored n-grams per order (unigrams include ``<unk>``, ``<s>``, ``</s>``)."""
        return tuple(len(o.keys) for o in self.orders)

    def _id(self, word: str) -> int:
        return self._index.get(word, _UNK_ID)

    def _word_id(self, word: str) -> int:
        """The id of a word of text: unknown words and literal ``<s>``/``</s>`` are ``<unk>``."""
        i = self._index.get(word, _UNK_ID)
        return i if i >= len(_SPECIALS) else _UNK_ID

    def _find(self, n: int, ids: Sequence[int]) -> int:
        """Row of the n-gram ``ids`` in order ``n`` (1-based), or -1."""
        key = 0
        for i in ids:
            key = (key << self._bits) | i
        keys = self.orders[n - 1].keys
        row = int(np.searchsorted(keys, key))
        return row if row < len(keys) and keys[row] == key else -1

    def _log10(self, context: Sequence[int], word: int) -> float:
        """ARPA backoff: the longest stored n-gram ending in ``word``, plus the skipped contexts' weights."""
        context = context[max(0, len(context) - self.order + 1) :]
        backoff = 0.0
        for start in range(len(context) + 1):
            h = context[start:]
            row = self._find(len(h) + 1, [*h, word])
            if row >= 0:
                return backoff + float(self.orders[len(h)].logp[row])
            hrow = self._find(len(h), h) if h else -1
            if hrow >= 0:
                backoff += float(self.orders[len(h) - 1].logbow[hrow])
        raise AssertionError("every token has a unigram")

    def log10_prob(self, word: str, context: Sequence[str] = ()) -> float:
        """log10 P(word | context); unknown words are ``<unk>``; ``context`` may start with ``<s>``."""
        return self._log10([self._id(w) for w in context], self._id(word))

    def token_log10(self, words: Sequence[str]) -> list[float]:
        """log10 probability of each word of ``<s> words </s>`` and of ``</s>``, given what precedes it."""
        ids = [_BOS_ID, *(self._word_id(w) for w in words), _EOS_ID]
        return [self._log10(ids[:i], ids[i]) for i in range(1, len(ids))]

    def sentence_log10(self, words: Sequence[str]) -> float:
        """log10 probability of ``<s> words </s>``."""
        return sum(self.token_log10(words))

    def score(self, sentences: Iterable[str]) -> ScoreReport:
        """Total log10 probability, word and OOV counts of normalized ``sentences``."""
        n = words = oov = 0
        total = oov_total = 0.0
        for s in sentences:
            ws = s.split()
            terms = self.token_log10(ws)
            unknown = [self._word_id(w) == _UNK_ID for w in ws]
            n += 1
            words += len(ws)
            oov += sum(unknown)
            total += sum(terms)
            oov_total += sum(t for t, u in zip(terms, unknown, strict=False) if u)
        return ScoreReport(sentences=n, words=words, oov=oov, log10_prob=total, oov_log10_prob=oov_total)

    def ngrams(self, n: int) -> Iterator[tuple[tuple[str, ...], float, float]]:
        """``(words, log10 prob, log10 backoff)`` of every stored n-gram of order ``n``, in key order."""
        o = self.orders[n - 1]
        mask = (1 << self._bits) - 1
        cols = [((o.keys >> (self._bits * (n - 1 - j))) & mask).tolist() for j in range(n)]
        v = self.vocab
        for ids, lp, lb in zip(zip(*cols, strict=True), o.logp.tolist(), o.logbow.tolist(), strict=True):
            yield tuple(v[i] for i in ids), lp, lb

    def write_arpa(self, path: str | Path) -> None:
        """Write the model as an ARPA file (gzip when ``path`` ends in ``.gz``), atomically."""
        with _AtomicText(Path(path)) as f:
            f.write("\n\\data\\\n")
            for n, count in enumerate(self.ngram_counts, 1):
                f.write(f"ngram {n}={count}\n")
            for n in range(1, self.order + 1):
                f.write(f"\n\\{n}-grams:\n")
                lines = []
                for words, lp, lb in self.ngrams(n):
                    text = " ".join(words)
                    lines.append(f"{lp:.6f}\t{text}\t{lb:.6f}\n" if lb != 0.0 else f"{lp:.6f}\t{text}\n")
                    if len(lines) >= 65536:
                        f.write("".join(lines))
                        lines.clear()
                f.write("".join(lines))
            f.write("\n\\end\\\n")

    def write_lexicon(self, path: str | Path) -> int:
        """Write ``word<TAB>w o r d`` for every word of ``a``-``z`` and ``'`` (sorted); returns the count."""
        words = sorted(w for w in self.words if _LEXICON_WORD.fullmatch(w))
        with _AtomicText(Path(path)) as f:
            f.write("".join(f"{w}\t{' '.join(w)}\n" for w in words))
        return len(words)


class _AtomicText:
    """A text file written through a temporary file and a rename; gzip when the name ends in ``.gz``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = ""
        self.raw: IO[bytes] | None = None
        self.file: IO[str] | None = None

    def __enter__(self) -> IO[str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self.raw = os.fdopen(fd, "wb")
        if self.path.suffix == ".gz":
            # No name and mtime 0 in the header: the same model gives the same bytes.
            gz = gzip.GzipFile(filename="", mode="wb", fileobj=self.raw, compresslevel=6, mtime=0)
            self.file = io.TextIOWrapper(gz, encoding="utf-8", newline="\n")
        else:
            self.file = io.TextIOWrapper(self.raw, encoding="utf-8", newline="\n")
        return self.file

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self.file is not None and self.raw is not None
        try:
            self.file.close()  # closes the gzip stream; the file object under it stays open
            if not self.raw.closed:
                self.raw.close()
            if exc_type is None:
                os.chmod(self.tmp, 0o644)
                os.replace(self.tmp, self.path)
        finally:
            Path(self.tmp).unlink(missing_ok=True)


# --- estimation --------------------------------------------------------------------------------


def _read_tokens(sentences: Iterable[str]) -> tuple[array[int], list[str], int]:
    """Flat provisional ids (``<s> w… </s>`` per sentence), the words by provisional id, the sentence count.

    Provisional ids 1 and 2 are ``<s>`` and ``</s>``; words start at 3 in order of appearance.
    Literal ``<unk>``/``<s>``/``</s>`` in the text count as unknown words.
    """
    index: dict[str, int] = dict.fromkeys(_SPECIALS, _UNK_ID)
    flat: array[int] = array("i")
    n = 0
    for s in sentences:
        words = s.split()
        if not words:
            continue
        n += 1
        flat.append(_BOS_ID)
        flat.extend([index.setdefault(w, len(index)) for w in words])
        flat.append(_EOS_ID)
    names = [""] * len(index)
    for w, i in index.items():
        if i >= len(_SPECIALS):
            names[i] = w
    return flat, names, n


def _choose_vocab(flat: array[int], names: list[str], size: int) -> tuple[tuple[str, ...], npt.NDArray[np.int64]]:
    """The vocabulary and the map from provisional to final ids (unknown words to ``<unk>``)."""
    counts = np.bincount(np.frombuffer(flat, dtype=np.int32), minlength=len(names))
    candidates = [i for i in range(len(_SPECIALS), len(names))]
    candidates.sort(key=lambda i: (-int(counts[i]), names[i]))
    chosen = candidates[:size]
    remap = np.full(len(names), _UNK_ID, dtype=np.int64)
    remap[_BOS_ID], remap[_EOS_ID] = _BOS_ID, _EOS_ID
    remap[np.array(chosen, dtype=np.int64)] = np.arange(len(_SPECIALS), len(_SPECIALS) + len(chosen))
    return (*_SPECIALS, *(names[i] for i in chosen)), remap


def _count(tokens: I64, n: int, bits: int) -> tuple[I64, I64]:
    """Sorted unique keys and raw counts of the n-grams (n >= 2) inside sentences."""
    length = len(tokens) - n + 1
    valid = np.ones(length, dtype=bool)
    for j in range(n - 1):  # only the last word of an n-gram may be </s>; <s> then can only be first
        valid &= tokens[j : j + length] != _EOS_ID
    start = np.flatnonzero(valid)
    key = np.zeros(len(start), dtype=np.int64)
    for j in range(n):
        key = (key << bits) | tokens[start + j]
    keys, counts = np.unique(key, return_counts=True)
    return keys, counts.astype(np.int64)


def _lookup(keys: I64, wanted: I64) -> I64:
    """Rows of ``wanted`` in sorted ``keys``; every one must be there."""
    rows = np.searchsorted(keys, wanted)
    if len(wanted) and (rows.max() >= len(keys) or np.any(keys[rows] != wanted)):
        raise AssertionError("an n-gram's prefix or suffix is missing")
    return rows


def estimate(sentences: Iterable[str], options: NgramOptions | None = None) -> NgramModel:
    """Estimate an interpolated modified Kneser-Ney model from normalized sentences (module docstring).

    Raises:
        ValueError: no non-empty sentence.
    """
    opts = options or NgramOptions()
    flat, names, n_sentences = _read_tokens(sentences)
    if n_sentences == 0:
        raise ValueError("no sentences to estimate a language model from")
    vocab, remap = _choose_vocab(flat, names, opts.vocab_size)
    tokens = remap[np.frombuffer(flat, dtype=np.int32)]  # (T,) int64
    del flat
    v, bits, order = len(vocab), _bits(len(vocab)), opts.order

    # Raw counts per order (index n-1); unigrams are dense over the vocabulary.
    raw: list[I64] = [np.bincount(tokens, minlength=v).astype(np.int64)]
    raw[0][_BOS_ID] = 0
    keys: list[I64] = [np.arange(v, dtype=np.int64)]
    for n in range(2, order + 1):
        k, c = _count(tokens, n, bits)
        keys.append(k)
        raw.append(c)
    n_tokens = int(len(tokens) - n_sentences)  # words and </s>
    del tokens

    adjusted = _adjusted_counts(keys, raw, bits)
    discounts = tuple(Discounts.estimate(a) for a in adjusted)
    keep = _keep_masks(keys, raw, bits, opts)

    orders: list[_Order] = []
    # Unigrams: discounted counts interpolated with the uniform distribution over all but <s>.
    a1 = adjusted[0]
    d1 = discounts[0].of(a1)
    total = float(a1.sum())
    p1 = (a1 - d1) / total + float(d1.sum()) / total / (v - 1)
    p1[_BOS_ID] = 0.0
    logp1 = np.full(v, _LOG10_ZERO)
    logp1[p1 > 0] = np.log10(p1[p1 > 0])
    orders.append(_Order(keys=keys[0], logp=logp1, logbow=np.zeros(v)))
    lower_p = p1
    for n in range(2, order + 1):
        share, weight, gamma_keys, gamma = _interpolate(
            keys[n - 1], adjusted[n - 1], keep[n - 1], discounts[n - 1], bits
        )
        kept = keys[n - 1][keep[n - 1]]
        lower = orders[-1]
        suffix = kept & ((1 << (bits * (n - 1))) - 1)
        p = share + weight * lower_p[_lookup(lower.keys, suffix)]
        # A context whose extensions were all pruned has weight 1 (log 0): it need not be stored.
        has_kept = np.isin(gamma_keys, kept >> bits)
        lower.logbow[_lookup(lower.keys, gamma_keys[has_kept])] = np.log10(gamma[has_kept])
        orders.append(_Order(keys=kept, logp=np.log10(p), logbow=np.zeros(len(kept))))
        lower_p = p

    return NgramModel(
        vocab=vocab,
        orders=tuple(orders),
        discounts=discounts,
        seen=tuple([int(np.count_nonzero(raw[0])), *(len(k) for k in keys[1:])]),
        tokens=n_tokens,
        sentences=n_sentences,
        word_types=len(names) - len(_SPECIALS),
    )


def _adjusted_counts(keys: list[I64], raw: list[I64], bits: int) -> list[I64]:
    """Kneser-Ney counts: raw for the top order and for n-grams starting with ``<s>``; else the
    number of distinct words seen before the n-gram."""
    order = len(keys)
    out = [raw[-1]]
    for n in range(order - 1, 0, -1):
        suffix = keys[n] & ((1 << (bits * n)) - 1)  # last n words of each (n+1)-gram
        if n == 1:
            a = np.bincount(suffix, minlength=len(keys[0])).astype(np.int64)
            a[_BOS_ID] = 0
        else:
            uniq, left = np.unique(suffix, return_counts=True)
            starts_bos = (keys[n - 1] >> (bits * (n - 1))) == _BOS_ID
            a = raw[n - 1].copy()
            a[~starts_bos] = left[_lookup(uniq, keys[n - 1][~starts_bos])]
        out.append(a)
    return out[::-1]


def _keep_masks(keys: list[I64], raw: list[I64], bits: int, opts: NgramOptions) -> list[npt.NDArray[np.bool_]]:
    """Which n-grams survive the cutoffs, closed under prefixes and suffixes of kept longer ones."""
    order = len(keys)
    keep: list[npt.NDArray[np.bool_]] = [np.ones(len(k), dtype=bool) for k in keys]
    for n in range(order, 1, -1):
        keep[n - 1] = raw[n - 1] >= opts.min_count(n)
        if n < order:
            longer = keys[n][keep[n]]
            needed = np.union1d(longer >> bits, longer & ((1 << (bits * n)) - 1))
            keep[n - 1] |= np.isin(keys[n - 1], needed, assume_unique=True)
    return keep


def _interpolate(
    keys: I64, a: I64, keep: npt.NDArray[np.bool_], disc: Discounts, bits: int
) -> tuple[F64, F64, I64, F64]:
    """For one order >= 2: per kept n-gram, the discounted share and the context's interpolation
    weight (``p = share + weight * p_lower``); and every context's key and weight.

    The weight is the discount mass of the kept n-grams plus the whole count of the pruned ones.
    """
    ctx = keys >> bits  # sorted, so each context's n-grams are contiguous
    first = np.flatnonzero(np.r_[True, ctx[1:] != ctx[:-1]])
    group = np.cumsum(np.r_[False, ctx[1:] != ctx[:-1]])
    d = disc.of(a)
    denom = np.add.reduceat(a, first).astype(np.float64)
    gamma = np.add.reduceat(np.where(keep, d, a), first) / denom
    g = group[keep]
    share = (a[keep] - d[keep]) / denom[g]
    return share, gamma[g], ctx[first], gamma


# --- corpus and held-out material ---------------------------------------------------------------


class DevExclusion:
    """Held-out transcripts: a sentence equal to one, or sharing a word :data:`OVERLAP_N`-gram, is excluded."""

    def __init__(self, transcripts: Iterable[str], *, n: int = OVERLAP_N) -> None:
        self.n = n
        self.exact: set[str] = set()
        self.overlap: set[tuple[str, ...]] = set()
        for t in transcripts:
            text = normalize_text(t)
            if not text:
                continue
            self.exact.add(text)
            self.overlap.update(_grams(text.split(), n))

    def reason(self, text: str) -> Literal["exact", "overlap"] | None:
        """Why normalized ``text`` is excluded, or ``None`` if it may be used."""
        if text in self.exact:
            return "exact"
        words = text.split()
        if len(words) >= self.n and not self.overlap.isdisjoint(_grams(words, self.n)):
            return "overlap"
        return None


def _grams(words: list[str], n: int) -> Iterator[tuple[str, ...]]:
    return zip(*(words[i:] for i in range(n)), strict=False)  # type: ignore[return-value]


@dataclass(frozen=True)
class CorpusReport:
    """What :func:`read_corpus` read: non-blank lines, lines with no words after normalization,
    sentences excluded as held-out (exact copies, word-n-gram overlaps) and sentences used."""

    files: int
    lines: int
    empty: int
    excluded_exact: int
    excluded_overlap: int
    used: int

    def to_dict(self) -> dict[str, int]:
        """The figures as a JSON-ready dict."""
        return {
            "files": self.files,
            "lines": self.lines,
            "empty": self.empty,
            "excluded_exact": self.excluded_exact,
            "excluded_overlap": self.excluded_overlap,
            "used": self.used,
        }


def read_corpus(text_dir: str | Path, exclusion: DevExclusion | None = None) -> tuple[list[str], CorpusReport]:
    """Normalized sentences of ``text_dir/*.txt`` (one per line) that ``exclusion`` lets through.

    Raises:
        LanguageModelError: not a folder, or no ``*.txt`` file in it.
    """
    folder = Path(text_dir)
    if not folder.is_dir():
        raise LanguageModelError(f"not a folder: {folder}")
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise LanguageModelError(f"no *.txt files in {folder}")
    out: list[str] = []
    lines = empty = exact = overlap = 0
    for path in files:
        try:
            content = path.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise LanguageModelError(f"cannot read {path}: {e.strerror or e}") from None
        for line in content.splitlines():
            if not line.strip():
                continue
            lines += 1
            text = normalize_text(line)
            if not text:
                empty += 1
                continue
            why = exclusion.reason(text) if exclusion is not None else None
            if why == "exact":
                exact += 1
            elif why == "overlap":
                overlap += 1
            else:
                out.append(text)
    report = CorpusReport(len(files), lines, empty, exact, overlap, len(out))
    return out, report


# --- KenLM cross-check and the whole build ------------------------------------------------------


def kenlm_sentence_log10(arpa: str | Path, sentences: Sequence[str]) -> list[float]:
    """log10 probability of each normalized sentence (``</s>`` included) from flashlight-text's KenLM
    loading ``arpa`` -- the decoder's view of the file. Unknown words are scored as ``<unk>``."""
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    words = sorted({w for s in sentences for w in s.split()} | {UNK})
    tokens = Dictionary(words)
    lm = KenLM(str(arpa), tokens)
    out = []
    for s in sentences:
        state = lm.start(False)
        total = 0.0
        for w in s.split():
            state, score = lm.score(state, tokens.get_index(w))
            total += score
        _, score = lm.finish(state)
        out.append(total + score)
    return out


def build_language_model(
    *,
    text_dir: str | Path,
    out_dir: str | Path,
    options: NgramOptions,
    held_out: Sequence[tuple[str, str]] = (),
    compress: bool = True,
) -> dict[str, Any]:
    """Read, filter, estimate and write ``lm.arpa[.gz]``, ``lexicon.txt`` and ``lm.json`` into ``out_dir``.

    Args:
        text_dir: folder of ``*.txt`` sentence files.
        out_dir: output folder (created). The other ARPA form (plain or gzip), if present, is removed
            so that the folder holds one model.
        options: estimation options.
        held_out: ``(source, transcript)`` pairs to exclude from the text and to evaluate on.
        compress: write ``lm.arpa.gz`` instead of ``lm.arpa``.

    Returns:
        The statistics written to ``lm.json``.
    """
    t0 = time.monotonic()
    exclusion = DevExclusion(t for _, t in held_out)
    sentences, report = read_corpus(text_dir, exclusion)
    if not sentences:
        raise LanguageModelError(f"no usable sentences in {text_dir}")
    t_read = time.monotonic()
    model = estimate(sentences, options)
    del sentences
    t_est = time.monotonic()

    out = Path(out_dir)
    arpa = out / ("lm.arpa.gz" if compress else "lm.arpa")
    model.write_arpa(arpa)
    (out / ("lm.arpa" if compress else "lm.arpa.gz")).unlink(missing_ok=True)
    lexicon_words = model.write_lexicon(out / "lexicon.txt")
    t_write = time.monotonic()

    stats: dict[str, Any] = {
        "arpa": arpa.name,
        "arpa_bytes": arpa.stat().st_size,
        "lexicon_words": lexicon_words,
        "order": options.order,
        "vocab_size": len(model.words),
        "max_vocab_size": options.vocab_size,
        "min_counts": [options.min_count(n) for n in range(1, options.order + 1)],
        "ngrams": list(model.ngram_counts),
        "ngrams_seen": list(model.seen),
        "discounts": [
            {"d1": round(d.d1, 4), "d2": round(d.d2, 4), "d3+": round(d.d3, 4), "fallback": d.fallback}
            for d in model.discounts
        ],
        "sentences": report.to_dict(),
        "tokens": model.tokens,
        "word_types": model.word_types,
        "overlap_n": OVERLAP_N,
    }
    if held_out:
        stats["dev"] = _evaluate(model, arpa, held_out)
    stats["seconds"] = {
        "read": round(t_read - t0, 1),
        "estimate": round(t_est - t_read, 1),
        "write": round(t_write - t_est, 1),
        "evaluate": round(time.monotonic() - t_write, 1),
    }
    path = out / "lm.json"
    with _AtomicText(path) as f:
        f.write(json.dumps(stats, indent=2) + "\n")
    return stats


def _evaluate(model: NgramModel, arpa: Path, held_out: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """OOV rate and perplexity on the held-out transcripts (all, per source, distinct texts) and the
    largest difference between this model and KenLM on a few of them."""
    texts = [(src, normalize_text(t)) for src, t in held_out]
    texts = [(src, t) for src, t in texts if t]
    result: dict[str, Any] = {"all": model.score(t for _, t in texts).to_dict()}
    for src in sorted({s for s, _ in texts}):
        result[src] = model.score(t for s, t in texts if s == src).to_dict()
    distinct = sorted({t for _, t in texts})
    result["distinct_texts"] = model.score(distinct).to_dict()
    # Longest first: those exercise the higher orders and backoff paths.
    check = sorted(distinct, key=lambda t: (-len(t.split()), t))[:_KENLM_CHECK_SENTENCES]
    ours = [model.sentence_log10(t.split()) for t in check]
    theirs = kenlm_sentence_log10(arpa, check)
    result["kenlm_check"] = {
        "sentences": len(check),
        "max_abs_diff_log10": max((abs(a - b) for a, b in zip(ours, theirs, strict=True)), default=0.0),
        "example": {"text": check[0], "ours": round(ours[0], 5), "kenlm": round(theirs[0], 5)} if check else None,
    }
    return result
