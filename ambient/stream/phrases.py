"""Phrase lists: names and commands whose words the recognizer should favour.

``recognizer.phrases`` is a list of phrases in the YAML file, or the path of a text file with one
phrase per line (``#`` starts a comment). Phrases are normalized like transcripts
(:func:`~ambient.text.normalize.normalize_text`: "Living-Room Lamp 2" -> ``living room lamp two``),
and every word of every phrase gets ``recognizer.phrase_boost`` in the LM beam search
(:func:`ambient.model.bias.bias_lm`); words outside the lexicon are added with their spelling.

:class:`PhraseBias` keeps the unbiased LM and a small cache of biased variants, one per distinct
set of phrases: the daemon's list, or that list plus the phrases one Wyoming request carries.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ambient.errors import ConfigError
from ambient.model.lexicon_lm import LexiconLm
from ambient.text.normalize import normalize_text

if TYPE_CHECKING:
    from ambient.stream.recognizer import StreamingRecognizer

__all__ = ["MAX_PHRASES", "MAX_PHRASE_CHARS", "PhraseBias", "RecognizerPhrases", "load_phrases", "phrase_words"]

#: Most phrases one list (file, config or request) may hold: a bound on the trie a list can grow.
MAX_PHRASES = 5000
#: Longest phrase accepted, in characters.
MAX_PHRASE_CHARS = 200
#: Longest phrase file read, in bytes.
_MAX_FILE_BYTES = 1 << 20


def load_phrases(setting: Sequence[str] | Path | str | None) -> tuple[str, ...]:
    """The phrases a ``recognizer.phrases`` setting names: a list as is, or a file's lines (blank
    lines and ``#`` comments dropped). Raises :class:`ConfigError` for an unreadable or oversized file."""
    if setting is None:
        return ()
    if isinstance(setting, str | Path):
        path = Path(setting).expanduser()
        try:
            with path.open("rb") as f:
                data = f.read(_MAX_FILE_BYTES + 1)
        except OSError as e:
            raise ConfigError(f"{path}: cannot read the phrase list: {e.strerror or e}") from None
        if len(data) > _MAX_FILE_BYTES:
            raise ConfigError(f"{path}: phrase list larger than {_MAX_FILE_BYTES} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: phrase list is not UTF-8 text") from None
        lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        phrases = [line for line in lines if line]
        where = str(path)
    else:
        phrases = [str(p).strip() for p in setting if str(p).strip()]
        where = "recognizer.phrases"
    if len(phrases) > MAX_PHRASES:
        raise ConfigError(f"{where}: {len(phrases)} phrases, at most {MAX_PHRASES}")
    long = next((p for p in phrases if len(p) > MAX_PHRASE_CHARS), None)
    if long is not None:
        raise ConfigError(f"{where}: phrase longer than {MAX_PHRASE_CHARS} characters: {long[:40]!r}…")
    return tuple(phrases)


def phrase_words(phrases: Iterable[str]) -> tuple[str, ...]:
    """The distinct normalized words of ``phrases``, in first-seen order."""
    seen: dict[str, None] = {}
    for p in phrases:
        for w in normalize_text(p).split():
            seen.setdefault(w, None)
    return tuple(seen)


class PhraseBias:
    """The unbiased LM plus biased variants of it, built on demand and cached (least recently used).

    Args:
        lm: the recognizer's LM (unbiased).
        boost: ``recognizer.phrase_boost``.
        cache_size: variants kept (each is one trie of the whole lexicon, a few MB).
    """

    def __init__(self, lm: LexiconLm, *, boost: float, cache_size: int = 4) -> None:
        self.base = lm
        self.boost = boost
        self._cache_size = max(1, cache_size)
        self._cache: OrderedDict[tuple[str, ...], LexiconLm] = OrderedDict()
        self._unigrams: list[float] | None = None
        self._lock = threading.Lock()  # built from worker threads; one build at a time

    def lm_for(self, phrases: Iterable[str]) -> LexiconLm:
        """``base`` biased towards the words of ``phrases`` (``base`` itself for none)."""
        words = tuple(sorted(phrase_words(phrases)))
        if not words or self.boost == 0:
            return self.base
        with self._lock:
            hit = self._cache.get(words)
            if hit is not None:
                self._cache.move_to_end(words)
                return hit
            from ambient.model.bias import bias_lm, unigram_scores

            if self._unigrams is None:
                self._unigrams = unigram_scores(self.base)
            biased = bias_lm(self.base, dict.fromkeys(words, self.boost), unigrams=self._unigrams).lm
            self._cache[words] = biased
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return biased


class RecognizerPhrases:
    """The configured phrase list (``recognizer.phrases``) of a long-lived recognizer: the daemon's
    and the Wyoming server's. :meth:`apply` installs a list (from the next utterance on), and a
    reload calls it again with the list it re-read; an unchanged list costs nothing.

    Args:
        recognizer: the recognizer whose LM is swapped (it keeps its unbiased LM in ``bias.base``).
        boost: ``recognizer.phrase_boost``.
    """

    def __init__(self, recognizer: StreamingRecognizer, *, boost: float) -> None:
        self._recognizer = recognizer
        lm = getattr(recognizer, "lm", None)
        #: None without a word LM (``recognizer.lm: off``): phrases cannot apply.
        self.bias = None if lm is None else PhraseBias(lm, boost=boost)
        self.phrases: tuple[str, ...] = ()

    def apply(self, phrases: Sequence[str]) -> bool:
        """Search with ``phrases`` from the next utterance on; returns whether anything changed.
        Builds a biased LM (a fraction of a second): call it off the event loop."""
        phrases = tuple(phrases)
        if phrases == self.phrases or self.bias is None:
            return False
        self._recognizer.use_lm(self.bias.lm_for(phrases))
        self.phrases = phrases
        return True
