"""Default settings of the word n-gram LM builder, in one place.

Read by :class:`ambient.train.ngram.NgramOptions` and by ``ambient data lm``'s options, so the two
cannot drift apart. Chosen on the dev split (see docs/training.md, "a 64k-word lexicon"). This
module imports nothing: the CLI must parse its arguments without numpy.
"""

from __future__ import annotations

#: n-gram order.
ORDER = 3
#: Most frequent words kept; the rest become ``<unk>``.
VOCAB_SIZE = 64000
#: Minimum raw count per order, unigrams first (the last value repeats for higher orders).
MIN_COUNTS: tuple[int, ...] = (1, 2, 2)
