"""Default settings of the word-LM beam search, in one place.

Read by :class:`ambient.config.RecognizerConfig` (the daemon's ``recognizer.*`` settings) and by
:class:`ambient.model.lexicon_lm.LmOptions` (the decoder's own defaults, used by ``ambient eval``,
``ambient transcribe`` and the scripts), so the two cannot drift apart. Chosen on the dev split with
``scripts/tune_lm.py`` (see docs/model.md). This module imports nothing: the configuration must load
without torch.
"""

from __future__ import annotations

#: Weight of the language model's log-probability.
LM_WEIGHT = 1.75
#: Score added per emitted word.
WORD_SCORE = 0.0
#: Subtracted from the blank's log-probability before the search. CTC models trained on little data
#: put most of the probability on the blank and too little on letters they are unsure of (deletions,
#: endings dropped: "light" for "lights"); the penalty lets the lexicon and the LM weigh those letters.
#: Greedy decoding is left as it is.
BLANK_PENALTY = 1.0
#: Hypotheses kept per frame.
BEAM_SIZE = 256
#: Hypotheses kept per frame by the full-context final pass (``recognizer.final_pass: full``): it runs
#: once per utterance, inside the hangover, so it can afford a wider search than the partials.
FINAL_BEAM_SIZE = 512
