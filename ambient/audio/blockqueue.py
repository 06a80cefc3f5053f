"""A bounded hand-off queue between an audio producer and the recognition worker.

Two ways in:

- :meth:`BlockQueue.offer` for the PortAudio callback: never waits. When the queue is full the
  *oldest* block is dropped and counted, so after a stall the worker resumes with fresh audio
  instead of seconds of backlog. While :attr:`BlockQueue.lazy` is set, ``offer`` does not wake a
  waiting consumer: the consumer collects what arrived when its own (short) timeout expires. On
  silence this saves a thread wake-up per block, the largest idle cost after the audio stack's own.
- :meth:`BlockQueue.put` for file and pipe readers: waits for room (backpressure), because
  dropping parts of a file or a pipe would silently lose data that nobody else buffers.

Memory is bounded by ``capacity`` items whatever the consumer does. The lock is held only for a
few list operations, never across I/O or while waiting, so the callback is never delayed by the
consumer.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

__all__ = ["BlockQueue"]

_T = TypeVar("_T")


class BlockQueue(Generic[_T]):
    """Bounded FIFO with drop-oldest ``offer``, blocking ``put`` and timed ``get``."""

    def __init__(self, *, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._items: deque[_T] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._dropped = 0
        #: When True, :meth:`offer` appends without waking the consumer (see the module docstring).
        self.lazy = False

    @property
    def dropped(self) -> int:
        """Items dropped by :meth:`offer` on overflow since creation."""
        return self._dropped

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, item: _T, *, wake: bool | None = None) -> bool:
        """Append without waiting; on overflow drop the oldest item. Returns False if one was dropped.

        ``wake``: wake a waiting consumer; None (the default) wakes it unless :attr:`lazy` is set.
        """
        with self._cond:
            overflow = len(self._items) >= self.capacity
            if overflow:
                self._items.popleft()
                self._dropped += 1
            self._items.append(item)
            if wake or (wake is None and not self.lazy):
                self._cond.notify()
        return not overflow

    def put(self, item: _T, *, timeout: float | None = None) -> bool:
        """Append, waiting up to ``timeout`` seconds (None: forever) for room. Returns False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while len(self._items) >= self.capacity:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            self._items.append(item)
            self._cond.notify_all()
        return True

    def get(self, *, timeout: float | None = None) -> _T | None:
        """Remove and return the oldest item, waiting up to ``timeout`` seconds; None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            item = self._items.popleft()
            self._cond.notify_all()  # room for a waiting put()
            return item
