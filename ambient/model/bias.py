"""Phrase biasing of the lexicon + LM beam search: chosen words score higher, unknown ones are added.

A :class:`~ambient.model.lexicon_lm.LexiconLm` searches a lexicon trie scored by KenLM. Biasing
builds a variant of it (the loaded LM, tokenizer and settings are shared, nothing is reloaded):

- a boosting LM (:class:`BoostingLm`) that adds ``boost`` to the LM score of every boosted word
  each time the search completes it, and scores a word added from outside the lexicon as KenLM's
  ``<unk>`` in the same context plus the boost;
- a new trie holding the lexicon and the added words, where a boosted word's look-ahead score is
  raised by the same boost (the search smears each word's score over its letters, so the prefix of
  a boosted word survives pruning long enough to be completed).

The trie's scores only steer pruning: the path's total is the LM's, which is why the boost must be in
the LM too. The boosting LM is a Python subclass of flashlight's ``LM``, so each word completion is
one Python call: decoding with a phrase list costs about twice the search time of decoding without
one (docs/benchmarks.md); without a list the plain KenLM runs as before.

Building a variant costs one trie (about 64k inserts, ~0.3 s on a desktop core): callers cache them
(:class:`ambient.stream.phrases.PhraseBias`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ambient.model.lexicon_lm import FlashlightLm, LexiconLm

__all__ = ["BiasResult", "BoostingLm", "bias_lm", "unigram_scores"]


def _lm_base() -> type:
    from flashlight.lib.text import decoder as fl

    return fl.LM  # type: ignore[no-any-return]


class BoostingLm(_lm_base()):  # type: ignore[misc]
    """A flashlight LM over ``base`` (KenLM): word id ``i`` is scored as base word ``lm_ids[i]`` plus
    ``bonus[i]``. Ids past the base vocabulary map to ``<unk>`` (id 0)."""

    def __init__(self, base: FlashlightLm, *, lm_ids: Sequence[int], bonus: Sequence[float]) -> None:
        super().__init__()
        self.base = base  # kept alive for the C++ side
        self._start = base.start
        self._score = base.score
        self._finish = base.finish
        self._ids = list(lm_ids)
        self._bonus = list(bonus)

    def start(self, start_with_nothing: bool) -> object:
        """The base LM's start state."""
        return self._start(start_with_nothing)

    def score(self, state: object, token_index: int) -> tuple[object, float]:
        """``(next state, score)`` of word ``token_index`` after ``state``, with its bonus."""
        nxt, s = self._score(state, self._ids[token_index])
        return nxt, s + self._bonus[token_index]

    def finish(self, state: object) -> tuple[object, float]:
        """The base LM's end-of-sentence score."""
        return self._finish(state)


def unigram_scores(lm: LexiconLm) -> list[float]:
    """Each lexicon word's LM score at the start of a sentence (index = word id): the trie's scores."""
    kenlm = lm.kenlm
    start = kenlm.start(False)
    return [float(kenlm.score(start, i)[1]) for i in range(len(lm.words))]


@dataclass(frozen=True)
class BiasResult:
    """A biased LM and what went into it."""

    lm: LexiconLm
    #: Words that were boosted (lexicon and added ones).
    boosted: tuple[str, ...]
    #: Words added to the lexicon with their spelling.
    added: tuple[str, ...]
    #: Words left out: letters outside the model's alphabet.
    skipped: tuple[str, ...]


def bias_lm(lm: LexiconLm, boosts: Mapping[str, float], *, unigrams: Sequence[float] | None = None) -> BiasResult:
    """``lm`` with each word of ``boosts`` scored ``boost`` higher (LM units: log10 probability, before
    ``lm_weight``); words outside its lexicon are added, spelled letter by letter. ``unigrams`` is
    :func:`unigram_scores` of ``lm`` (pass it when building several variants: it costs one LM query
    per word)."""
    from flashlight.lib.text import decoder as fl

    tok = lm.tokenizer
    pieces = [tok.id_to_piece(i) for i in range(tok.vocab_size)]
    token_of = {p: i for i, p in enumerate(pieces) if i not in (lm.blank, lm.sil)}
    base_words = lm.words
    base_index = {w: i for i, w in enumerate(base_words)}
    scores = list(unigrams) if unigrams is not None else unigram_scores(lm)
    if len(scores) != len(base_words):
        raise ValueError(f"unigrams has {len(scores)} scores for {len(base_words)} words")
    words = list(base_words)
    lm_ids = list(range(len(base_words)))
    bonus = [0.0] * len(base_words)
    boosted: list[str] = []
    added: list[str] = []
    skipped: list[str] = []
    for word, boost in boosts.items():
        if not word or any(c not in token_of for c in word):
            skipped.append(word)
            continue
        i = base_index.get(word)
        if i is None:
            i = len(words)
            words.append(word)
            lm_ids.append(0)  # <unk>: KenLM's mass for "a word outside the vocabulary", in context
            bonus.append(0.0)
            scores.append(scores[0])
            added.append(word)
        bonus[i] += boost
        boosted.append(word)
    trie = fl.Trie(len(pieces), lm.sil)
    for i in range(1, len(words)):
        trie.insert([token_of[c] for c in words[i]] + [lm.sil], i, scores[i] + bonus[i])
    trie.smear(fl.SmearingMode.MAX)
    search_lm = BoostingLm(lm.kenlm, lm_ids=lm_ids, bonus=bonus)
    return BiasResult(
        lm=lm.with_search(lm=search_lm, trie=trie, words=words),
        boosted=tuple(boosted),
        added=tuple(added),
        skipped=tuple(skipped),
    )
