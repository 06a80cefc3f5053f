"""``ambient captions`` as a subprocess, for tests and benchmarks: its page's address, its JSON log
records and its ``/stats`` counters; and :class:`FakeDaemon`, a stand-in for the daemon's socket that
pushes finals at whatever rate a test wants."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from ambient.devtools.waiting import WAIT_S

__all__ = ["CaptionsProcess", "FakeDaemon"]


class CaptionsProcess:
    """``python -m ambient captions --listen 127.0.0.1:0 --socket PATH [ARGS]`` with JSON logs in
    ``workdir/captions.stderr``; :attr:`url` (``http://127.0.0.1:PORT/``) comes from its
    ``captions serving`` log line."""

    def __init__(self, daemon_socket: Path, workdir: Path, *args: str) -> None:
        self.log_path = workdir / "captions.stderr"
        cmd = [sys.executable, "-m", "ambient", "captions", "--listen", "127.0.0.1:0", "--socket", str(daemon_socket)]
        with open(self.log_path, "wb") as err:
            self.proc = subprocess.Popen(
                [*cmd, "--log-format", "json", *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        self.url = self.wait_log("captions serving")["url"]

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log records written so far."""
        out = []
        for line in self.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def wait_log(self, event: str, timeout: float = WAIT_S) -> dict[str, Any]:
        """The first log record with this ``event``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for rec in self.logs():
                if rec.get("event") == event:
                    return rec
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {event!r} log line:\n{self.log_path.read_text()}")

    def stats(self) -> dict[str, int]:
        """``GET /stats``."""
        with urllib.request.urlopen(self.url + "stats", timeout=10) as r:
            return dict(json.load(r))

    def stop(self) -> int:
        """SIGTERM, wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class FakeDaemon:
    """A Unix socket that greets each client with ``hello`` and broadcasts what :meth:`final` is given."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._srv.bind(str(path))
        self._srv.listen(8)
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._seq = 0
        self._closed = False
        threading.Thread(target=self._accept, name="fake-daemon", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            hello = {
                "type": "hello",
                "protocol": 1,
                "version": "test",
                "model": "fake",
                "sample_rate": 16000,
                "time": time.time(),
                "instance": "fake0",
                "last_seq": self._seq,
                "events": ["speech_start", "partial", "final", "status"],
            }
            with self._lock:
                if self._closed:  # accepted in the race with close(): a closed daemon greets no one
                    conn.close()
                    return
                conn.sendall(json.dumps(hello).encode() + b"\n")
                self._clients.append(conn)

    def clients(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return len(self._clients)

    def final(self, text: str, *, start: float | None = None) -> None:
        """Broadcast one ``final`` event (its speech began at ``start``, default a second ago)."""
        now = time.time()
        begun = now - 1 if start is None else start
        self._broadcast(
            {"type": "final", "utterance_id": f"u-{self._seq + 1}", "text": text, "words": [], "start": begun}
            | {"end": now, "offset_start": 0.0, "offset_end": 1.0, "confidence": 0.5, "reason": "silence"}
        )

    def status(self, state: str, detail: str = "") -> None:
        """Broadcast one ``status`` event."""
        self._broadcast({"type": "status", "state": state, "detail": detail, "time": time.time(), "counters": {}})

    def _broadcast(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            line = json.dumps({"type": event["type"], "seq": self._seq, **event}).encode() + b"\n"
            for c in self._clients:
                c.sendall(line)

    def close(self) -> None:
        """Stop accepting and drop every connection.

        ``shutdown`` wakes the accepting thread (closing the descriptor alone does not on Linux, and
        a client reconnecting at once would still be greeted by the blocked ``accept``).
        """
        with self._lock:
            self._closed = True
            for c in self._clients:
                c.close()
        with contextlib.suppress(OSError):
            self._srv.shutdown(socket.SHUT_RDWR)
        self._srv.close()
