"""The stream the daemon's diagnostic log is written to: one that never raises.

Under systemd, stderr is journald's stream socket; by hand it may be a pipe or a file. Any of them
can break while the daemon runs: journald restarted, the reader of a pipe gone (EPIPE), the disk
or the file-size limit reached (ENOSPC, EFBIG). structlog and the ``logging`` module would raise
the error into whatever code was logging, the recognition thread included, and stop the daemon
for want of a log line. :class:`SafeStream` drops the line instead, counts the failure, and tries
again with the next one, so logging resumes when the stream works again.
"""

from __future__ import annotations

import io
import threading
from typing import TextIO

__all__ = ["SafeStream"]


class SafeStream(io.TextIOBase):
    """Wraps a text stream; ``write``/``flush`` never raise; ``failures`` counts those that failed."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream
        self._lock = threading.Lock()
        self.failures = 0

    def write(self, s: str) -> int:
        """Write ``s``; on an I/O error (or a closed stream) drop it and count the failure."""
        try:
            self._stream.write(s)
        except (OSError, ValueError):
            with self._lock:
                self.failures += 1
        return len(s)

    def flush(self) -> None:
        """Flush; on an error count it (what stays buffered is bounded by the stream's buffer)."""
        try:
            self._stream.flush()
        except (OSError, ValueError):
            with self._lock:
                self.failures += 1

    def isatty(self) -> bool:
        """Whether the wrapped stream is a terminal (decides the log format)."""
        try:
            return self._stream.isatty()
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        """The wrapped stream's descriptor."""
        return self._stream.fileno()

    def writable(self) -> bool:
        return True
