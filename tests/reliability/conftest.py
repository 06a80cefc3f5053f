"""Fixtures for the reliability and security tests: short working directories and a speech file
with several utterances (synthesized at test time)."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# The suite runs with --import-mode=importlib, which puts no test directory on sys.path. These tests
# share `reliability_helpers` (this directory) and reuse `daemon_helpers` (tests/daemon).
_HERE = Path(__file__).resolve().parent
for _d in (_HERE, _HERE.parent / "daemon"):
    if str(_d) not in sys.path:
        sys.path.insert(0, str(_d))

#: Spoken commands of the multi-utterance file (a random-weight model transcribes them as garbage;
#: the tests check the event flow, never the words).
SENTENCES = (
    "turn on the kitchen light",
    "what is the weather like tomorrow",
    "set a timer for ten minutes",
    "close the garage door",
)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short directory under /tmp (Unix socket paths must stay under 108 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="amb-r-", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def speech_file(
    tmp_path_factory: pytest.TempPathFactory, synth: Callable[..., Path], compose: Callable[..., Path]
) -> Path:
    """About 12 s: four utterances (espeak-ng and flite voices) separated by 1 s of silence."""
    parts: list[Path | float] = [0.5]
    for i, text in enumerate(SENTENCES):
        parts += [synth(text, "espeak-ng" if i % 2 == 0 else "flite"), 1.0]
    return compose(tmp_path_factory.mktemp("speech") / "four.wav", parts)
