"""Training manifests: one JSON object per line, one line per utterance.

Each line holds ``audio`` (path), ``text`` (normalized transcript), ``duration`` (seconds, measured
from the file), ``speaker``, ``source`` and optionally ``raw_text`` (the transcript before
normalization). Unknown keys are ignored on read so that manifests can grow fields.

Audio paths: a relative ``audio`` is relative to the folder holding the manifest; an absolute one
is used as is. :func:`read_manifest` resolves every path to an absolute one, and
:func:`write_manifest` stores audio that lies under the manifest's folder as a relative path (so a
synthesized corpus can be moved as a whole) and anything else as an absolute path.
Writes are atomic: a reader never sees a half-written manifest.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ambient.errors import AmbientError

__all__ = [
    "ManifestError",
    "Utterance",
    "atomic_write_text",
    "iter_manifest",
    "read_manifest",
    "utterance_to_json",
    "write_manifest",
]


class ManifestError(AmbientError):
    """A manifest that cannot be read: missing file, bad JSON, missing or mistyped fields."""


@dataclass(frozen=True)
class Utterance:
    """One training or evaluation utterance.

    Attributes:
        audio: path of a 16 kHz mono audio file (absolute once read from a manifest).
        text: normalized transcript (``normalize_text``).
        duration: length in seconds.
        speaker: speaker id (``cathy``, ``fsdd:jackson``, ``piper:joe``, ...).
        source: corpus name (``cathy_arctic``, ``synth-espeak``, ...).
        raw_text: transcript before normalization, if known.
    """

    audio: str
    text: str
    duration: float
    speaker: str
    source: str
    raw_text: str | None = None


_REQUIRED: tuple[tuple[str, type], ...] = (
    ("audio", str),
    ("text", str),
    ("duration", float),
    ("speaker", str),
    ("source", str),
)


def _parse_line(obj: Any, base: Path, where: str) -> Utterance:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected a JSON object")
    values: dict[str, Any] = {}
    for key, kind in _REQUIRED:
        v = obj.get(key)
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, kind):
            raise ManifestError(f"{where}: field '{key}' missing or not a {kind.__name__}")
        values[key] = v
    raw = obj.get("raw_text")
    if raw is not None and not isinstance(raw, str):
        raise ManifestError(f"{where}: field 'raw_text' is not a string")
    audio = Path(values["audio"])
    if not audio.is_absolute():
        audio = base / audio
    values["audio"] = os.path.normpath(audio)
    return Utterance(**values, raw_text=raw)


def iter_manifest(path: str | Path) -> Iterator[Utterance]:
    """Utterances of a manifest one by one, audio paths resolved (see the module docstring).

    Blank lines are skipped. Raises :class:`ManifestError` naming the file and line on bad input.
    """
    p = Path(path)
    base = p.resolve().parent
    try:
        f = p.open(encoding="utf-8")
    except OSError as e:
        raise ManifestError(f"cannot read manifest {p}: {e.strerror or e}") from None
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{p}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{where}: not JSON ({e.msg})") from None
            yield _parse_line(obj, base, where)


def read_manifest(path: str | Path) -> list[Utterance]:
    """All utterances of a JSON-lines manifest; audio paths resolved to absolute paths."""
    return list(iter_manifest(path))


def utterance_to_json(utt: Utterance, *, base: Path | None = None) -> str:
    """One manifest line (no newline). With ``base``, audio under ``base`` is written relative to it."""
    audio = utt.audio
    if base is not None:
        try:
            audio = Path(os.path.abspath(audio)).relative_to(base).as_posix()
        except ValueError:
            audio = os.path.abspath(audio)
    obj: dict[str, Any] = {
        "audio": audio,
        "text": utt.text,
        "duration": round(utt.duration, 4),
        "speaker": utt.speaker,
        "source": utt.source,
    }
    if utt.raw_text is not None:
        obj["raw_text"] = utt.raw_text
    return json.dumps(obj, ensure_ascii=False)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(path: str | Path, utts: Iterable[Utterance]) -> int:
    """Write ``utts`` as JSON lines to ``path`` atomically; returns the number of lines written.

    Audio paths under the manifest's folder are stored relative to it, others absolute.
    """
    p = Path(path)
    base = Path(os.path.abspath(p.parent))
    lines = [utterance_to_json(u, base=base) for u in utts]
    atomic_write_text(p, "".join(line + "\n" for line in lines))
    return len(lines)
