"""The hang guard shared by every wait of the test and benchmark support code."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["WAIT_S", "wait_until"]

#: Guards against hangs only: no test or benchmark asserts on how long something took.
WAIT_S = 60.0


def wait_until(
    cond: Callable[[], bool], *, timeout: float = WAIT_S, what: str = "condition", poll: float = 0.05
) -> None:
    """Poll ``cond`` every ``poll`` s until it holds; ``AssertionError`` naming ``what`` after ``timeout`` s.

    ``poll=0`` suits a ``cond`` that takes its own time (a CPU-use sample over half a second)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)
