"""systemd's notify protocol (``Type=notify``), spoken directly over ``$NOTIFY_SOCKET``.

One datagram per notification, newline-separated ``KEY=VALUE`` lines, sent to the AF_UNIX datagram
socket named by ``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace). Outside
systemd the variable is unset and every call is a cheap no-op. Sending never raises: a lost
notification must not take the daemon down; the first failure is logged.

The watchdog: when systemd sets ``WATCHDOG_USEC`` (and ``WATCHDOG_PID`` is unset or ours), the
daemon must send ``WATCHDOG=1`` more often than that; :meth:`Notifier.watchdog` rate-limits itself
to a third of the interval so callers may call it as often as they like.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping

import structlog
from structlog.typing import FilteringBoundLogger

__all__ = ["Notifier"]


class Notifier:
    """Sends ``READY=1``, ``STATUS=…``, ``RELOADING=1``, ``STOPPING=1`` and ``WATCHDOG=1``."""

    def __init__(
        self,
        *,
        address: str | bytes | None,
        watchdog_usec: int | None = None,
        logger: FilteringBoundLogger | None = None,
    ) -> None:
        self._address = address
        self._log: FilteringBoundLogger = logger if logger is not None else structlog.get_logger("ambient.notify")
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._failed = False
        self.watchdog_interval_s = watchdog_usec / 1e6 if watchdog_usec else None
        self._last_ping = float("-inf")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, logger: FilteringBoundLogger | None = None) -> Notifier:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` (default: ``os.environ``)."""
        e = os.environ if env is None else env
        raw = e.get("NOTIFY_SOCKET") or None
        address: str | bytes | None = None
        if raw is not None:
            # "@name" is the abstract namespace: a leading NUL byte on the wire.
            address = b"\0" + raw[1:].encode() if raw.startswith("@") else raw
        usec: int | None = None
        pid = e.get("WATCHDOG_PID")
        if e.get("WATCHDOG_USEC") and (not pid or pid == str(os.getpid())):
            try:
                usec = int(e["WATCHDOG_USEC"])
            except ValueError:
                usec = None
            if usec is not None and usec <= 0:
                usec = None
        return cls(address=address, watchdog_usec=usec, logger=logger)

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens."""
        return self._address is not None

    def send(self, **fields: str | int) -> bool:
        """Send one notification (``ready=1`` becomes ``READY=1``); True if it went out."""
        if self._address is None:
            return False
        payload = "\n".join(f"{k.upper()}={_one_line(str(v))}" for k, v in fields.items()).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(payload, self._address)
            except OSError as e:
                if not self._failed:
                    self._failed = True
                    self._log.warning("cannot notify the service manager", error=str(e))
                return False
        return True

    def ready(self, status: str | None = None) -> None:
        """Startup (or a reload) finished: systemd considers the service started."""
        if status is None:
            self.send(ready=1)
        else:
            self.send(ready=1, status=status)

    def status(self, text: str) -> None:
        """A one-line status shown by ``systemctl status``."""
        self.send(status=text)

    def reloading(self) -> None:
        """A configuration reload began (``Type=notify-reload`` protocol); send :meth:`ready` after."""
        self.send(reloading=1, monotonic_usec=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def stopping(self) -> None:
        """Shutdown began."""
        self.send(stopping=1)

    def watchdog(self) -> None:
        """Keep-alive: sends ``WATCHDOG=1`` at most every third of ``WATCHDOG_USEC``."""
        interval = self.watchdog_interval_s
        if interval is None or self._address is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= interval / 3:
            self._last_ping = now
            self.send(watchdog=1)

    def close(self) -> None:
        """Release the socket."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _one_line(value: str) -> str:
    return " ".join(value.split())
