"""``ambient captions`` as a subprocess, for tests and benchmarks: its page's address, its JSON log
records and its ``/stats`` counters."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from ambient.devtools.waiting import WAIT_S

__all__ = ["CaptionsProcess"]


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
