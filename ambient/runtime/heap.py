"""glibc heap settings for a long-running process that must stay small (no-ops elsewhere, e.g. musl).

Two behaviours of glibc's malloc keep a streaming recognizer's resident set above what it holds:

- Freed memory stays resident until ``malloc_trim`` hands it back; after a long utterance the
  full-context pass alone leaves ~30 MB of attention buffers behind (:func:`release_memory`).
- Allocations above the mmap threshold (128 KiB) get their own mapping, returned to the system on
  free, but glibc raises that threshold to the size of each such block freed (up to 32 MiB), so after
  the first long utterance every later activation buffer comes from the heap and fragments it; and
  each thread that allocates gets an arena of its own (up to 8 per core), each fragmenting apart.
  :func:`tune_malloc` pins the threshold and caps the arenas at two, as ``MALLOC_MMAP_THRESHOLD_`` and
  ``MALLOC_ARENA_MAX`` would from the environment (where a user has set those, theirs win).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from typing import Any

__all__ = ["release_memory", "tune_malloc"]

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 256 * 1024
ARENA_MAX = 2


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    """The C library, if it is glibc (has ``malloc_trim`` and ``mallopt``); else None."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def release_memory() -> None:
    """Give freed heap memory back to the system (``malloc_trim(0)``)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.lru_cache(maxsize=1)
def tune_malloc() -> bool:
    """Pin the mmap threshold and cap the malloc arenas (call once, before threads start).

    Returns whether glibc took the settings (False off glibc or when the environment sets them)."""
    libc = _libc()
    if libc is None:
        return False
    done = True
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        done &= bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    if "MALLOC_ARENA_MAX" not in os.environ:
        done &= bool(libc.mallopt(_M_ARENA_MAX, ARENA_MAX))
    return done
