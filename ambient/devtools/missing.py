"""What a test does when a part of the machine it needs is missing (a synthesis engine, PulseAudio).

On a developer's machine it is skipped, with the reason and how to install the part. In CI
(``CI=true``, as GitHub Actions, GitLab and most runners set it) it fails instead: a bare runner must
not silently drop the end-to-end tests that need those parts.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["in_ci", "missing_part"]


def in_ci() -> bool:
    """True when the ``CI`` environment variable says so (``true``, any case, or ``1``)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def missing_part(why: str) -> NoReturn:
    """Skip the calling test because ``why``; in CI (:func:`in_ci`) fail it instead."""
    if in_ci():
        pytest.fail(f"{why} (CI=true: a missing part fails the test instead of skipping it)", pytrace=False)
    pytest.skip(why)
