"""The local event server: an asyncio Unix-socket server that fans events out to clients.

Publishing never waits for a client. Each event is serialized once and written straight into a
client's transport while that transport holds less than ``_HIGH_WATER`` bytes; beyond that it
waits in the client's bounded queue (``socket.client_queue`` messages). When the queue is full a
``partial`` is dropped (the oldest queued partial first, so the newest hypothesis survives) and
counted; when an important event (anything but a partial) finds the queue full of important
events, the client is disconnected with ``error too_slow`` and ``bye too_slow``. Other clients
are never affected by one client's speed, input or misbehaviour.

Client input is read line by line with a bounded buffer (``socket.max_message_bytes``); a longer
line gets ``error too_long`` and is discarded up to its newline without buffering it. Input is
rate limited per client (token bucket) so a flood cannot starve the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import grp
import os
import select
import socket
import stat
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import structlog
from structlog.typing import FilteringBoundLogger

from ambient import __version__
from ambient.config import SocketConfig
from ambient.errors import AmbientError
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

__all__ = ["EventServer", "HelloInfo", "ServerStats"]

#: Bytes a client transport may buffer before events wait in the client's own queue.
_HIGH_WATER = 64 * 1024
#: Client input rate limit: sustained messages per second and burst size.
_RATE_PER_S = 100.0
_BURST = 200.0
#: How long a connection being closed may take to flush what it was sent before it is aborted.
_CLOSE_GRACE_S = 5.0
#: How long ``close()`` waits for clients to take their ``bye`` before aborting them.
_SHUTDOWN_TIMEOUT_S = 2.0
_LISTEN_BACKLOG = 64


@dataclass(frozen=True, kw_only=True)
class HelloInfo:
    """What the daemon tells each client in ``hello``."""

    model: str
    sample_rate: int
    version: str = __version__


@dataclass(frozen=True, kw_only=True)
class ServerStats:
    """Counters since ``start()``."""

    clients: int  # connected now
    connections: int  # accepted and greeted
    rejected_forbidden: int
    rejected_full: int
    disconnected_slow: int
    partials_dropped: int
    events_published: int
    bad_messages: int
    last_seq: int


class _Offer(enum.Enum):
    SENT = enum.auto()  # written or queued
    DROPPED = enum.auto()  # a partial was dropped to make room (this one or an older one)
    OVERFLOW = enum.auto()  # an important message found no room: the client is too slow


class _TokenBucket:
    """Per-client input rate limit; ``take()`` sleeps when the bucket is empty (backpressure)."""

    def __init__(self, *, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._last = time.monotonic()

    async def take(self) -> None:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            await asyncio.sleep((1.0 - self._tokens) / self._rate)
            self._tokens = 1.0
            self._last = time.monotonic()
        self._tokens -= 1.0


class _Client:
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
        return len(self._queue)

    def offer(self, data: bytes, *, droppable: bool) -> _Offer:
        """Hand one line to this client without ever waiting."""
        if self.closing or self.transport.is_closing():
            return _Offer.SENT  # going away; its handler cleans up
        if not self._queue and self.transport.get_write_buffer_size() <= _HIGH_WATER:
            self.transport.write(data)
            return _Offer.SENT
        if len(self._queue) < self._limit:
            self._push(data, droppable)
            return _Offer.SENT
        if self._queued_partials:
            self._evict_oldest_partial()
            self._push(data, droppable)
            self.dropped_partials += 1
            return _Offer.DROPPED
        if droppable:
            self.dropped_partials += 1
            return _Offer.DROPPED
        return _Offer.OVERFLOW

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
                while self._queue and transport.get_write_buffer_size() <= _HIGH_WATER:
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
        asyncio.get_running_loop().call_later(_CLOSE_GRACE_S, transport.abort)


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
        self._lock_fd: int | None = None
        self._socket_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket we bound
        self._closed = False
        self._clients: dict[int, _Client] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._next_cid = 1
        self._seq = 0
        self._connections = 0
        self._rejected_forbidden = 0
        self._rejected_full = 0
        self._disconnected_slow = 0
        self._partials_dropped = 0
        self._events_published = 0
        self._bad_messages = 0
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
        return ServerStats(
            clients=self.client_count,
            connections=self._connections,
            rejected_forbidden=self._rejected_forbidden,
            rejected_full=self._rejected_full,
            disconnected_slow=self._disconnected_slow,
            partials_dropped=self._partials_dropped,
            events_published=self._events_published,
            bad_messages=self._bad_messages,
            last_seq=self._seq,
        )

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
        path = self._cfg.path
        gid = _resolve_group(self._cfg.group)
        _prepare_dir(path.parent, gid)
        self._lock_fd = _acquire_lock(path)
        try:
            self._remove_stale(path)
            sock = _bind(path, mode=self._cfg.mode, gid=gid)
            st = os.stat(path)
            self._socket_id = (st.st_dev, st.st_ino)
            self._server = await asyncio.start_unix_server(self._handle, sock=sock, limit=self._cfg.max_message_bytes)
        except BaseException:
            self._release_lock()
            raise
        self._log.info("event socket listening", path=str(path), mode=f"{self._cfg.mode:04o}", instance=self._instance)

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
        self._events_published += 1
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
        bye = _line(Bye(reason=reason))
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
        self._remove_own_socket()
        self._release_lock()
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
        transport.set_write_buffer_limits(high=_HIGH_WATER)
        try:
            cred = peer_credentials(writer.get_extra_info("socket"))
        except OSError:
            transport.abort()  # gone before we looked
            return
        who = {"pid": cred.pid, "uid": cred.uid, "gid": cred.gid} if cred is not None else {}
        if self._check_peers and not await self._allowed(cred):
            self._rejected_forbidden += 1
            self._log.warning("client refused by allow-list", **who)
            msg = "peer credentials not allowed by socket.allow_uids/allow_gids"
            await self._reject(writer, ErrorMessage(code=ErrorCode.FORBIDDEN, message=msg), reason="forbidden")
            return
        if self._closed:
            await self._reject(writer, None, reason="shutdown")
            return
        if self.client_count >= self._cfg.max_clients:
            self._rejected_full += 1
            self._log.warning("client refused: too many clients", max_clients=self._cfg.max_clients, **who)
            msg = f"too many clients (max {self._cfg.max_clients})"
            error = ErrorMessage(code=ErrorCode.TOO_MANY_CLIENTS, message=msg)
            await self._reject(writer, error, reason="too_many_clients")
            return

        cid = self._next_cid
        self._next_cid += 1
        client = _Client(cid=cid, reader=reader, writer=writer, cred=cred, queue_limit=self._cfg.client_queue)
        hello = Hello(
            version=self._hello.version,
            model=self._hello.model,
            sample_rate=self._hello.sample_rate,
            time=time.time(),
            instance=self._instance,
            last_seq=self._seq,
        )
        client.offer(_line(hello), droppable=False)  # first line on the wire, before any event
        self._clients[cid] = client
        self._connections += 1
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
        data = (_line(error) if error is not None else b"") + _line(Bye(reason=reason))
        writer.write(data)
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), timeout=_CLOSE_GRACE_S)
        except (asyncio.TimeoutError, OSError):
            pass
        finally:
            writer.transport.abort()  # no-op when already closed

    async def _read_loop(self, client: _Client) -> str:
        """Serve one client's requests until it goes away; returns why it ended."""
        reader = client.reader
        bucket = _TokenBucket(rate=_RATE_PER_S, burst=_BURST)
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
        if _peer_hung_up(client.writer.get_extra_info("socket")):
            return "peer closed"
        await client.writer.wait_closed()
        return "peer closed"

    async def _discard_long_line(self, client: _Client, consumed: int) -> bool:
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

    def _handle_line(self, client: _Client, line: bytes) -> None:
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

    def _bad_message(self, client: _Client, detail: str, *, code: str) -> None:
        client.bad_messages += 1
        self._bad_messages += 1
        log = self._log.warning if client.bad_messages == 1 else self._log.debug
        log("bad client message", client=client.cid, code=code, detail=detail, count=client.bad_messages)

    def _reply(self, client: _Client, msg: Message) -> None:
        self._deliver(client, _line(msg), droppable=False)

    def _deliver(self, client: _Client, data: bytes, *, droppable: bool) -> None:
        result = client.offer(data, droppable=droppable)
        if result is _Offer.DROPPED:
            self._partials_dropped += 1
        elif result is _Offer.OVERFLOW:
            self._disconnected_slow += 1
            self._log.warning(
                "client too slow, disconnecting",
                client=client.cid,
                queued=client.queued,
                dropped_partials=client.dropped_partials,
            )
            msg = "client did not read fast enough; an event could not be queued"
            client.kill(_line(ErrorMessage(code=ErrorCode.TOO_SLOW, message=msg)) + _line(Bye(reason="too_slow")))

    # ------------------------------------------------------------------ socket file

    def _remove_stale(self, path: Path) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise AmbientError(f"{path} exists and is not a socket; remove it or set socket.path")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.setblocking(False)  # a Unix connect() answers at once: accepted, refused or backlog full
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            self._log.info("removed stale socket", path=str(path))
            return
        except BlockingIOError:
            pass  # backlog full: somebody is serving it
        except OSError as e:
            raise AmbientError(f"cannot probe existing socket {path}: {e.strerror or e}") from None
        finally:
            probe.close()
        raise AmbientError(f"another process is already serving {path} (is another ambient daemon running?)")

    def _remove_own_socket(self) -> None:
        if self._socket_id is None:
            return  # never bound: whatever is at the path belongs to someone else
        path = self._cfg.path
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino) != self._socket_id:
            self._log.warning("socket path was replaced by another file; leaving it", path=str(path))
            return
        try:
            os.unlink(path)
        except OSError as e:
            self._log.warning("cannot remove socket", path=str(path), error=e.strerror or str(e))

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock; the lock file stays (removing it would race)
            self._lock_fd = None


