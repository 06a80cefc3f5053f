"""The datagram socket a service manager listens on (``NOTIFY_SOCKET``), for tests and benchmarks
that start the daemon: every ``sd_notify`` message it sends, parsed into ``KEY=VALUE`` fields."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from ambient.devtools.waiting import WAIT_S

__all__ = ["NotifyReceiver"]


class NotifyReceiver:
    """Binds ``path`` (or the abstract address ``@abstract``) and collects messages in a thread.

    ``address`` is what goes into the daemon's ``NOTIFY_SOCKET``.
    """

    def __init__(self, path: Path | None = None, *, abstract: str | None = None) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract is not None:
            self._sock.bind("\0" + abstract)
            self.address = "@" + abstract
        elif path is not None:
            self._sock.bind(str(path))
            self.address = str(path)
        else:
            self._sock.close()
            raise ValueError("NotifyReceiver needs a path or an abstract name")
        self._sock.settimeout(0.2)
        self.messages: list[dict[str, str]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._cond:
                self.messages.append(fields)
                self._cond.notify_all()

    def wait_for(self, key: str, value: str | None = None, *, timeout: float = WAIT_S) -> dict[str, str]:
        """The first message holding ``key`` (with ``value`` if given), received so far or later."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages:
                    if key in m and (value is None or m[key] == value):
                        return m
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {key}={value} notification; got {self.messages}")
                self._cond.wait(remaining)

    def count(self, key: str) -> int:
        """How many messages so far hold ``key``."""
        with self._cond:
            return sum(1 for m in self.messages if key in m)

    def close(self) -> None:
        """Stop listening (the reader thread ends within its 0.2 s poll)."""
        self._closed = True
        self._sock.close()
