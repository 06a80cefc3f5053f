"""The decoding options shared by ``transcribe`` and ``eval``: the language model and the final pass
(same meaning as ``recognizer.*``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import ValidationError

from ambient.errors import ConfigError

if TYPE_CHECKING:
    from ambient.config import RecognizerConfig
    from ambient.model.lexicon_lm import LexiconLm
    from ambient.model.tokenizer import Tokenizer

__all__ = [
    "add_final_pass_argument",
    "add_lm_arguments",
    "final_pass_from_args",
    "lm_from_args",
    "recognizer_from_args",
]

# The ``recognizer.*`` key each option sets, as argparse stores it (``dest``), and the flag a user typed.
_OPTION_OF_KEY = {
    "lm": "--lm",
    "lm_weight": "--lm-weight",
    "word_score": "--word-score",
    "blank_penalty": "--blank-penalty",
    "beam_size": "--beam-size",
    "final_beam_size": "--final-beam-size",
}


def add_lm_arguments(p: argparse.ArgumentParser) -> None:
    """``--lm``, ``--lm-weight``, ``--word-score``, ``--blank-penalty``, ``--beam-size``, ``--final-beam-size``;
    unset ones take the daemon's defaults (``recognizer.*`` in docs/configuration.md), read only when a command
    runs."""
    p.add_argument(
        "--lm",
        default=None,
        metavar="auto|off|DIR",
        help="word language model: auto = the lm/ folder beside the model if any, off = greedy CTC, "
        "or a folder with lm.bin or lm.arpa[.gz] and lexicon.txt (default auto)",
    )
    p.add_argument("--lm-weight", type=float, default=None, help="LM weight (default: recognizer.lm_weight)")
    p.add_argument("--word-score", type=float, default=None, help="per-word score (default: recognizer.word_score)")
    p.add_argument(
        "--blank-penalty", type=float, default=None, help="blank log-prob penalty (default: recognizer.blank_penalty)"
    )
    p.add_argument("--beam-size", type=int, default=None, help="beam size (default: recognizer.beam_size)")
    p.add_argument(
        "--final-beam-size",
        type=int,
        default=None,
        help="beam size of the full-context final pass (default: recognizer.final_beam_size)",
    )


def lm_from_args(args: argparse.Namespace, *, model_path: Path, tokenizer: Tokenizer) -> LexiconLm | None:
    """The LM the options select for the model at ``model_path``, or None (greedy). Each option is checked
    against the range of its ``recognizer.*`` key; one out of range raises :class:`ConfigError`."""
    from ambient.stream.decoding import lm_for

    return lm_for(recognizer_from_args(args), model_path=model_path, tokenizer=tokenizer)


def recognizer_from_args(args: argparse.Namespace) -> RecognizerConfig:
    """The daemon's ``recognizer`` defaults with the decoding options that were given, validated like the
    config file's keys; raises :class:`ConfigError` naming the option."""
    from ambient.config import RecognizerConfig, format_validation_error

    given = {key: getattr(args, key) for key in _OPTION_OF_KEY if getattr(args, key, None) is not None}
    try:
        return RecognizerConfig.model_validate(given)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, "command line", names=_OPTION_OF_KEY)) from None


def add_final_pass_argument(p: argparse.ArgumentParser) -> None:
    """``--final-pass full|streaming``; unset, the daemon's default (``recognizer.final_pass``)."""
    p.add_argument(
        "--final-pass",
        choices=("full", "streaming"),
        default=None,
        help="full = a full-context second pass makes the final, streaming = the chunked pass's result "
        "(default: recognizer.final_pass)",
    )


def final_pass_from_args(args: argparse.Namespace) -> Literal["full", "streaming"]:
    """The ``--final-pass`` choice, or the daemon's default."""
    from ambient.config import RecognizerConfig

    return RecognizerConfig().final_pass if args.final_pass is None else args.final_pass
