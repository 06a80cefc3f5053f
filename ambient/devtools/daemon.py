"""``ambient run`` as a subprocess, for tests and benchmarks: a configuration with every file in a
work directory, readiness through a private ``NOTIFY_SOCKET``, and the daemon's stderr kept in a
file or read from a pipe (as journald reads it), with its JSON log records."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from ambient.devtools.notify import NotifyReceiver
from ambient.devtools.waiting import WAIT_S

__all__ = ["READY_S", "DaemonProcess", "daemon_config", "merge_sections", "read_log", "write_config"]

#: How long :meth:`DaemonProcess.wait_ready` waits: a full-size model loads slowly on a busy machine.
READY_S = 120.0

#: Variables of the caller's environment that would move the daemon's files or fake a watchdog.
_CLEARED_ENV = (
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "AMBIENT_CONFIG",
    "AMBIENT_SOCKET",
    "AMBIENT_EVENT_LOG",
    "AMBIENT_MODEL",
)


def merge_sections(config: Mapping[str, Mapping[str, Any]], /, **sections: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with each of ``sections`` merged key by key over the section of its name."""
    out: dict[str, Any] = {name: dict(values) for name, values in config.items()}
    for name, values in sections.items():
        out[name] = {**out.get(name, {}), **values}
    return out


