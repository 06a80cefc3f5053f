"""Readers that turn speech corpora on disk into :class:`~ambient.train.manifest.Utterance` lists.

Three layouts are understood:

- the shared data folder (``<root>/<corpus>/manifest.tsv``: ``relative_path<TAB>transcript``), with the
  speaker inferred per corpus (``cathy``, ``lj``, and the FSDD speaker from ``digit_speaker_index``);
  the ``noise`` folder is not speech and is skipped;
- a LibriSpeech-layout directory (``<root>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` and
  FLAC files beside it);
- a generic ``path<TAB>text`` file (paths relative to the file's folder).

Every transcript is normalized (``normalize_text``), the original kept as ``raw_text``, and every
duration measured from the audio file. Files that are missing, unreadable or empty, and lines with
no transcript, never stop a run: they are returned as :class:`Skipped` entries for the caller to
report. :func:`split_dev` carves the development split: held-out speakers plus a deterministic,
text-disjoint slice of chosen corpora.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from ambient.text.normalize import normalize_text
from ambient.train.manifest import Utterance

__all__ = [
    "NOT_SPEECH",
    "DevSplit",
    "ReadResult",
    "Skipped",
    "audio_duration",
    "read_librispeech",
    "read_shared",
    "read_shared_corpus",
    "read_tsv",
    "shared_speaker",
    "split_dev",
]

#: Folders of the shared data root that hold no speech.
NOT_SPEECH = frozenset({"noise", "text"})

_SPEAKERS = {"cathy_arctic": "cathy", "ljspeech_part1": "lj"}


@dataclass(frozen=True)
class Skipped:
    """An entry left out of a manifest and why."""

    path: str
    reason: str


@dataclass
class ReadResult:
    """Utterances read from a source, plus the entries that were skipped."""

    utterances: list[Utterance] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def extend(self, other: ReadResult) -> None:
        """Append another result's utterances and skipped entries."""
        self.utterances.extend(other.utterances)
        self.skipped.extend(other.skipped)


def audio_duration(path: str | Path) -> float:
    """Seconds of audio in ``path`` from its header (``soundfile.info``).

    Raises ``ValueError`` for an empty file and ``OSError``/``RuntimeError`` subclasses from
    soundfile for a missing or unreadable one.
    """
    info = sf.info(str(path))
    if info.frames <= 0 or info.samplerate <= 0:
        raise ValueError("no audio frames")
    return float(info.frames) / float(info.samplerate)


def _make(audio: Path, raw: str, speaker: str, source: str) -> Utterance | Skipped:
    text = normalize_text(raw)
    if not text:
        return Skipped(str(audio), "empty transcript after normalization")
    if not audio.is_file():
        return Skipped(str(audio), "missing")
    try:
        duration = audio_duration(audio)
    except ValueError as e:
        return Skipped(str(audio), f"empty audio ({e})")
    except (OSError, RuntimeError) as e:  # soundfile's LibsndfileError is a RuntimeError
        return Skipped(str(audio), f"unreadable ({' '.join(str(e).split())})")
    return Utterance(
        audio=os.path.abspath(audio), text=text, duration=duration, speaker=speaker, source=source, raw_text=raw
    )


def _collect(items: Iterable[Utterance | Skipped]) -> ReadResult:
    out = ReadResult()
    for it in items:
        if isinstance(it, Utterance):
            out.utterances.append(it)
        else:
            out.skipped.append(it)
    return out


