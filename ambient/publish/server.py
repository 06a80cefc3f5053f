"""The local event server: an asyncio Unix-socket server that fans events out to clients.

Publishing never waits for a client. Each event is serialized once and written straight into a
client's transport while that transport holds less than ``HIGH_WATER`` bytes; beyond that it
waits in the client's bounded queue (``socket.client_queue`` messages). When the queue is full a
``partial`` is dropped (the oldest queued partial first, so the newest hypothesis survives) and
counted; when an important event (anything but a partial) finds the queue full of important
events, the client is disconnected with ``error too_slow`` and ``bye too_slow``. Other clients
are never affected by one client's speed, input or misbehaviour.

Client input is read line by line with a bounded buffer (``socket.max_message_bytes``); a longer
line gets ``error too_long`` and is discarded up to its newline without buffering it. Input is
rate limited per client (token bucket) so a flood cannot starve the loop.

This module is the server's lifecycle (start, publish, close) and its handling of connections and
requests; a client's queue and backpressure are :mod:`ambient.publish.connection`, the counters
:mod:`ambient.publish.counters`, the socket file :mod:`ambient.publish.socket_file`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import structlog
from structlog.typing import FilteringBoundLogger

from ambient import __version__
from ambient.config import SocketConfig
from ambient.errors import AmbientError
from ambient.publish.connection import (
    CLOSE_GRACE_S,
    HIGH_WATER,
    ClientConnection,
    Offer,
    TokenBucket,
    encode_line,
    peer_hung_up,
)
from ambient.publish.counters import ServerCounters, ServerStats
from ambient.publish.peercred import (
    PeerCredentials,
    is_allowed,
    peer_credentials,
    peercred_supported,
    user_groups,
)
from ambient.publish.protocol import (
    EVENT_TYPES,
    Bye,
    ErrorCode,
    ErrorMessage,
    Final,
    Hello,
    Message,
    Partial,
    Ping,
    Pong,
    ProtocolError,
    ServerEvent,
    SpeechStart,
    Status,
    Subscribe,
    Subscribed,
    encode_event,
    parse_client_message,
)
from ambient.publish.socket_file import SocketFile

__all__ = ["EventServer", "HelloInfo", "ServerStats"]

#: Client input rate limit: sustained messages per second and burst size.
_RATE_PER_S = 100.0
_BURST = 200.0
#: How long ``close()`` waits for clients to take their ``bye`` before aborting them.
_SHUTDOWN_TIMEOUT_S = 2.0


@dataclass(frozen=True, kw_only=True)
class HelloInfo:
    """What the daemon tells each client in ``hello``."""

    model: str
    sample_rate: int
    version: str = __version__


class EventServer:
    """Serves events to local clients over a Unix socket (see docs/protocol.md).

    ``publish()`` is synchronous and never blocks; call it from the event loop's thread, or
    ``publish_threadsafe()`` from any other thread. The daemon writes an event to the event log
    first and publishes it second.
    """

    def __init__(
        self,
        cfg: SocketConfig,
        *,
        hello: HelloInfo,
        logger: FilteringBoundLogger | None = None,
    ) -> None:
        self._cfg = cfg
        self._hello = hello
        self._log: FilteringBoundLogger = logger if logger is not None else structlog.get_logger("ambient.publish")
        self._instance = uuid.uuid4().hex[:12]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._server: asyncio.AbstractServer | None = None
        self._file = SocketFile(cfg, logger=self._log)
        self._closed = False
        self._clients: dict[int, ClientConnection] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._next_cid = 1
        self._seq = 0
        self._counts = ServerCounters()
        self._check_peers = cfg.allow_uids is not None or cfg.allow_gids is not None

    # ------------------------------------------------------------------ public surface

    @property
    def path(self) -> Path:
        """The socket path."""
        return self._cfg.path

    @property
    def instance(self) -> str:
        """Random id of this server instance (sent in ``hello``)."""
        return self._instance

    @property
    def client_count(self) -> int:
        """Clients connected now (not counting connections being closed)."""
        return sum(1 for c in self._clients.values() if not c.closing)

    @property
    def stats(self) -> ServerStats:
        """A snapshot of the counters."""
        return self._counts.snapshot(clients=self.client_count, last_seq=self._seq)

    def update_hello(self, hello: HelloInfo) -> None:
        """New ``hello`` contents for clients connecting from now on (e.g. after a model reload)."""
        self._hello = hello

    async def start(self) -> None:
        """Create the socket and start accepting clients.

        Raises :class:`AmbientError` when another daemon serves the path, the path is not a
        socket, the group does not exist, or the socket cannot be created.
        """
        if self._server is not None or self._closed:
            raise RuntimeError("EventServer.start() may be called once")
        if self._check_peers and not peercred_supported():
            raise AmbientError("socket.allow_uids/allow_gids need SO_PEERCRED, which this platform lacks")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        sock = self._file.bind()
        try:
            self._server = await asyncio.start_unix_server(self._handle, sock=sock, limit=self._cfg.max_message_bytes)
        except BaseException:
            self._file.release_lock()
            raise
        self._log.info(
            "event socket listening", path=str(self._cfg.path), mode=f"{self._cfg.mode:04o}", instance=self._instance
        )

    def publish(self, event: ServerEvent) -> None:
        """Stamp ``event`` with the next ``seq`` and hand it to every subscribed client.

        Never blocks. Must run on the event loop's thread (``publish_threadsafe`` otherwise).
        """
        if not isinstance(event, (SpeechStart, Partial, Final, Status)):
            raise TypeError(f"not a broadcast event: {type(event).__name__}")
        if self._loop_thread is not None and threading.get_ident() != self._loop_thread:
            raise RuntimeError("EventServer.publish() called off the event loop thread; use publish_threadsafe()")
        if self._closed:
            self._log.debug("event after close dropped", type=event.TYPE)
            return
        self._seq += 1
        self._counts.events_published += 1
        data = encode_event(event, seq=self._seq)
        droppable = isinstance(event, Partial)
        for client in list(self._clients.values()):
            if client.closing or event.TYPE not in client.events:
                continue
            self._deliver(client, data, droppable=droppable)

    def publish_threadsafe(self, event: ServerEvent) -> None:
        """``publish()`` from any thread: schedules it on the server's loop and returns at once."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("EventServer.publish_threadsafe() before start()")
        try:
            loop.call_soon_threadsafe(self.publish, event)
        except RuntimeError:  # the loop is closed: the daemon is shutting down
            self._log.debug("event after loop close dropped", type=event.TYPE)

    async def close(self, reason: str = "shutdown") -> None:
        """Send ``bye`` to every client after what it already has queued, close all connections,
        stop listening and remove the socket file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        bye = encode_line(Bye(reason=reason))
        for client in list(self._clients.values()):
            client.finish(bye)
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=_SHUTDOWN_TIMEOUT_S)
        for client in list(self._clients.values()):
            self._log.info("client aborted at shutdown", client=client.cid, queued=client.queued)
            client.abort()
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=_SHUTDOWN_TIMEOUT_S)
        for task in list(self._handlers):  # a refused peer that never reads, or a hung NSS lookup
            task.cancel()
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout=_SHUTDOWN_TIMEOUT_S)
        self._file.remove()
        self._log.info("event socket closed", path=str(self._cfg.path), reason=reason)

    # ------------------------------------------------------------------ connections

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        except Exception as e:  # a bug here must not take the server down, but must be seen
            self._log.exception("client handler failed", error=repr(e))
            writer.transport.abort()
        finally:
            if task is not None:
                self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        transport = writer.transport
        transport.set_write_buffer_limits(high=HIGH_WATER)
        try:
            cred = peer_credentials(writer.get_extra_info("socket"))
        except OSError:
            transport.abort()  # gone before we looked
            return
        who = {"pid": cred.pid, "uid": cred.uid, "gid": cred.gid} if cred is not None else {}
        if self._check_peers and not await self._allowed(cred):
            self._counts.rejected_forbidden += 1
            self._log.warning("client refused by allow-list", **who)
            msg = "peer credentials not allowed by socket.allow_uids/allow_gids"
            await self._reject(writer, ErrorMessage(code=ErrorCode.FORBIDDEN, message=msg), reason="forbidden")
            return
        if self._closed:
            await self._reject(writer, None, reason="shutdown")
            return
        if self.client_count >= self._cfg.max_clients:
            self._counts.rejected_full += 1
            self._log.warning("client refused: too many clients", max_clients=self._cfg.max_clients, **who)
            msg = f"too many clients (max {self._cfg.max_clients})"
            error = ErrorMessage(code=ErrorCode.TOO_MANY_CLIENTS, message=msg)
            await self._reject(writer, error, reason="too_many_clients")
            return

        cid = self._next_cid
        self._next_cid += 1
        client = ClientConnection(cid=cid, reader=reader, writer=writer, cred=cred, queue_limit=self._cfg.client_queue)
        hello = Hello(
            version=self._hello.version,
            model=self._hello.model,
            sample_rate=self._hello.sample_rate,
            time=time.time(),
            instance=self._instance,
            last_seq=self._seq,
        )
        client.offer(encode_line(hello), droppable=False)  # first line on the wire, before any event
        self._clients[cid] = client
        self._counts.connections += 1
        client.flusher = asyncio.create_task(client.flush_loop())
        self._log.info("client connected", client=cid, clients=self.client_count, **who)
        reason = "closed"
        try:
            reason = await self._read_loop(client)
        finally:
            self._clients.pop(cid, None)
            if client.flusher is not None and not client.flusher.done():
                client.flusher.cancel()
            if not transport.is_closing():
                transport.close()
            self._log.info(
                "client disconnected",
                client=cid,
                reason=reason,
                dropped_partials=client.dropped_partials,
                bad_messages=client.bad_messages,
            )

    async def _allowed(self, cred: PeerCredentials | None) -> bool:
        if cred is None:
            return False
        cfg = self._cfg
        if is_allowed(cred, allow_uids=cfg.allow_uids, allow_gids=cfg.allow_gids, allow_root=cfg.allow_root):
            return True
        if cfg.allow_gids is None:
            return False
        groups = await asyncio.to_thread(user_groups, cred.uid, cred.gid)  # NSS may block
        return is_allowed(cred, allow_uids=None, allow_gids=cfg.allow_gids, allow_root=False, groups=groups)

    async def _reject(self, writer: asyncio.StreamWriter, error: ErrorMessage | None, *, reason: str) -> None:
        """Tell a refused peer why, give it a moment to read that, and close."""
        data = (encode_line(error) if error is not None else b"") + encode_line(Bye(reason=reason))
        writer.write(data)
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), timeout=CLOSE_GRACE_S)
        except (asyncio.TimeoutError, OSError):
            pass
        finally:
            writer.transport.abort()  # no-op when already closed

    async def _read_loop(self, client: ClientConnection) -> str:
        """Serve one client's requests until it goes away; returns why it ended."""
        reader = client.reader
        bucket = TokenBucket(rate=_RATE_PER_S, burst=_BURST)
        while not client.closing:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as e:
                if e.partial.strip() and not client.closing:
                    self._handle_line(client, e.partial)  # last message without its newline
                break
            except asyncio.LimitOverrunError as e:
                if not await self._discard_long_line(client, e.consumed):
                    break
                continue
            except OSError as e:
                return f"read error: {e.strerror or e}"
            await bucket.take()
            self._handle_line(client, line)
            await asyncio.sleep(0)  # a client with a full buffer must not monopolize the loop
        if client.closing:
            return "closed by server"
        # EOF: a peer that only shut down its sending side still receives events (`nc -N`).
        if peer_hung_up(client.writer.get_extra_info("socket")):
            return "peer closed"
        await client.writer.wait_closed()
        return "peer closed"

    async def _discard_long_line(self, client: ClientConnection, consumed: int) -> bool:
        """Skip an over-long line without buffering it; False if the peer went away meanwhile."""
        self._bad_message(client, "message too long", code=ErrorCode.TOO_LONG)
        limit = self._cfg.max_message_bytes
        self._reply(client, ErrorMessage(code=ErrorCode.TOO_LONG, message=f"message longer than {limit} bytes"))
        reader = client.reader
        while not client.closing:
            try:
                await reader.readexactly(consumed)
                await reader.readuntil(b"\n")  # the rest of the line, now within the limit
                return True
            except asyncio.LimitOverrunError as e:
                consumed = e.consumed
            except (asyncio.IncompleteReadError, OSError):
                return False
        return False

    def _handle_line(self, client: ClientConnection, line: bytes) -> None:
        if not line.strip():
            return  # blank lines are allowed as keep-alives
        try:
            msg = parse_client_message(line)
        except ProtocolError as e:
            self._bad_message(client, str(e), code=e.code)
            self._reply(client, ErrorMessage(code=e.code, message=str(e)))
            return
        if isinstance(msg, Ping):
            self._reply(client, Pong(id=msg.id, time=time.time()))
        elif isinstance(msg, Subscribe):
            wanted = set(EVENT_TYPES) if msg.events is None else set(msg.events)
            events = tuple(t for t in EVENT_TYPES if t in wanted)
            ignored = tuple(dict.fromkeys(t for t in msg.events or () if t not in EVENT_TYPES))
            client.events = frozenset(events)
            self._log.debug("client subscribed", client=client.cid, events=events, ignored=ignored)
            self._reply(client, Subscribed(events=events, ignored=ignored))

    def _bad_message(self, client: ClientConnection, detail: str, *, code: str) -> None:
        client.bad_messages += 1
        self._counts.bad_messages += 1
        log = self._log.warning if client.bad_messages == 1 else self._log.debug
        log("bad client message", client=client.cid, code=code, detail=detail, count=client.bad_messages)

    def _reply(self, client: ClientConnection, msg: Message) -> None:
        self._deliver(client, encode_line(msg), droppable=False)

    def _deliver(self, client: ClientConnection, data: bytes, *, droppable: bool) -> None:
        result = client.offer(data, droppable=droppable)
        if result is Offer.DROPPED:
            self._counts.partials_dropped += 1
        elif result is Offer.OVERFLOW:
            self._counts.disconnected_slow += 1
            self._log.warning(
                "client too slow, disconnecting",
                client=client.cid,
                queued=client.queued,
                dropped_partials=client.dropped_partials,
            )
            msg = "client did not read fast enough; an event could not be queued"
            client.kill(
                encode_line(ErrorMessage(code=ErrorCode.TOO_SLOW, message=msg)) + encode_line(Bye(reason="too_slow"))
            )