def daemon_config(workdir: Path, model: Path, /, **sections: Mapping[str, Any]) -> dict[str, Any]:
    """A configuration with the socket and event log in ``workdir``, ``model``'s weights and JSON
    logs; ``sections`` are merged over it (``audio={"source": "stdin"}``)."""
    base: dict[str, dict[str, Any]] = {
        "audio": {},
        "model": {"path": str(model)},
        "socket": {"path": str(workdir / "ambient.sock")},
        "event_log": {"path": str(workdir / "events.jsonl")},
        "logging": {"level": "info", "format": "json"},
    }
    return merge_sections(base, **sections)


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as YAML to ``path``; returns ``path``."""
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False))
    return path


def read_log(path: Path) -> list[dict[str, Any]]:
    """The event log's records (through the publisher's own reader)."""
    from ambient.publish.eventlog import read_events

    return list(read_events(path))


class DaemonProcess:
    """``python -m ambient run --config FILE`` as a subprocess.

    Args:
        config: the configuration file, or a configuration (:func:`daemon_config`) to write as
            ``workdir/config.yaml``.
        workdir: where the notify socket (and by default the stderr file) go; keep the path short.
        env: the daemon's environment (default: this process's), without the variables that would
            move its files elsewhere; ``NOTIFY_SOCKET`` is set.
        args: more arguments after ``--config FILE``.
        stdin_pipe: give the daemon a pipe as standard input (``audio.source: stdin``; :meth:`write`).
        watchdog_usec: pretend to be a service manager with this ``WatchdogSec`` (``WATCHDOG_USEC``).
        preexec_fn: runs in the child before ``exec`` (resource limits).
        stderr: a file for the daemon's stderr (default ``workdir/daemon.stderr``), or ``"pipe"``: a
            pipe read by a thread, like journald's stream socket, so the daemon's file-size limits do
            not touch its diagnostics and :meth:`break_stderr` can make its writes fail.
    """

    def __init__(
        self,
        *,
        config: Path | Mapping[str, Any],
        workdir: Path,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        stdin_pipe: bool = False,
        watchdog_usec: int | None = None,
        preexec_fn: Callable[[], None] | None = None,
        stderr: Path | Literal["pipe"] | None = None,
    ) -> None:
        self.workdir = workdir
        self.config = config if isinstance(config, Path) else write_config(workdir / "config.yaml", config)
        notify_path = workdir / "notify.sock"
        notify_path.unlink(missing_ok=True)
        self.notify = NotifyReceiver(notify_path)
        full_env = dict(os.environ if env is None else env)
        full_env["NOTIFY_SOCKET"] = self.notify.address
        for var in _CLEARED_ENV:
            full_env.pop(var, None)
        if watchdog_usec is not None:
            full_env["WATCHDOG_USEC"] = str(watchdog_usec)
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._stop_reading = threading.Event()
        self._read_fd: int | None = None
        self.stderr_path: Path | None = None
        if stderr == "pipe":
            self._read_fd, stderr_fd = os.pipe()
        else:
            self.stderr_path = workdir / "daemon.stderr" if stderr is None else stderr
            stderr_fd = os.open(self.stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ambient", "run", "--config", str(self.config), *args],
                env=full_env,
                stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr_fd,
                preexec_fn=preexec_fn,
            )
        finally:
            os.close(stderr_fd)
        self._reader: threading.Thread | None = None
        if self._read_fd is not None:
            self._reader = threading.Thread(target=self._read_stderr, name="daemon-stderr", daemon=True)
            self._reader.start()

    def _read_stderr(self) -> None:
        fd = self._read_fd
        assert fd is not None
        buf = b""
        while not self._stop_reading.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            data = os.read(fd, 1 << 16)
            if not data:
                break
            *lines, buf = (buf + data).split(b"\n")
            with self._lock:
                self._lines += [line.decode("utf-8", "replace") for line in lines]
        if buf:
            with self._lock:
                self._lines.append(buf.decode("utf-8", "replace"))

    def _stop_reader(self) -> None:
        self._stop_reading.set()
        if self._reader is not None:
            self._reader.join(timeout=10)
        if self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None

    @property
    def pid(self) -> int:
        """The daemon's process id."""
        return self.proc.pid

    @property
    def socket_path(self) -> Path:
        """The daemon's socket, as the configuration file names it."""
        return Path(yaml.safe_load(self.config.read_text())["socket"]["path"])

    def wait_ready(self, timeout: float = READY_S) -> dict[str, str]:
        """Block until ``READY=1`` and return that message; fails early, with the daemon's stderr, if
        it exits."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.notify.wait_for("READY", "1", timeout=0.2)
            except AssertionError:
                if self.proc.poll() is not None:
                    raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.stderr_text()}") from None
                if time.monotonic() > deadline:
                    raise AssertionError(f"daemon not ready:\n{self.stderr_text()}") from None

    def write(self, pcm: bytes) -> None:
        """Feed raw s16le PCM to the daemon's stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(pcm)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        """End the daemon's input (``audio.source: stdin`` then finishes and exits)."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the daemon."""
        self.proc.send_signal(sig)

    def wait(self, timeout: float = WAIT_S) -> int:
        """Wait for the daemon to exit (and for its stderr to be read); its exit status."""
        code = self.proc.wait(timeout=timeout)
        if self._reader is not None:
            self._reader.join(timeout=10)
        return code

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (the daemon finishes the utterance in flight), SIGKILL after ``timeout``; its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.wait(timeout=10)

    def break_stderr(self) -> None:
        """Close the reading end of the daemon's stderr pipe: its writes fail from now on (EPIPE)."""
        self._stop_reader()

    def _stderr_lines(self) -> list[str]:
        if self.stderr_path is not None:
            return self.stderr_path.read_text(errors="replace").splitlines()
        with self._lock:
            return list(self._lines)

    def stderr_text(self) -> str:
        """Everything the daemon wrote to stderr so far."""
        if self.stderr_path is not None:
            return self.stderr_path.read_text(errors="replace")
        return "\n".join(self._stderr_lines())

    def stderr_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the daemon's stderr."""
        return "\n".join(self._stderr_lines()[-lines:])

    def logs(self) -> list[dict[str, Any]]:
        """The daemon's JSON log records (plain lines printed by ALSA or PortAudio are skipped)."""
        out = []
        for line in self._stderr_lines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out

    def events_logged(self, name: str) -> list[dict[str, Any]]:
        """The log records whose ``event`` is ``name``."""
        return [r for r in self.logs() if r.get("event") == name]

    def close(self) -> None:
        """Kill the daemon if it still runs (by PID) and release everything."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=WAIT_S)
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        self._stop_reader()
        self.notify.close()
