"""What the caption page shows, and the fan-out to browsers.

The hub holds the page's state (the newest finals, the current partial, the daemon's connection
and status) and one :class:`PageClient` per open websocket. Every update is serialized once and
offered to each client's bounded queue; nothing here ever waits for a browser:

- a partial replaces the client's queued partial (only the newest hypothesis matters);
- a final, status or connection change that finds the queue full marks the client too slow: it is
  dropped (its writer aborts the connection) and counted, and other clients are unaffected.

Messages to the page (JSON objects, ``type`` first):

- ``snapshot``: on connect: ``finals`` (list of ``{id, text, start, end}``), ``partial``
  (``{id, text, start}`` or null), ``daemon`` (``connected`` / ``down``), ``status``, ``detail``;
- ``partial`` ``{id, text, start}``; ``final`` ``{id, text, start, end}`` (an empty final only ends
  the partial and is not kept);
- ``status`` ``{state, detail}``: a daemon ``status`` event;
- ``daemon`` ``{state: connected | down, detail}``: the captions process's connection to the daemon.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Counters", "Hub", "PageClient"]

#: Finals kept for a page that connects later (and for its copy/download).
HISTORY = 500
#: Messages queued per browser before it counts as too slow.
CLIENT_QUEUE = 64


@dataclass
class Counters:
    """Running counts, served at ``/stats`` and logged when they change."""

    clients: int = 0
    connections: int = 0
    refused_too_many: int = 0
    refused_host: int = 0
    dropped_too_slow: int = 0
    dropped_send_timeout: int = 0
    dropped_bad_frames: int = 0
    daemon_connects: int = 0
    daemon_events: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return asdict(self)


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class PageClient:
    """One browser's queue of serialized messages; its writer drains it (see :mod:`web`)."""

    def __init__(self, *, limit: int = CLIENT_QUEUE) -> None:
        self._limit = limit
        self._queue: deque[tuple[bool, str]] = deque()  # (is_partial, json)
        self._ready = asyncio.Event()
        self.too_slow = False
        #: Called once when the client is found too slow (its writer may be stuck in a send).
        self.on_drop: Callable[[], object] = lambda: None

    def offer(self, text: str, *, partial: bool) -> bool:
        """Queue one message; returns False when the client is too slow (nothing is queued then).
        A partial replaces a partial still waiting in the queue (returns True)."""
        if partial:
            for i, (is_partial, _) in enumerate(self._queue):
                if is_partial:
                    del self._queue[i]
                    self._queue.append((True, text))
                    self._ready.set()
                    return True
        if len(self._queue) >= self._limit:
            if partial:
                return True  # the queue holds only important messages; this partial is dropped
            self.too_slow = True
            self._ready.set()
            self.on_drop()
            return False
        self._queue.append((partial, text))
        self._ready.set()
        return True

    async def next(self) -> str | None:
        """The next message to send; None once the client was found too slow."""
        while not self._queue and not self.too_slow:
            self._ready.clear()
            await self._ready.wait()
        if self.too_slow:
            return None
        return self._queue.popleft()[1]

    def pending(self) -> int:
        """Messages waiting."""
        return len(self._queue)


@dataclass
class _State:
    finals: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    partial: dict[str, Any] | None = None
    daemon: str = "down"
    status: str = "connecting"
    detail: str = ""


class Hub:
    """Page state and the set of connected browsers. Call its methods on the event loop only."""

    def __init__(self, *, client_queue: int = CLIENT_QUEUE) -> None:
        self.counters = Counters()
        self._state = _State()
        self._clients: set[PageClient] = set()
        self._client_queue = client_queue

    # --------------------------------------------------------------- browsers

    def add(self) -> PageClient:
        """A new browser: it gets the snapshot first."""
        client = PageClient(limit=self._client_queue)
        client.offer(self.snapshot(), partial=False)
        self._clients.add(client)
        self.counters.connections += 1
        self.counters.clients = len(self._clients)
        return client

    def remove(self, client: PageClient) -> None:
        """Forget a browser (idempotent)."""
        self._clients.discard(client)
        self.counters.clients = len(self._clients)

    def __len__(self) -> int:
        return len(self._clients)

    def snapshot(self) -> str:
        """The ``snapshot`` message for a browser that connects now."""
        s = self._state
        return _dump(
            {
                "type": "snapshot",
                "finals": list(s.finals),
                "partial": s.partial,
                "daemon": s.daemon,
                "status": s.status,
                "detail": s.detail,
            }
        )

    def _broadcast(self, msg: dict[str, Any], *, partial: bool = False) -> None:
        text = _dump(msg)
        for client in list(self._clients):
            if not client.offer(text, partial=partial):
                self.counters.dropped_too_slow += 1
                self.remove(client)

    # --------------------------------------------------------------- from the daemon

    def daemon_connected(self) -> None:
        """A connection to the daemon (its ``hello``); the daemon is listening until it says otherwise."""
        s = self._state
        s.daemon, s.status, s.detail = "connected", "listening", ""
        self.counters.daemon_connects += 1
        self._broadcast({"type": "daemon", "state": "connected", "detail": ""})

    def daemon_lost(self, reason: str) -> None:
        """No connection to the daemon (not running, restarting, or refused); sent on changes only."""
        s = self._state
        s.partial = None
        if s.daemon == "down" and s.detail == reason:
            return
        s.daemon, s.detail = "down", reason
        self._broadcast({"type": "daemon", "state": "down", "detail": reason})

    def partial(self, utterance_id: str, text: str, start: float) -> None:
        """The current hypothesis of an utterance in progress."""
        self.counters.daemon_events += 1
        item = {"id": utterance_id, "text": text, "start": start}
        self._state.partial = item
        self._broadcast({"type": "partial", **item}, partial=True)

    def final(self, utterance_id: str, text: str, start: float, end: float) -> None:
        """The transcript of one utterance (an empty one only clears the partial)."""
        self.counters.daemon_events += 1
        self._state.partial = None
        item = {"id": utterance_id, "text": text, "start": start, "end": end}
        if text:
            self._state.finals.append(item)
        self._broadcast({"type": "final", **item})

    def status(self, state: str, detail: str) -> None:
        """A daemon ``status`` event."""
        self.counters.daemon_events += 1
        s = self._state
        s.status, s.detail = state, detail
        self._broadcast({"type": "status", "state": state, "detail": detail})
