"""Sentences to synthesize: read, cleaned, filtered, split and put in a seeded order.

Source: the ``*.txt`` files of the shared text folder, one sentence per line. The CMU ARCTIC
prompts and the LJSpeech transcripts are left out entirely, because those very sentences are
spoken in the real recordings whose development split must stay unseen; so is any sentence whose
normalized text equals a transcript of the real corpora next to the text folder.

A sentence is kept if, after normalization, it has 3-20 words and it looks like prose a speech
engine reads as written: no markup or code characters, no encoding debris, no all-capital
acronyms or Roman numerals (engines spell some and read others as words, so the transcript
would be ambiguous), no letter strings without a vowel and no overlong words.

One sentence in a hundred (by a hash of its normalized text) is *held out*: never used for
training runs, available for test sets such as the unseen-voice set.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ambient.text.normalize import normalize_text

__all__ = [
    "EXCLUDED_FILES",
    "Sentence",
    "TextSplit",
    "default_data_root",
    "is_heldout",
    "load_sentences",
    "real_transcripts",
    "sentence_ok",
    "spoken_order",
]

#: Text files never used: their sentences are spoken in the real (development) recordings.
EXCLUDED_FILES = frozenset({"cmu_arctic_prompts.txt", "ljspeech_transcripts.txt"})

TextSplit = Literal["train", "heldout"]

_HELDOUT_PER_10000 = 100
_MAX_RAW_CHARS = 300
_JUNK = re.compile(r"[*_~<>{}|\\^=\[\]@#]|https?:|www\.|\.com\b|\u00c3|\u00c2|\u00e2\u20ac|\bA[fj]\b")
_ACRONYM = re.compile(r"\b[A-Z]{2,}\b")
_VOWEL = re.compile(r"[aeiouy]")
_NO_VOWEL_OK = frozenset({"hmm", "hm", "mm", "shh", "sh", "psst", "pst", "tsk", "brr", "pfft", "nth", "zzz", "grr"})


@dataclass(frozen=True)
class Sentence:
    """A usable sentence: the ``raw`` line, its normalized ``text`` and the ``file`` it came from."""

    raw: str
    text: str
    file: str


def default_data_root() -> Path:
    """The shared data folder: ``$AMBIENT_DATA_DIR``, else ``../shared/data`` beside the source tree."""
    env = os.environ.get("AMBIENT_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def sentence_ok(raw: str, text: str, *, min_words: int = 3, max_words: int = 20) -> bool:
    """Whether a line (``raw``) with normalization ``text`` is fit to synthesize (module docstring)."""
    if len(raw) > _MAX_RAW_CHARS or _JUNK.search(raw) or _ACRONYM.search(raw):
        return False
    words = text.split()
    if not min_words <= len(words) <= max_words:
        return False
    return not any(len(w) > 18 or (len(w) > 1 and not _VOWEL.search(w) and w not in _NO_VOWEL_OK) for w in words)


def is_heldout(text: str) -> bool:
    """Whether a normalized sentence belongs to the held-out 1% (stable across runs and machines)."""
    digest = hashlib.sha1(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 10000 < _HELDOUT_PER_10000


def real_transcripts(data_root: str | Path) -> set[str]:
    """Normalized transcripts of every speech corpus (``<root>/<corpus>/manifest.tsv``) under ``data_root``."""
    out: set[str] = set()
    for tsv in sorted(Path(data_root).glob("*/manifest.tsv")):
        if tsv.parent.name in ("noise", "text"):
            continue
        for line in tsv.read_text(encoding="utf-8").splitlines():
            _, sep, raw = line.partition("\t")
            if sep:
                out.add(normalize_text(raw.split("\t")[0]))
    out.discard("")
    return out


def load_sentences(
    text_dir: str | Path,
    *,
    split: TextSplit = "train",
    exclude: Iterable[str] = (),
    min_words: int = 3,
    max_words: int = 20,
) -> dict[str, list[Sentence]]:
    """Usable sentences of ``text_dir/*.txt`` per file name, first occurrence of each text only.

    Args:
        text_dir: folder of text files, one sentence per line (:data:`EXCLUDED_FILES` skipped).
        split: ``train`` (the 99%) or ``heldout`` (the 1%, see :func:`is_heldout`).
        exclude: normalized texts never to use.
        min_words, max_words: sentence length bounds after normalization.
    """
    excluded = set(exclude)
    seen: set[str] = set()
    out: dict[str, list[Sentence]] = {}
    for path in sorted(Path(text_dir).glob("*.txt")):
        if path.name in EXCLUDED_FILES:
            continue
        kept: list[Sentence] = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            raw = " ".join(line.split())
            if not raw or len(raw) > _MAX_RAW_CHARS or len(raw.split()) > 3 * max_words:
                continue
            text = normalize_text(raw)
            if text in seen or text in excluded or not sentence_ok(raw, text, min_words=min_words, max_words=max_words):
                continue
            seen.add(text)
            if is_heldout(text) == (split == "heldout"):
                kept.append(Sentence(raw=raw, text=text, file=path.name))
        if kept:
            out[path.name] = kept
    return out


def spoken_order(by_file: dict[str, list[Sentence]], rng: np.random.Generator) -> list[Sentence]:
    """All sentences in a seeded order in which files appear in proportion to the square root of
    their size (big files are used more, small ones are not drowned).

    Each sentence of file ``f`` gets an exponential key with rate ``1 / sqrt(n_f)``; sorting by key
    interleaves the files so that any prefix draws about ``sqrt(n_f)`` sentences of ``f`` per unit key.
    """
    files = sorted(by_file)
    items: list[Sentence] = []
    keys: list[np.ndarray] = []
    for f in files:
        sents: Sequence[Sentence] = by_file[f]
        items.extend(sents)
        keys.append(rng.exponential(np.sqrt(len(sents)), size=len(sents)))
    if not items:
        return []
    order = np.argsort(np.concatenate(keys), kind="stable")
    return [items[int(i)] for i in order]
