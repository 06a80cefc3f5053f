"""Clients of the daemon's socket, for tests and benchmarks. Each reads in a thread of its own that
does nothing else and stamps every message with ``time.time()`` right after the read, so the
arrival times are what a local client of the daemon experiences.

- :class:`Client`: a raw connection (subscribe, send anything, read every line).
- :class:`EventRecorder`: a :class:`Client` seen as :class:`Received` messages (the benchmarks).
- :class:`Listener`: ``ambient listen --json`` as a subprocess (the client a user runs).
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ambient.devtools.waiting import WAIT_S

__all__ = ["Client", "EventRecorder", "Inbox", "Listener", "Message", "Received", "connect"]

Message = dict[str, Any]


@dataclass(frozen=True)
class Received:
    """One message from the daemon and the wall-clock time it arrived."""

    arrival: float
    message: Message

    @property
    def type(self) -> str:
        """The message's ``type``."""
        return str(self.message.get("type"))


class Inbox:
    """The messages a reader thread received (in order, with arrival times) and ways to wait for
    them; the waits fail with ``AssertionError`` listing what arrived."""

    def __init__(self) -> None:
        self._received: list[Received] = []
        self._cond = threading.Condition()
        self._eof = False

    def _deliver(self, messages: Iterable[Message], arrival: float) -> None:
        with self._cond:
            self._received.extend(Received(arrival, m) for m in messages)
            self._cond.notify_all()

    def _end(self) -> None:
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def messages(self) -> list[Message]:
        """Every message received so far."""
        with self._cond:
            return [r.message for r in self._received]

    @property
    def eof(self) -> bool:
        """Whether the connection ended."""
        with self._cond:
            return self._eof

    def received(self) -> list[Received]:
        """Every message received so far, with its arrival time."""
        with self._cond:
            return list(self._received)

    def of_type(self, kind: str) -> list[Message]:
        """The messages of type ``kind`` received so far."""
        with self._cond:
            return [r.message for r in self._received if r.type == kind]

    def types(self) -> list[str]:
        """The type of each message received so far."""
        with self._cond:
            return [r.type for r in self._received]

    def wait_for(self, pred: Callable[[Message], bool], *, timeout: float = WAIT_S, what: str = "message") -> Message:
        """The first message (received so far or later) for which ``pred`` holds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for r in self._received:
                    if pred(r.message):
                        return r.message
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    raise AssertionError(f"no {what}; received {[r.message.get('type') for r in self._received]}")
                self._cond.wait(remaining)

    def wait_type(self, kind: str, *, count: int = 1, timeout: float = WAIT_S) -> list[Message]:
        """Wait until ``count`` messages of type ``kind`` arrived; returns them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [r.message for r in self._received if r.type == kind]
                if len(got) >= count:
                    return got
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    types = [r.message.get("type") for r in self._received]
                    raise AssertionError(f"{len(got)} of {count} '{kind}' messages; received {types}")
                self._cond.wait(remaining)

    def wait_eof(self, timeout: float = WAIT_S) -> None:
        """Wait until the connection ended."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._eof:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("the connection did not end")
                self._cond.wait(remaining)


def connect(path: Path, *, timeout: float = WAIT_S) -> socket.socket:
    """A connected Unix stream socket (retrying while the daemon is starting)."""
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(path))
            return s
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Client(Inbox):
    """A well-behaved socket client: reads every line the daemon sends, in a thread.

    Args:
        path: the daemon's socket.
        subscribe: send ``{"type": "subscribe", "events": [...]}`` first (default: every event).
        connect_timeout: how long to retry while the socket does not exist yet.
    """

    def __init__(self, path: Path, *, subscribe: Iterable[str] | None = None, connect_timeout: float = WAIT_S) -> None:
        super().__init__()
        self.path = path
        self.sock = connect(path, timeout=connect_timeout)
        self._thread = threading.Thread(target=self._run, name="client", daemon=True)
        self._thread.start()
        if subscribe is not None:
            self.send({"type": "subscribe", "events": list(subscribe)})

    def send(self, msg: Message | bytes) -> None:
        """Send ``msg``: a message as one JSON line, or bytes as they are."""
        data = msg if isinstance(msg, bytes) else json.dumps(msg).encode() + b"\n"
        self.sock.sendall(data)

    def _run(self) -> None:
        buf = b""
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                break
            now = time.time()
            if not data:
                break
            *lines, buf = (buf + data).split(b"\n")
            self._deliver([json.loads(line) for line in lines if line.strip()], now)
        self._end()

    def close(self) -> None:
        """Disconnect and stop the reader."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(timeout=10)


class EventRecorder(Client):
    """A :class:`Client` as the benchmarks see it: messages as :class:`Received`, a wait on all of
    them that raises ``TimeoutError``, and an end of connection that is waited for, not required."""

    def events(self, kind: str | None = None) -> list[Received]:
        """Messages received so far (of type ``kind`` if given)."""
        with self._cond:
            return [r for r in self._received if kind is None or r.type == kind]

    def wait(self, pred: Callable[[list[Received]], bool], *, timeout: float, what: str) -> None:
        """Block until ``pred(messages so far)`` holds; ``TimeoutError`` naming ``what`` if it never does."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self._received):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    raise TimeoutError(f"{what}: not seen (got {[r.type for r in self._received]})")
                self._cond.wait(min(remaining, 0.5))

    def wait_eof(self, timeout: float = 30.0) -> None:
        """Block until the daemon closed the connection, or ``timeout`` passed: a benchmark reports
        whatever arrived."""
        with contextlib.suppress(AssertionError):
            super().wait_eof(timeout)


class Listener(Inbox):
    """``ambient listen --json`` as a subprocess; collects every line it prints."""

    def __init__(self, socket_path: Path, *, reconnect: bool = False) -> None:
        super().__init__()
        args = [sys.executable, "-m", "ambient", "listen", "--json", "--socket", str(socket_path)]
        if not reconnect:
            args.append("--no-reconnect")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._thread = threading.Thread(target=self._run, name="listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._deliver([json.loads(line)], time.time())
        self._end()

    def events(self) -> list[Message]:
        """The broadcast events received (messages with a ``seq``)."""
        with self._cond:
            return [r.message for r in self._received if "seq" in r.message]

    def close(self) -> None:
        """Interrupt the listener (SIGINT, then SIGKILL) and stop the reader."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._thread.join(timeout=10)
