"""Readers that turn speech corpora on disk into :class:`~ambient.train.manifest.Utterance` lists.

Three layouts are understood:

- the shared data folder (``<root>/<corpus>/manifest.tsv``: ``relative_path<TAB>transcript[<TAB>speaker]``):
  the multi-speaker corpora name the speaker in the third column; the old ones have a fixed speaker
  per corpus (``cathy``, ``lj``, and the FSDD speaker from ``digit_speaker_index``), and a corpus
  whose column is empty (speaker unknown) gets the corpus name; the ``noise`` folder is not speech
  and is skipped;
- a LibriSpeech-layout directory (``<root>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` and
  FLAC files beside it);
- a generic ``path<TAB>text`` file (paths relative to the file's folder).

Every transcript is normalized (``normalize_text``), the original kept as ``raw_text``, and every
duration measured from the audio file. Files that are missing, unreadable or empty, and lines with
no transcript, never stop a run: they are returned as :class:`Skipped` entries for the caller to
report. :func:`split_dev` carves the old development split (held-out speakers plus a deterministic,
text-disjoint slice of chosen corpora: its sliced speakers are *seen* in training);
:func:`split_speakers` adds the speaker-disjoint one, whose speakers occur nowhere in training.
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
    "MACHINE_TRANSCRIBED",
    "NOT_SPEECH",
    "UNSEEN_GROUPS",
    "UNSEEN_RULES",
    "DevSplit",
    "ReadResult",
    "Skipped",
    "SpeakerSplit",
    "UnseenRule",
    "audio_duration",
    "read_librispeech",
    "read_shared",
    "read_shared_corpus",
    "read_tsv",
    "shared_speaker",
    "split_dev",
    "split_speakers",
]

#: Folders of the shared data root that hold no speech.
NOT_SPEECH = frozenset({"noise", "text"})

_SPEAKERS = {"cathy_arctic": "cathy", "ljspeech_part1": "lj"}

#: Corpora whose transcripts were made by a recognizer (whisper tiny.en): noisy labels that may
#: train but never evaluate (../shared/data/README.md).
MACHINE_TRANSCRIBED = frozenset({"coffee_commands", "librispeech_sample"})


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
        speaker: a fixed speaker id, or a function of the audio path that returns one; a line's
            third column, where present and not empty, overrides it.
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
                rel, sep, rest = line.partition("\t")
                if not sep or not rel.strip():
                    yield Skipped(f"{p}:{lineno}", "not 'path<TAB>transcript'")
                    continue
                audio = Path(rel.strip())
                audio = audio if audio.is_absolute() else base / audio
                raw, _, column = rest.partition("\t")
                # A third column, where present and not empty, names the speaker.
                spk = column.split("\t")[0].strip() or speaker_of(audio)
                yield _make(audio, raw.strip(), spk, source)

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


def _hash64(key: str) -> int:
    """The first 64 bits of ``key``'s SHA-1: the same on every machine and run."""
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big")


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
        return _hash64(utt.text) % 10000 < round(self.percent * 100)


def split_dev(utts: Iterable[Utterance], split: DevSplit) -> tuple[list[Utterance], list[Utterance]]:
    """``(train, dev)``: the utterances partitioned by ``split.is_dev``, order kept."""
    train: list[Utterance] = []
    dev: list[Utterance] = []
    for u in utts:
        (dev if split.is_dev(u) else train).append(u)
    return train, dev


def _share_hash(key: str) -> float:
    """A deterministic number in ``[0, 1)`` for ``key`` (the same on every machine and run)."""
    return _hash64(key) / 2.0**64


