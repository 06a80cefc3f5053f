"""The daemon under test: ``ambient run`` as a subprocess, readiness through a private
``NOTIFY_SOCKET``, and a socket client that stamps every event with the time it arrived.

Arrival times are taken with ``time.time()`` right after ``recv`` returns, in a thread that does
nothing else, so they are what a local client of the daemon experiences.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

__all__ = ["DaemonProcess", "EventRecorder", "Received", "daemon_config"]

WAIT_S = 120.0


def daemon_config(workdir: Path, checkpoint: Path, /, **sections: Mapping[str, Any]) -> dict[str, Any]:
    """A daemon configuration with its socket and event log in ``workdir``; ``sections`` are
    merged over the defaults (e.g. ``audio={"source": "mic", "block_ms": 30}``)."""
    cfg: dict[str, Any] = {
        "audio": {},
        "model": {"path": str(checkpoint)},
        "socket": {"path": str(workdir / "ambient.sock")},
        "event_log": {"path": str(workdir / "events.jsonl")},
        "logging": {"level": "info", "format": "json"},
    }
    for name, values in sections.items():
        cfg[name] = {**cfg.get(name, {}), **dict(values)}
    return cfg


class _NotifyReceiver:
    """The datagram socket a service manager listens on; records ``READY=1``."""

    def __init__(self, path: Path) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.2)
        self.path = path
        self.ready = threading.Event()
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
            if b"READY=1" in data.split(b"\n"):
                self.ready.set()

    def close(self) -> None:
        self._closed = True
        self._thread.join(timeout=2)
        self._sock.close()


class DaemonProcess:
    """``python -m ambient run --config FILE`` (see the module docstring).

    Args:
        workdir: where the config, notify socket and stderr log go (keep the path short).
        config: the configuration (see :func:`daemon_config`).
        env: the daemon's environment (default: this process's).
        stdin_pipe: give the daemon a pipe as standard input (``audio.source: stdin``).
    """

    def __init__(
        self,
        *,
        workdir: Path,
        config: Mapping[str, Any],
        env: Mapping[str, str] | None = None,
        stdin_pipe: bool = False,
    ) -> None:
        self.workdir = workdir
        self.config_path = workdir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        self.socket_path = Path(config["socket"]["path"])
        notify_path = workdir / "notify.sock"
        notify_path.unlink(missing_ok=True)
        self._notify = _NotifyReceiver(notify_path)
        full_env = dict(os.environ if env is None else env)
        full_env["NOTIFY_SOCKET"] = str(notify_path)
        for var in ("WATCHDOG_USEC", "WATCHDOG_PID", "AMBIENT_CONFIG", "AMBIENT_SOCKET", "AMBIENT_MODEL"):
            full_env.pop(var, None)
        self.stderr_path = workdir / "daemon.stderr"
        self._stderr: IO[bytes] = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ambient", "run", "--config", str(self.config_path)],
            env=full_env,
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    @property
    def pid(self) -> int:
        """The daemon's process id."""
        return self.proc.pid

    def wait_ready(self, timeout: float = WAIT_S) -> None:
        """Block until the daemon reported ``READY=1``; raises with its log if it exits first."""
        deadline = time.monotonic() + timeout
        while not self._notify.ready.wait(0.2):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with status {self.proc.returncode}:\n{self.stderr_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the daemon was not ready after {timeout:.0f} s:\n{self.stderr_tail()}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (the daemon finishes the utterance in flight); SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)

    def close(self) -> None:
        """Kill the daemon if it still runs and release everything."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        self._stderr.close()
        self._notify.close()

    def stderr_tail(self, lines: int = 30) -> str:
        """The end of the daemon's stderr."""
        if not self._stderr.closed:
            self._stderr.flush()
        return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])

    def logs(self) -> list[dict[str, Any]]:
        """The daemon's JSON log records (plain lines from PortAudio/ALSA are skipped)."""
        if not self._stderr.closed:
            self._stderr.flush()
        out = []
        for line in self.stderr_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out


@dataclass(frozen=True)
class Received:
    """One message from the daemon and the wall-clock time it arrived."""

    arrival: float
    message: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.message.get("type"))


class EventRecorder:
    """A socket client in its own thread that records every message with its arrival time."""

    def __init__(self, socket_path: Path, *, connect_timeout: float = 30.0) -> None:
        self.path = socket_path
        self.received: list[Received] = []
        self._cond = threading.Condition()
        self._eof = False
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                self._sock.connect(str(socket_path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._sock.settimeout(0.2)
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="event-recorder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buf = b""
        while not self._stop:
            try:
                data = self._sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                break
            now = time.time()
            if not data:
                break
            buf += data
            *lines, buf = buf.split(b"\n")
            got = [Received(now, json.loads(line)) for line in lines if line.strip()]
            with self._cond:
                self.received.extend(got)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def events(self, kind: str | None = None) -> list[Received]:
        """Messages received so far (of type ``kind`` if given)."""
        with self._cond:
            return [r for r in self.received if kind is None or r.type == kind]

    def wait(self, pred: Callable[[list[Received]], bool], *, timeout: float, what: str) -> None:
        """Block until ``pred(messages so far)`` holds; raises ``TimeoutError`` naming ``what``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self.received):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    raise TimeoutError(f"{what}: not seen (got {[r.type for r in self.received]})")
                self._cond.wait(min(remaining, 0.5))

    def wait_eof(self, timeout: float = 30.0) -> None:
        """Block until the daemon closed the connection."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._eof and time.monotonic() < deadline:
                self._cond.wait(0.2)

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self._sock.close()
