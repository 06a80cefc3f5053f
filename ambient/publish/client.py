"""A blocking client for the event socket: one connection, or a stream that survives restarts.

``EventConnection`` connects, reads ``hello``, subscribes and yields what the daemon sends.
``follow()`` wraps it in a reconnect loop with exponential backoff and reports what happened
(daemon gone, restarted, events missed while away) through a note callback.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from ambient.errors import AmbientError
from ambient.publish.protocol import (
    PROTOCOL_VERSION,
    Bye,
    ClientMessage,
    ErrorCode,
    ErrorMessage,
    Event,
    Hello,
    ProtocolError,
    ServerMessage,
    Subscribe,
    Subscribed,
    parse_server_message,
)

__all__ = ["ConnectionLost", "EventConnection", "Received", "follow"]

#: Longest line accepted from the daemon (a final of a long utterance is a few tens of KB).
MAX_LINE_BYTES = 16 * 1024 * 1024


class ConnectionLost(Exception):
    """The connection ended (daemon closed it, went away, or sent something unreadable);
    ``code`` is the daemon's error code when it refused us."""

    def __init__(self, reason: str, *, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class Received:
    """One line from the daemon: the raw bytes (without newline) and the parsed message
    (``None`` for a message type this client does not know)."""

    raw: bytes
    message: ServerMessage | None


class EventConnection:
    """One connection to the daemon. ``connect()`` returns after ``hello``; iterate for messages."""

    def __init__(self, path: Path, *, events: Sequence[str] | None = None) -> None:
        self.path = path
        self.events = None if events is None else tuple(events)
        self.hello: Hello | None = None
        self._sock: socket.socket | None = None
        self._buffer = bytearray()

    def connect(self) -> Received:
        """Connect, read ``hello`` and send ``subscribe``; returns the hello line.

        Raises ``OSError`` when the socket cannot be reached, :class:`ConnectionLost` if the
        daemon refuses the connection or speaks an unknown protocol.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.path))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        first = self._next()
        msg = first.message
        if isinstance(msg, ErrorMessage):
            self.close()
            raise ConnectionLost(f"{msg.code}: {msg.message}", code=msg.code)
        if not isinstance(msg, Hello):
            self.close()
            raise ConnectionLost("daemon did not greet with hello")
        if msg.protocol > PROTOCOL_VERSION:
            self.close()
            raise AmbientError(f"daemon speaks protocol {msg.protocol}; this client knows {PROTOCOL_VERSION}")
        self.hello = msg
        self.send(Subscribe(events=self.events))
        return first

    def send(self, msg: ClientMessage) -> None:
        """Send one request line."""
        if self._sock is None:
            raise ConnectionLost("not connected")
        try:
            self._sock.sendall(msg.to_json().encode("utf-8") + b"\n")
        except OSError as e:
            raise ConnectionLost(f"send failed: {e.strerror or e}") from None

    def __iter__(self) -> Iterator[Received]:
        while True:
            yield self._next()

    def _next(self) -> Received:
        """The next line; raises :class:`ConnectionLost` at EOF or on garbage."""
        while True:
            line = self._read_line()
            try:
                return Received(line, parse_server_message(line))
            except ProtocolError as e:
                if e.code == ErrorCode.UNKNOWN_TYPE:
                    return Received(line, None)  # a newer daemon's message: pass it through
                raise ConnectionLost(f"unreadable message from daemon: {e}") from None

    def _read_line(self) -> bytes:
        sock = self._sock
        if sock is None:
            raise ConnectionLost("not connected")
        while True:
            i = self._buffer.find(b"\n")
            if i >= 0:
                line = bytes(self._buffer[:i])
                del self._buffer[: i + 1]
                return line
            if len(self._buffer) > MAX_LINE_BYTES:
                raise ConnectionLost("message from daemon too long")
            try:
                chunk = sock.recv(65536)
            except OSError as e:
                raise ConnectionLost(f"read failed: {e.strerror or e}") from None
            if not chunk:
                raise ConnectionLost("connection closed")
            self._buffer += chunk

    def close(self) -> None:
        """Close the socket. Idempotent."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> EventConnection:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def follow(
    path: Path,
    *,
    events: Sequence[str] | None = None,
    reconnect: bool = True,
    backoff_initial_s: float = 0.2,
    backoff_max_s: float = 5.0,
    note: Callable[[str], None] = lambda _msg: None,
    lost: Callable[[str], None] = lambda _reason: None,
) -> Iterator[Received]:
    """Yield every line the daemon sends (``hello`` included), reconnecting with exponential
    backoff when the connection is lost or the daemon is not running yet.

    ``lost(reason)`` is called each time there is no connection any more (or none yet): before each
    wait for the next try. A new connection shows itself as the next ``hello``.

    Raises :class:`AmbientError` when the daemon refuses us (``forbidden``), when the socket is
    not accessible, or, with ``reconnect=False``, when the connection fails or ends.
    """
    delay = backoff_initial_s
    last: tuple[str, int] | None = None  # (instance, seq) of the newest event seen
    waiting_noted = False
    while True:
        conn = EventConnection(path, events=events)
        try:
            greeting = conn.connect()
        except PermissionError:
            raise AmbientError(f"permission denied connecting to {path} (check socket.mode and socket.group)") from None
        except (FileNotFoundError, ConnectionRefusedError) as e:
            if not reconnect:
                raise AmbientError(f"cannot connect to {path}: {e.strerror}") from None
            if not waiting_noted:
                note(f"waiting for the daemon at {path}")
                waiting_noted = True
            lost(f"daemon not running ({e.strerror})")
            time.sleep(delay)
            delay = min(delay * 2, backoff_max_s)
            continue
        except OSError as e:
            raise AmbientError(f"cannot connect to {path}: {e.strerror or e}") from None
        except ConnectionLost as e:
            conn.close()
            if e.code == ErrorCode.FORBIDDEN:
                raise AmbientError(f"the daemon refused the connection ({e.reason})") from None
            if not reconnect:
                raise AmbientError(f"connection to {path} failed: {e.reason}") from None
            note(f"connection failed ({e.reason}); retrying")
            lost(f"connection failed ({e.reason})")
            time.sleep(delay)
            delay = min(delay * 2, backoff_max_s)
            continue

        hello = conn.hello
        assert hello is not None
        if waiting_noted:
            note(f"connected to {path}")
        waiting_noted = False
        delay = backoff_initial_s
        if last is not None:
            if last[0] != hello.instance:
                note(f"connected to a restarted daemon (version {hello.version}, model {hello.model})")
            elif hello.last_seq > last[1]:
                note(f"reconnected; {hello.last_seq - last[1]} event(s) were published while disconnected")
            else:
                note("reconnected")
        last = (hello.instance, hello.last_seq)
        bye: str | None = None
        reason = "connection closed"
        try:
            yield greeting
            for item in conn:
                msg = item.message
                if isinstance(msg, Event) and msg.seq is not None:
                    last = (hello.instance, msg.seq)
                elif isinstance(msg, Subscribed) and msg.ignored:
                    note(f"the daemon does not know event type(s): {', '.join(msg.ignored)}")
                elif isinstance(msg, ErrorMessage):
                    note(f"daemon error {msg.code}: {msg.message}")
                elif isinstance(msg, Bye):
                    bye = msg.reason
                yield item
        except ConnectionLost as e:
            reason = f"the daemon closed the connection ({bye})" if bye is not None else e.reason
        finally:
            conn.close()
        if not reconnect:
            raise AmbientError(reason)
        note(f"{reason}; reconnecting")
        lost(reason)