def read_tsv(
    path: str | Path,
    *,
    speaker: str | Callable[[Path], str],
    source: str,
) -> ReadResult:
    """Utterances of a ``path<TAB>transcript`` file; paths relative to the file's folder.

    Args:
        path: the TSV file. Blank lines and lines starting with ``#`` are ignored.
        speaker: a fixed speaker id, or a function of the audio path that returns one.
        source: the corpus name stored in every utterance.
    """
    p = Path(path)
    base = p.parent
    speaker_of = speaker if callable(speaker) else (lambda _a: speaker)

    def items() -> Iterable[Utterance | Skipped]:
        with p.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line.strip() or line.startswith("#"):
                    continue
                rel, sep, raw = line.partition("\t")
                if not sep or not rel.strip():
                    yield Skipped(f"{p}:{lineno}", "not 'path<TAB>transcript'")
                    continue
                audio = Path(rel.strip())
                audio = audio if audio.is_absolute() else base / audio
                # Only the first extra column is the transcript (the noise manifest has more).
                yield _make(audio, raw.split("\t")[0].strip(), speaker_of(audio), source)

    return _collect(items())


def shared_speaker(corpus: str, audio: Path) -> str:
    """Speaker id of a file in the shared data: fixed per corpus, or FSDD's ``digit_speaker_index``."""
    if corpus in _SPEAKERS:
        return _SPEAKERS[corpus]
    if corpus.startswith("fsdd"):
        parts = audio.stem.split("_")
        if len(parts) == 3 and parts[0].isdigit() and parts[2].isdigit():
            return parts[1]
    return corpus


def read_shared_corpus(folder: str | Path) -> ReadResult:
    """One corpus folder of the shared data (its ``manifest.tsv``); source = the folder name."""
    f = Path(folder)
    corpus = f.name
    return read_tsv(f / "manifest.tsv", speaker=lambda a: shared_speaker(corpus, a), source=corpus)


def read_shared(root: str | Path) -> ReadResult:
    """Every speech corpus under the shared data root (folders with a ``manifest.tsv``, noise skipped)."""
    out = ReadResult()
    for folder in sorted(Path(root).iterdir()):
        if folder.name in NOT_SPEECH or not (folder / "manifest.tsv").is_file():
            continue
        out.extend(read_shared_corpus(folder))
    return out


def read_librispeech(root: str | Path, *, source: str | None = None) -> ReadResult:
    """A LibriSpeech-layout tree: ``*/*/*.trans.txt`` lines ``<id> <TRANSCRIPT>``, audio ``<id>.flac``.

    The speaker is the first directory level; ``source`` defaults to ``librispeech/<root name>``.
    """
    r = Path(root)
    src = source or f"librispeech/{r.resolve().name}"

    def items() -> Iterable[Utterance | Skipped]:
        for trans in sorted(r.glob("*/*/*.trans.txt")):
            speaker = trans.parent.parent.name
            with trans.open(encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    uid, _, raw = line.strip().partition(" ")
                    if not raw.strip():
                        yield Skipped(f"{trans}:{lineno}", "no transcript")
                        continue
                    yield _make(trans.parent / f"{uid}.flac", raw.strip(), speaker, src)

    return _collect(items())


@dataclass(frozen=True)
class DevSplit:
    """How to carve a development split out of real speech.

    Attributes:
        speakers: every utterance of these speakers goes to dev (a held-out voice).
        percent: share of each corpus in ``sliced_sources`` that goes to dev.
        sliced_sources: corpora that contribute a slice. The slice is chosen by a hash of the
            normalized transcript, so a prompt read twice never lands on both sides.
    """

    speakers: frozenset[str] = frozenset({"yweweler"})
    percent: float = 8.0
    sliced_sources: frozenset[str] = frozenset({"cathy_arctic", "ljspeech_part1"})

    def is_dev(self, utt: Utterance) -> bool:
        """Whether ``utt`` belongs to the development split."""
        if utt.speaker in self.speakers:
            return True
        if utt.source not in self.sliced_sources:
            return False
        digest = hashlib.sha1(utt.text.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % 10000 < round(self.percent * 100)


def split_dev(utts: Iterable[Utterance], split: DevSplit) -> tuple[list[Utterance], list[Utterance]]:
    """``(train, dev)``: the utterances partitioned by ``split.is_dev``, order kept."""
    train: list[Utterance] = []
    dev: list[Utterance] = []
    for u in utts:
        (dev if split.is_dev(u) else train).append(u)
    return train, dev
