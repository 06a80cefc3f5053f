"""CTC beam search with a lexicon and a word n-gram language model, decoded incrementally.

Greedy CTC spells words as heard ("fortenminits"); a beam search that may only spell words of a
lexicon, scored by an n-gram LM, turns the same character posteriors into words that exist and
follow each other plausibly. The search is flashlight-text's ``LexiconDecoder`` (C++, with KenLM
loading an ARPA file), fed chunk by chunk as the encoder produces frames, so the final costs one
``decode_end`` after the last chunk, not a search over the whole utterance.

:class:`LexiconLm` holds what is shared and read-only (lexicon trie, LM, options); one
:class:`LmCollapser` per utterance has the interface of
:class:`~ambient.model.ctc.GreedyCollapser`: ``push(log_probs)`` then ``hypothesis()``.

Conventions: tokens are the :class:`~ambient.model.tokenizer.CharTokenizer` units; the space unit
is the word separator (flashlight's "silence" token) and ends every lexicon spelling. The model
never emits a space after the last word, so :meth:`LmCollapser.finish` appends one frame that is
certainly a space before ending the search: the last word completes like the others. Long inputs
(a file transcribed as one stream) are decoded with bounded memory: words more than
``commit_frames`` behind the newest frame are taken from the best path and the search history
before them is pruned.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike

from ambient.errors import CheckpointError
from ambient.model import decoding_defaults
from ambient.model.checksums import recorded_sha256, verify_sha256
from ambient.model.ctc import Hypothesis, WordTiming, greedy_decode
from ambient.model.tokenizer import Tokenizer

__all__ = [
    "ARPA_FILES",
    "LM_FILES",
    "NGRAM_FILES",
    "LexiconLm",
    "LmCollapser",
    "LmOptions",
    "find_lm",
    "load_lm",
    "resolve_lm",
]

#: Names of the n-gram model in an LM folder, in order of preference: KenLM's binary trie (mapped, a
#: third of the ARPA form's memory and fast to load; ``ambient data lm-binary``), then ARPA.
ARPA_FILES = ("lm.arpa", "lm.arpa.gz")
NGRAM_FILES = ("lm.bin", *ARPA_FILES)
#: Names of the files of an LM folder: one n-gram model and the lexicon.
LM_FILES = (*NGRAM_FILES, "lexicon.txt")
_NEEDS = "needs lm.bin, lm.arpa or lm.arpa.gz, and lexicon.txt"

#: Score given to a frame's tokens other than the space in the synthetic end-of-utterance frame.
_IMPOSSIBLE = -1e4


class DecodeResult(Protocol):
    """A flashlight ``DecodeResult``: per frame, the token and the word id completed there (-1 if none)."""

    @property
    def tokens(self) -> list[int]: ...  # (T + 2,) with the start and end states
    @property
    def words(self) -> list[int]: ...  # (T + 2,)


class FlashlightDecoder(Protocol):
    """The calls ambient makes on flashlight's ``LexiconDecoder`` (so mypy checks them)."""

    def decode_begin(self) -> None: ...
    def decode_step(self, emissions: int, frames: int, tokens: int) -> None: ...  # pointer to (T, V) float32
    def decode_end(self) -> None: ...
    def get_best_hypothesis(self, look_back: int) -> DecodeResult: ...
    def get_all_final_hypothesis(self) -> list[DecodeResult]: ...
    def prune(self, look_back: int) -> None: ...


class FlashlightLm(Protocol):
    """The calls ambient makes on a flashlight ``LM`` (KenLM, or a biasing LM over it); states are opaque."""

    def start(self, start_with_nothing: bool) -> object: ...
    def score(self, state: object, token_index: int) -> tuple[object, float]: ...
    def finish(self, state: object) -> tuple[object, float]: ...


@dataclass(frozen=True, kw_only=True)
class LmOptions:
    """Beam-search settings (flashlight ``LexiconDecoderOptions``)."""

    beam_size: int = decoding_defaults.BEAM_SIZE
    #: ``beam_size`` of the full-context final pass (:meth:`LexiconLm.for_final_pass`).
    final_beam_size: int = decoding_defaults.FINAL_BEAM_SIZE
    beam_size_token: int = 12
    beam_threshold: float = 20.0
    lm_weight: float = decoding_defaults.LM_WEIGHT
    word_score: float = decoding_defaults.WORD_SCORE
    #: Subtracted from the blank's log-probability before the search (word timings and confidences
    #: keep the model's own posteriors).
    blank_penalty: float = decoding_defaults.BLANK_PENALTY
    unk_score: float = -math.inf
    sil_score: float = 0.0
    commit_frames: int = 250


