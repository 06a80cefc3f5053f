"""One client connection of the event server: its subscription, its bounded outgoing queue with
backpressure, and the per-client input rate limit.

Publishing never waits for a client. A line is written straight into the client's transport while
that transport holds less than :data:`HIGH_WATER` bytes; beyond that it waits in the client's
bounded queue (``socket.client_queue`` messages), which a flusher task moves into the transport as
it drains. When the queue is full a ``partial`` is dropped (the oldest queued partial first, so the
newest hypothesis survives); an important line that finds the queue full of important lines is an
overflow, and the server disconnects the client (:class:`Offer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import select
import socket
import time
from collections import deque

from ambient.publish.peercred import PeerCredentials
from ambient.publish.protocol import EVENT_TYPES, Message

__all__ = ["CLOSE_GRACE_S", "HIGH_WATER", "ClientConnection", "Offer", "TokenBucket", "encode_line", "peer_hung_up"]

#: Bytes a client transport may buffer before events wait in the client's own queue.
HIGH_WATER = 64 * 1024
#: How long a connection being closed may take to flush what it was sent before it is aborted.
CLOSE_GRACE_S = 5.0


def encode_line(msg: Message) -> bytes:
    """``msg`` as one wire line (UTF-8 JSON and ``\\n``)."""
    return msg.to_json().encode("utf-8") + b"\n"


class Offer(enum.Enum):
    """What became of a line handed to :meth:`ClientConnection.offer`."""

    SENT = enum.auto()  # written or queued
    DROPPED = enum.auto()  # a partial was dropped to make room (this one or an older one)
    OVERFLOW = enum.auto()  # an important message found no room: the client is too slow


class TokenBucket:
    """Per-client input rate limit; ``take()`` sleeps when the bucket is empty (backpressure)."""

    def __init__(self, *, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._last = time.monotonic()

    async def take(self) -> None:
        """Take one token, sleeping first while the bucket is empty."""
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            await asyncio.sleep((1.0 - self._tokens) / self._rate)
            self._tokens = 1.0
            self._last = time.monotonic()
        self._tokens -= 1.0


class ClientConnection:
    """One connection: its subscription, its bounded outgoing queue and the task that drains it."""

    def __init__(
        self,
        *,
        cid: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        cred: PeerCredentials | None,
        queue_limit: int,
    ) -> None:
        self.cid = cid
        self.reader = reader
        self.writer = writer
        self.transport = writer.transport
        self.cred = cred
        self.events: frozenset[str] = frozenset(EVENT_TYPES)
        self.closing = False
        self.bad_messages = 0
        self.dropped_partials = 0
        self._limit = queue_limit
        self._queue: deque[tuple[bytes, bool]] = deque()  # (line, droppable)
        self._queued_partials = 0
        self._wake = asyncio.Event()
        self._finishing = False
        self.flusher: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        """Lines waiting in the queue."""
        return len(self._queue)

    def offer(self, data: bytes, *, droppable: bool) -> Offer:
        """Hand one line to this client without ever waiting."""
        if self.closing or self.transport.is_closing():
            return Offer.SENT  # going away; its handler cleans up
        if not self._queue and self.transport.get_write_buffer_size() <= HIGH_WATER:
            self.transport.write(data)
            return Offer.SENT
        if len(self._queue) < self._limit:
            self._push(data, droppable)
            return Offer.SENT
        if self._queued_partials:
            self._evict_oldest_partial()
            self._push(data, droppable)
            self.dropped_partials += 1
            return Offer.DROPPED
        if droppable:
            self.dropped_partials += 1
            return Offer.DROPPED
        return Offer.OVERFLOW

    def _push(self, data: bytes, droppable: bool) -> None:
        self._queue.append((data, droppable))
        if droppable:
            self._queued_partials += 1
        self._wake.set()

    def _evict_oldest_partial(self) -> None:
        for i, (_, droppable) in enumerate(self._queue):
            if droppable:
                del self._queue[i]
                self._queued_partials -= 1
                return

    async def flush_loop(self) -> None:
        """Move queued lines into the transport whenever it drains below the high-water mark."""
        with contextlib.suppress(ConnectionError):  # the peer went away; its handler cleans up
            await self._flush()

    async def _flush(self) -> None:
        transport = self.transport
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self.writer.drain()  # waits while the transport is above high water
                if transport.is_closing():
                    return
                while self._queue and transport.get_write_buffer_size() <= HIGH_WATER:
                    data, droppable = self._queue.popleft()
                    if droppable:
                        self._queued_partials -= 1
                    transport.write(data)
            if self._finishing:
                self._close_transport()
                return

    def finish(self, last: bytes) -> None:
        """Graceful close: deliver what is queued, then ``last``, then close."""
        if self.closing:
            return
        self.closing = True
        self._finishing = True
        self._queue.append((last, False))  # may exceed the bound by this one line
        self._wake.set()

    def kill(self, last: bytes) -> None:
        """Close now: hand what is queued and then ``last`` to the transport (its buffer is not
        bounded, but the queue is), stop taking events, and close once that is flushed."""
        self.closing = True
        if self.flusher is not None:
            self.flusher.cancel()
        if not self.transport.is_closing():
            self.transport.write(b"".join(data for data, _ in self._queue) + last)
        self._queue.clear()
        self._queued_partials = 0
        self._close_transport()

    def abort(self) -> None:
        """Drop the connection now, queued lines included."""
        self.closing = True
        if self.flusher is not None:
            self.flusher.cancel()
        self.transport.abort()

    def _close_transport(self) -> None:
        """Close after the transport's buffer flushes; abort if the peer never takes it."""
        transport = self.transport
        if transport.is_closing():
            return
        transport.close()
        asyncio.get_running_loop().call_later(CLOSE_GRACE_S, transport.abort)


def peer_hung_up(sock: socket.socket | None) -> bool:
    """After EOF: did the peer close entirely (POLLHUP), or only shut down its sending side?"""
    if sock is None:
        return True
    try:
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        return any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in poller.poll(0))
    except (OSError, ValueError):
        return True