# ---------------------------------------------------------------------- helpers


def _line(msg: Message) -> bytes:
    return msg.to_json().encode("utf-8") + b"\n"


def _resolve_group(group: str | None) -> int | None:
    if group is None:
        return None
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise AmbientError(f"socket.group {group!r} does not exist") from None


def _prepare_dir(directory: Path, gid: int | None) -> None:
    """Create the socket's directory 0700 (0750 with a group) if missing; an existing one is
    left as it is (it may be /tmp or systemd's RuntimeDirectory)."""
    if directory.is_dir():
        return
    mode = 0o750 if gid is not None else 0o700
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(directory, mode)
        if gid is not None:
            os.chown(directory, -1, gid)
        os.chmod(directory, mode)  # mkdir's mode is narrowed by the umask
    except FileExistsError:
        if not directory.is_dir():
            raise AmbientError(f"socket directory {directory} exists and is not a directory") from None
    except OSError as e:
        raise AmbientError(f"cannot create socket directory {directory}: {e.strerror or e}") from None


def _acquire_lock(path: Path) -> int:
    """Hold ``<socket>.lock`` for the server's lifetime so two daemons cannot race for one path."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        raise AmbientError(f"cannot open lock file {lock_path}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AmbientError(f"another ambient daemon is already serving {path}") from None
    return fd


def _bind(path: Path, *, mode: int, gid: int | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Bind with a tight umask so the socket is never reachable with looser permissions than
    # configured, not even between bind() and chmod(). The umask is process-wide, but only for
    # these few instructions; it can only make files created meanwhile more private.
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as e:
        sock.close()
        raise AmbientError(f"cannot create socket {path}: {e.strerror or e}") from None
    finally:
        os.umask(old)
    try:
        if gid is not None:
            os.chown(path, -1, gid)
        os.chmod(path, mode)
        sock.listen(_LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise AmbientError(f"cannot set up socket {path}: {e.strerror or e}") from None
    return sock


def _peer_hung_up(sock: socket.socket | None) -> bool:
    """After EOF: did the peer close entirely (POLLHUP), or only shut down its sending side?"""
    if sock is None:
        return True
    try:
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        return any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in poller.poll(0))
    except (OSError, ValueError):
        return True