def find_lm(folder: Path) -> tuple[Path, Path] | None:
    """``(n-gram model, lexicon)`` in ``folder`` if both are there, else None (``lm.bin`` first)."""
    lexicon = folder / "lexicon.txt"
    for name in NGRAM_FILES:
        if (folder / name).is_file() and lexicon.is_file():
            return folder / name, lexicon
    return None


def resolve_lm(setting: str, model_path: Path) -> tuple[Path, Path] | None:
    """The LM files a ``recognizer.lm`` setting names: ``off`` -> None, ``auto`` -> the ``lm/``
    folder beside the model (None if there is none; CheckpointError if it is incomplete), a
    folder -> its files (CheckpointError if absent)."""
    if setting == "off":
        return None
    if setting == "auto":
        folder = model_path.parent / "lm"
        found = find_lm(folder)
        if found is None and folder.is_dir() and any(folder.iterdir()):
            raise CheckpointError(
                f"{folder}: incomplete language model ({_NEEDS}); set recognizer.lm: off to decode without one"
            )
        return found
    folder = Path(setting).expanduser()
    found = find_lm(folder)
    if found is None:
        raise CheckpointError(f"{folder}: no language model here ({_NEEDS})")
    return found


def load_lm(
    setting: str, *, model_path: Path, tokenizer: Tokenizer, options: LmOptions | None = None
) -> LexiconLm | None:
    """The :class:`LexiconLm` a ``recognizer.lm`` setting names, or None for greedy decoding."""
    found = resolve_lm(setting, model_path)
    return None if found is None else LexiconLm(found[0], found[1], tokenizer, options)