@dataclass(frozen=True)
class UnseenRule:
    """Which speakers of one corpus are held out of training for the speaker-disjoint dev set.

    Attributes:
        corpus: the corpus (folder) name.
        share: share of the corpus's speakers held out, chosen by a hash of the speaker id.
        under: only speakers whose audio path contains this (e.g. speechocean762's ``/test/``, so
            the published test half is where they come from); ``None``: any speaker.
    """

    corpus: str
    share: float
    under: str | None = None

    def holds_out(self, utt: Utterance) -> bool:
        """Whether ``utt``'s speaker is held out by this rule."""
        if utt.source != self.corpus:
            return False
        if self.under is not None and self.under not in utt.audio:
            return False
        return _share_hash(f"{self.corpus}/{utt.speaker}") < self.share


#: The shipped speaker-disjoint dev set: half the speechocean762 test speakers, a quarter of the
#: speech_commands speakers, all of common_voice_sample and an4 (too small to train on anyway).
UNSEEN_RULES: tuple[UnseenRule, ...] = (
    UnseenRule("speechocean762", 0.5, under="/test/"),
    UnseenRule("speech_commands", 0.25),
    UnseenRule("common_voice_sample", 1.0),
    UnseenRule("an4", 1.0),
)

#: How the unseen-speaker dev set is reported: read sentences and short spoken commands apart.
UNSEEN_GROUPS: dict[str, frozenset[str]] = {
    "sentences": frozenset({"speechocean762", "common_voice_sample"}),
    "commands": frozenset({"speech_commands", "an4"}),
}


@dataclass
class SpeakerSplit:
    """The three parts of the shared data: training, seen-speaker dev and unseen-speaker dev.

    ``unseen_dropped`` holds the held-out speakers' utterances over the per-speaker cap: out of
    training (their speaker is held out) and out of the dev set (to keep evaluation affordable).
    """

    train: list[Utterance] = field(default_factory=list)
    seen: list[Utterance] = field(default_factory=list)
    unseen: list[Utterance] = field(default_factory=list)
    unseen_dropped: list[Utterance] = field(default_factory=list)


def split_speakers(
    utts: Iterable[Utterance],
    split: DevSplit,
    *,
    rules: Iterable[UnseenRule] = UNSEEN_RULES,
    per_speaker: int | None = 4,
) -> SpeakerSplit:
    """Partition utterances into training, seen-speaker dev and unseen-speaker dev.

    A speaker held out by any rule loses every utterance to the unseen side, so no utterance of
    theirs trains. Machine-transcribed corpora (:data:`MACHINE_TRANSCRIBED`) always train and never
    evaluate. The seen-speaker dev set is ``split``'s (the old dev split).

    Args:
        utts: utterances from :func:`read_shared` (or any reader).
        split: the old dev split.
        rules: which speakers are held out.
        per_speaker: at most this many utterances of each held-out speaker go to the unseen dev set
            (chosen by a hash of the audio path); ``None``: all of them.

    Raises:
        ValueError: a rule's share outside ``(0, 1]`` or a machine-transcribed corpus in the rules.
    """
    rule_list = list(rules)
    for r in rule_list:
        if not 0.0 < r.share <= 1.0:
            raise ValueError(f"unseen share of {r.corpus} must be in (0, 1], not {r.share}")
        if r.corpus in MACHINE_TRANSCRIBED:
            raise ValueError(f"{r.corpus} has machine transcripts: it cannot be a dev corpus")
    out = SpeakerSplit()
    held: dict[tuple[str, str], list[Utterance]] = {}
    for u in utts:
        if u.source in MACHINE_TRANSCRIBED:
            out.train.append(u)
        elif any(r.holds_out(u) for r in rule_list):
            held.setdefault((u.source, u.speaker), []).append(u)
        elif split.is_dev(u):
            out.seen.append(u)
        else:
            out.train.append(u)
    for key in sorted(held):
        group = sorted(held[key], key=lambda u: _share_hash(u.audio.rsplit("/", 1)[-1]))
        keep = group if per_speaker is None else group[:per_speaker]
        out.unseen.extend(keep)
        out.unseen_dropped.extend(group[len(keep) :])
    return out
