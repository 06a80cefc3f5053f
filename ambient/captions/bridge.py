"""The thread that follows the daemon's socket and feeds the hub on the event loop.

It runs the reference client (:func:`ambient.publish.client.follow`): blocking reads, exponential
backoff while the daemon is down, a new ``hello`` after each reconnect. Each message is handed to
the loop with ``call_soon_threadsafe`` and applied there, so the hub never sees two threads. The
thread never waits for a browser: the hub only queues; a reader this fast keeps the daemon's own
per-client queue empty, and if it ever were slow the daemon would drop partials or this one
connection, never wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from pathlib import Path

import structlog

from ambient.captions.hub import Hub
from ambient.errors import AmbientError
from ambient.publish.client import follow
from ambient.publish.protocol import Final, Hello, Partial, Status

__all__ = ["DAEMON_EVENTS", "DaemonBridge"]

#: What the page needs from the daemon (``speech_start`` carries nothing it shows).
DAEMON_EVENTS = ("partial", "final", "status")

_log = structlog.get_logger("ambient.captions")


class DaemonBridge:
    """Follow the daemon at ``path`` in a daemon thread, applying what it says to ``hub`` on ``loop``.

    ``fatal(message)`` is called on the loop when following cannot go on (the daemon refuses this
    user, the socket is not accessible).
    """

    def __init__(self, path: Path, hub: Hub, loop: asyncio.AbstractEventLoop, *, fatal: Callable[[str], None]) -> None:
        self.path = path
        self._hub = hub
        self._loop = loop
        self._fatal = fatal
        self._thread = threading.Thread(target=self._run, name="captions-daemon", daemon=True)

    def start(self) -> None:
        """Start following."""
        self._thread.start()

    def _post(self, fn: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: the process is exiting
            self._loop.call_soon_threadsafe(fn, *args)

    def _run(self) -> None:
        hub = self._hub
        try:
            for item in follow(
                self.path,
                events=DAEMON_EVENTS,
                note=lambda msg: _log.info("daemon connection", note=msg),
                lost=lambda reason: self._post(hub.daemon_lost, reason),
            ):
                msg = item.message
                if isinstance(msg, Partial):
                    self._post(hub.partial, msg.utterance_id, msg.text, msg.start)
                elif isinstance(msg, Final):
                    self._post(hub.final, msg.utterance_id, msg.text, msg.start, msg.end)
                elif isinstance(msg, Status):
                    self._post(hub.status, msg.state, msg.detail)
                elif isinstance(msg, Hello):
                    _log.info("daemon connected", socket=str(self.path), instance=msg.instance, model=msg.model)
                    self._post(hub.daemon_connected)
        except AmbientError as e:
            self._post(hub.daemon_lost, str(e))
            self._post(self._fatal, str(e))
