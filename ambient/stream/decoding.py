"""Decoding options, in one place beside the recognizer: the ``recognizer.*`` settings -> the search.

The model package (:mod:`ambient.model.lexicon_lm`) knows the beam search and its own
:class:`~ambient.model.lexicon_lm.LmOptions`, never the YAML settings; this module is where a
``recognizer`` config section becomes those options and the LM they select. The daemon, the Wyoming
server, ``ambient transcribe`` and ``ambient eval`` all go through it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ambient.model.lexicon_lm import LexiconLm, LmOptions, load_lm
from ambient.model.tokenizer import Tokenizer

if TYPE_CHECKING:
    from ambient.config import RecognizerConfig

__all__ = ["lm_for", "lm_options"]


def lm_options(rc: RecognizerConfig) -> LmOptions:
    """The search settings of a ``recognizer`` config section (the rest keep their defaults)."""
    return LmOptions(
        lm_weight=rc.lm_weight,
        word_score=rc.word_score,
        blank_penalty=rc.blank_penalty,
        beam_size=rc.beam_size,
        final_beam_size=rc.final_beam_size,
    )


def lm_for(rc: RecognizerConfig, *, model_path: Path, tokenizer: Tokenizer) -> LexiconLm | None:
    """The LM ``rc.lm`` selects for the model at ``model_path`` with ``rc``'s search settings, or None
    (greedy CTC). Raises ``CheckpointError`` for a missing or damaged LM."""
    return load_lm(rc.lm, model_path=model_path, tokenizer=tokenizer, options=lm_options(rc))
