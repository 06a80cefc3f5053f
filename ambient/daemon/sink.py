"""Where the daemon's events go: first the durable event log, then the socket.

``EventSink.emit`` may be called from any thread (the recognition worker, the event loop). Under
one lock it appends the event to the log (written and flushed, fsynced per policy, *before* any
client can see it) and then schedules ``EventServer.publish`` on the event loop, so the order of
events is the same in the log and on the wire. Disk I/O happens on the calling thread, which is
the recognition worker for transcripts: the event loop serving clients never waits for a disk.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ambient.publish.eventlog import EventLog
from ambient.publish.protocol import ServerEvent, Status, StatusState
from ambient.publish.server import EventServer

__all__ = ["EventSink"]

Counters = Callable[[], dict[str, int | float]]


class EventSink:
    """Log-then-publish, in one order, from any thread."""

    def __init__(self, *, server: EventServer, log: EventLog, counters: Counters) -> None:
        self._server = server
        self._log = log
        self._counters = counters
        self._lock = threading.RLock()  # the log's health callback re-enters via publish_only()

    @property
    def log(self) -> EventLog:
        """The event log in use."""
        return self._log

    def emit(self, event: ServerEvent) -> None:
        """Append ``event`` to the log, then publish it (never blocks on clients)."""
        with self._lock:
            self._log.append(event)  # failures are reported through the log's health callback
            self._server.publish_threadsafe(event)

    def status(self, state: StatusState, detail: str = "") -> Status:
        """Emit a ``status`` event with the current counters; returns it."""
        event = Status(state=state, detail=detail, time=time.time(), counters=self._counters())
        self.emit(event)
        return event

    def publish_only(self, event: ServerEvent) -> None:
        """Publish without logging (for news about the log itself, which cannot be logged there)."""
        with self._lock:
            self._server.publish_threadsafe(event)
