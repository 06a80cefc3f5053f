"""Fixtures for the daemon tests."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# The suite runs with --import-mode=importlib, which puts no test directory on sys.path; the
# tests here share helpers through this directory's uniquely named `daemon_helpers` module.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short directory under /tmp (Unix socket paths must stay under 108 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="amb-d-", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