@contextlib.contextmanager
def _quiet_stdio() -> Iterator[None]:
    """Silence file descriptors 1 and 2 (KenLM prints a progress bar while it reads an ARPA file)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _read_lexicon(path: Path, alphabet: set[str]) -> dict[str, str]:
    words: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read lexicon: {e}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        word, sep, spelling = line.partition("\t")
        letters = spelling.split()
        if not sep or not word or "".join(letters) != word or not set(letters) <= alphabet:
            raise CheckpointError(f"{path}:{n}: not a lexicon line (word<TAB>spelled letters): {line[:60]!r}")
        words[word] = spelling
    if not words:
        raise CheckpointError(f"{path}: empty lexicon")
    return words


class LexiconLm:
    """Lexicon trie + KenLM n-gram model for :class:`LmCollapser` (built once, shared).

    Args:
        arpa: n-gram model over the lexicon's words: ARPA (plain or gzipped) or KenLM binary.
        lexicon: ``word<TAB>w o r d`` lines.
        tokenizer: the acoustic model's character tokenizer (blank 0, space = word separator).
        options: beam-search settings.
    """

    def __init__(self, arpa: Path, lexicon: Path, tokenizer: Tokenizer, options: LmOptions | None = None) -> None:
        from flashlight.lib.text import decoder as fl
        from flashlight.lib.text.decoder.kenlm import KenLM
        from flashlight.lib.text.dictionary import Dictionary

        self.options = options or LmOptions()
        self.tokenizer = tokenizer
        self.arpa = arpa
        self.lexicon = lexicon
        pieces = [tokenizer.id_to_piece(i) for i in range(tokenizer.vocab_size)]
        if " " not in pieces:
            raise CheckpointError("a lexicon LM needs a character tokenizer with a space unit")
        self.blank = tokenizer.blank_id
        self.sil = pieces.index(" ")
        alphabet = {p for i, p in enumerate(pieces) if i not in (self.blank, self.sil)}
        if not arpa.is_file():
            raise CheckpointError(f"{arpa}: language model file not found")
        for f in (arpa, lexicon):
            if f.is_file() and recorded_sha256(f) is not None:
                verify_sha256(f)  # shipped files carry a SHA256SUMS; one built by hand may not
        spellings = _read_lexicon(lexicon, alphabet)
        self.words = ["<unk>", *sorted(spellings)]
        self._word_dict = Dictionary(self.words)
        self._word_dict.set_default_index(0)
        try:
            with _quiet_stdio():
                self._lm = KenLM(str(arpa), self._word_dict)
        except Exception as e:  # KenLM raises its own C++ exceptions for a malformed file
            raise CheckpointError(f"{arpa}: cannot load the language model: {str(e).splitlines()[0][:200]}") from None
        self._trie = fl.Trie(len(pieces), self.sil)
        start = self._lm.start(False)
        for w, spelling in spellings.items():
            idx = self._word_dict.get_index(w)
            _, score = self._lm.score(start, idx)
            self._trie.insert([pieces.index(c) for c in spelling.split()] + [self.sil], idx, score)
        self._trie.smear(fl.SmearingMode.MAX)
        self._fl_options = self._decoder_options(self.options)
        self.vocab_size = len(pieces)

    @staticmethod
    def _decoder_options(o: LmOptions) -> object:
        from flashlight.lib.text import decoder as fl

        return fl.LexiconDecoderOptions(
            beam_size=o.beam_size,
            beam_size_token=o.beam_size_token,
            beam_threshold=o.beam_threshold,
            lm_weight=o.lm_weight,
            word_score=o.word_score,
            unk_score=o.unk_score,
            sil_score=o.sil_score,
            log_add=False,
            criterion_type=fl.CriterionType.CTC,
        )

    def with_options(self, options: LmOptions) -> LexiconLm:
        """The same loaded LM, lexicon and trie with other search settings (no reload: a grid search
        over ``lm_weight``/``word_score``/``beam_size`` costs one load)."""
        other = copy.copy(self)
        other.options = options
        other._fl_options = self._decoder_options(options)
        return other

    def for_final_pass(self) -> LexiconLm:
        """This LM with ``beam_size = final_beam_size``: the search of the full-context final pass
        (the same loaded LM and trie; ``self`` when the two sizes are equal)."""
        o = self.options
        return self if o.final_beam_size == o.beam_size else self.with_options(replace(o, beam_size=o.final_beam_size))

    @property
    def kenlm(self) -> FlashlightLm:
        """The loaded n-gram model (flashlight ``KenLM``; word ids are indices into :attr:`words`)."""
        return self._lm

    def with_search(self, *, lm: FlashlightLm, trie: object, words: list[str]) -> LexiconLm:
        """The same settings over another flashlight LM and trie whose word ids index ``words`` (phrase
        biasing, :mod:`ambient.model.bias`: a boosting LM and a trie with added words)."""
        other = copy.copy(self)
        other._lm, other._trie, other.words = lm, trie, words
        return other

    def new_decoder(self) -> FlashlightDecoder:
        """A fresh flashlight decoder over the shared trie and LM."""
        from flashlight.lib.text import decoder as fl

        decoder: FlashlightDecoder = fl.LexiconDecoder(
            self._fl_options, self._trie, self._lm, self.sil, self.blank, 0, [], False
        )
        return decoder


@dataclass(frozen=True)
class _Letters:
    """Letters spelled since the last word separator: first and last frame, posteriors of each letter."""

    first: int
    last: int
    probs: tuple[float, ...]


class LmCollapser:
    """Incremental lexicon + LM decoding of one utterance (the interface of ``GreedyCollapser``).

    Push ``log_probs (T, V)`` pieces with :meth:`push`; :meth:`hypothesis` is the best path so far
    (words in the middle may still change as later frames arrive); :meth:`finish` ends the search
    and returns the final hypothesis. Word times: first to one past the last frame of its letters;
    confidence: mean posterior of its letters on the best path.
    """

    def __init__(self, lm: LexiconLm, *, frame_shift_s: float, time_offset_s: float = 0.0) -> None:
        self.lm = lm
        self.frame_shift_s = frame_shift_s
        self.time_offset_s = time_offset_s
        self._dec = lm.new_decoder()
        self._dec.decode_begin()
        self._lp = np.zeros((0, lm.vocab_size), np.float32)  # (T, V) log-probs not yet committed
        self._base = 0  # frame index of self._lp[0]
        self._t = 0
        self._committed: list[WordTiming] = []
        #: Letters the committed part ended with, their word not yet complete: (first frame, last
        #: frame, posteriors), frames counted from the utterance start. Every later result continues them.
        self._open: _Letters | None = None
        self._last_text = ""
        self._ended = False

    @property
    def frames(self) -> int:
        """Frames pushed so far."""
        return self._t

    def _step(self, lp: np.ndarray) -> None:
        lp = np.ascontiguousarray(lp, dtype=np.float32)
        self._dec.decode_step(lp.ctypes.data, lp.shape[0], lp.shape[1])

    def push(self, log_probs: ArrayLike) -> bool:
        """Consume the next frames ``log_probs (T, V)``; returns whether the best text changed."""
        if self._ended:
            raise RuntimeError("push() after finish()")
        lp = np.asarray(log_probs, dtype=np.float32)
        if lp.ndim != 2 or lp.shape[1] != self.lm.vocab_size:
            raise ValueError(f"expected log-probs (T, {self.lm.vocab_size}), got {tuple(lp.shape)}")
        if not len(lp):
            return False
        penalty = self.lm.options.blank_penalty
        if penalty:
            searched = lp.copy()
            searched[:, self.lm.blank] -= penalty
            self._step(searched)
        else:
            self._step(lp)
        self._lp = np.concatenate([self._lp, lp])
        self._t += len(lp)
        if self._t - self._base > 2 * self.lm.options.commit_frames:
            self._commit()
        text = self.hypothesis().text
        changed, self._last_text = text != self._last_text, text
        return changed

    def _commit(self) -> None:
        """Move the words of the best path's older part out of the search (bounded memory)."""
        look_back = self.lm.options.commit_frames
        res = self._dec.get_best_hypothesis(look_back)
        n = len(res.tokens) - 1  # tokens[0] is the start state
        if n <= 0:
            return
        # The result ends at the last word completed before the cut; prune() drops the same frames.
        self._committed.extend(self._words(res, frames=n, commit=True))
        self._dec.prune(look_back)
        self._lp = self._lp[n:]
        self._base += n

    def _words(self, res: DecodeResult, *, frames: int, commit: bool = False) -> list[WordTiming]:
        """Words of a flashlight result covering ``frames`` frames from ``self._base``.

        The search emits a word at the frame of the separator that ends its spelling, so each word
        takes the letters spelled before that separator (back into the committed part when its
        spelling began there): a word is paired with its own letters by position, never by counting,
        so no word can get another's times. Letters a separator ends without a word (a spelling the
        search left unfinished) are no word. A word whose letters are out of view (the search kept
        a path other than the committed one) is timed at its separator, with confidence 0.
        ``commit``: ``res`` is the part being committed; the letters it ends with are kept for the
        results after it."""
        tokens = list(res.tokens)[1 : frames + 1]
        word_at = list(res.words)[1 : frames + 1]
        lp = self._lp
        out: list[WordTiming] = []
        letters = self._open  # spelled since the last separator, in frames from the utterance start
        prev = self.lm.blank
        for i, tok in enumerate(tokens):
            if tok == self.lm.sil:
                if word_at[i] >= 0:
                    here = _Letters(first=self._base + i, last=self._base + i, probs=(0.0,))
                    out.append(self._timing(word_at[i], letters or here))
                letters = None
            elif tok != self.lm.blank:
                first = self._base + i if letters is None else letters.first
                probs = () if letters is None else letters.probs
                if tok != prev and i < len(lp):
                    probs = (*probs, float(math.exp(lp[i, tok])))
                letters = _Letters(first=first, last=self._base + i, probs=probs)
            prev = tok
        if commit:
            self._open = letters
        return out

    def _timing(self, word_id: int, letters: _Letters) -> WordTiming:
        """Word ``word_id`` spelled by ``letters``: from its first letter's frame to one past its last."""
        return WordTiming(
            word=self.lm.words[word_id],
            start=round(self.time_offset_s + letters.first * self.frame_shift_s, 3),
            end=round(self.time_offset_s + (letters.last + 1) * self.frame_shift_s, 3),
            confidence=round(float(np.mean(letters.probs)) if letters.probs else 0.0, 4),
        )

    def _best(self) -> list[WordTiming]:
        """The best path's words, then the frames after its last complete word decoded greedily.

        The search chooses a word only at its boundary, so its best path ends at the last complete
        word; the greedy tail shows what is being said since (as a partial would without the LM)
        instead of holding the first partial back until the first word ends."""
        res = self._dec.get_best_hypothesis(0)
        n = len(res.tokens) - 1
        words = self._words(res, frames=n)
        if n < len(self._lp):
            tail = greedy_decode(
                self._lp[n:],
                self.lm.tokenizer,
                frame_shift_s=self.frame_shift_s,
                time_offset_s=self.time_offset_s + (self._base + n) * self.frame_shift_s,
            )
            words += tail.words
        return words

    def hypothesis(self) -> Hypothesis:
        """The best words so far: committed ones, the best path, and a greedy tail after it."""
        words = [*self._committed, *self._best()]
        return _hypothesis(words)

    def finish(self) -> Hypothesis:
        """Close the last word (one synthetic word-separator frame), end the search, return the best."""
        if not self._ended:
            sep = np.full((1, self.lm.vocab_size), _IMPOSSIBLE, dtype=np.float32)
            sep[0, self.lm.sil] = 0.0
            self._step(sep)
            self._lp = np.concatenate([self._lp, sep])
            self._dec.decode_end()
            self._ended = True
        hyps = self._dec.get_all_final_hypothesis()
        if not hyps:
            return _hypothesis(list(self._committed))
        res = hyps[0]
        words = self._words(res, frames=len(res.tokens) - 1)
        return _hypothesis([*self._committed, *words])


def _hypothesis(words: list[WordTiming]) -> Hypothesis:
    conf = round(sum(w.confidence for w in words) / len(words), 4) if words else 1.0
    return Hypothesis(text=" ".join(w.word for w in words), words=words, confidence=conf)
