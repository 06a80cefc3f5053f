"""Helpers for the reliability tests: the daemon as a subprocess whose stderr is a pipe (as under
journald, and immune to file-size limits put on the daemon), raw socket clients in threads, and
readers for everything the daemon leaves on disk."""

from __future__ import annotations

import contextlib
import json
import os
import select
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from daemon_helpers import NotifyReceiver

#: Guards against hangs only; no test asserts on how long something took.
WAIT_S = 60.0

Message = dict[str, Any]


def daemon_config(workdir: Path, model: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A configuration with the socket and event log in ``workdir``, the tiny model and JSON logs;
    ``sections`` are merged over it (``audio={"source": "stdin"}``)."""
    cfg: dict[str, Any] = {
        "audio": {},
        "vad": {"hangover_ms": 300},
        "model": {"path": str(model)},
        "socket": {"path": str(workdir / "ambient.sock")},
        "event_log": {"path": str(workdir / "events.jsonl")},
        "logging": {"level": "info", "format": "json"},
    }
    for name, values in sections.items():
        cfg[name] = {**cfg.get(name, {}), **values}
    return cfg


def write_config(path: Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as YAML to ``path``."""
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class Daemon:
    """``ambient run --config FILE`` as a subprocess.

    stderr is a pipe read by a thread (like journald's stream socket), so the tests can limit the
    daemon's file sizes without also breaking its diagnostic output, and can break that pipe
    (:meth:`break_stderr`); or, with ``stderr_path``, a file. ``preexec_fn`` runs in the child
    before ``exec`` (resource limits).
    """

    def __init__(
        self,
        *,
        config: Path,
        workdir: Path,
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
        stdin_pipe: bool = False,
        watchdog_usec: int | None = None,
        preexec_fn: Callable[[], None] | None = None,
        stderr_path: Path | None = None,
    ) -> None:
        notify_path = workdir / "notify.sock"
        notify_path.unlink(missing_ok=True)
        self.notify = NotifyReceiver(notify_path)
        full_env = dict(os.environ if env is None else env)
        full_env["NOTIFY_SOCKET"] = self.notify.address
        for var in ("WATCHDOG_USEC", "WATCHDOG_PID", "AMBIENT_CONFIG", "AMBIENT_SOCKET", "AMBIENT_EVENT_LOG"):
            full_env.pop(var, None)
        if watchdog_usec is not None:
            full_env["WATCHDOG_USEC"] = str(watchdog_usec)
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._stderr_path = stderr_path
        self._stop_reading = threading.Event()
        self._read_fd: int | None = None
        if stderr_path is not None:
            stderr_fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        else:
            self._read_fd, stderr_fd = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ambient", "run", "--config", str(config), *args],
                env=full_env,
                stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr_fd,
                preexec_fn=preexec_fn,
            )
        finally:
            os.close(stderr_fd)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        fd = self._read_fd
        if fd is None:
            return
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

    def break_stderr(self) -> None:
        """Close the reading end of the daemon's stderr: its writes fail from now on (EPIPE)."""
        self._stop_reading.set()
        self._reader.join(timeout=10)
        if self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = WAIT_S) -> dict[str, str]:
        """Block until READY=1; fails early with the daemon's stderr if it exits."""
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
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = WAIT_S) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def _stderr_lines(self) -> list[str]:
        if self._stderr_path is not None:
            return self._stderr_path.read_text(errors="replace").splitlines()
        with self._lock:
            return list(self._lines)

    def stderr_text(self) -> str:
        return "\n".join(self._stderr_lines())

    def logs(self) -> list[Message]:
        """The daemon's JSON log records (plain lines printed by ALSA or PortAudio are skipped)."""
        lines = self._stderr_lines()
        out = []
        for line in lines:
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out

    def events_logged(self, name: str) -> list[Message]:
        """Log records whose ``event`` is ``name``."""
        return [r for r in self.logs() if r.get("event") == name]

    def close(self) -> None:
        """Kill the daemon if it still runs (by PID) and release everything."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=WAIT_S)
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        self._stop_reading.set()
        self._reader.join(timeout=10)
        if self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None
        self.notify.close()


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


class Client:
    """A well-behaved socket client in a thread: reads every line the daemon sends."""

    def __init__(self, path: Path, *, subscribe: Iterable[str] | None = None) -> None:
        self.sock = connect(path)
        self.messages: list[Message] = []
        self._cond = threading.Condition()
        self._eof = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if subscribe is not None:
            self.send({"type": "subscribe", "events": list(subscribe)})

    def send(self, msg: Message | bytes) -> None:
        data = msg if isinstance(msg, bytes) else json.dumps(msg).encode() + b"\n"
        self.sock.sendall(data)

    def _run(self) -> None:
        buf = b""
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                break
            if not data:
                break
            buf += data
            *lines, buf = buf.split(b"\n")
            got = [json.loads(line) for line in lines if line.strip()]
            with self._cond:
                self.messages.extend(got)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def eof(self) -> bool:
        with self._cond:
            return self._eof

    def of_type(self, kind: str) -> list[Message]:
        with self._cond:
            return [m for m in self.messages if m.get("type") == kind]

    def wait_for(self, pred: Callable[[Message], bool], *, timeout: float = WAIT_S, what: str = "message") -> Message:
        """The first message (received so far or later) for which ``pred`` holds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages:
                    if pred(m):
                        return m
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    raise AssertionError(f"no {what}; received {[m.get('type') for m in self.messages]}")
                self._cond.wait(remaining)

    def wait_type(self, kind: str, *, count: int = 1, timeout: float = WAIT_S) -> list[Message]:
        """Wait until ``count`` messages of type ``kind`` arrived; returns them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [m for m in self.messages if m.get("type") == kind]
                if len(got) >= count:
                    return got
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    types = [m.get("type") for m in self.messages]
                    raise AssertionError(f"{len(got)} of {count} '{kind}' messages; received {types}")
                self._cond.wait(remaining)

    def wait_eof(self, timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._eof:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("the connection did not end")
                self._cond.wait(remaining)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(timeout=10)


def log_records(path: Path) -> list[Message]:
    """Every record of the event log and its rotated files, oldest first, parsed strictly: each
    line must end with a newline and be one JSON object (no torn line anywhere)."""
    from ambient.publish.eventlog import log_files

    out: list[Message] = []
    for f in log_files(path):
        raw = f.read_bytes()
        assert not raw or raw.endswith(b"\n"), f"{f}: unterminated last line"
        for n, line in enumerate(raw.splitlines(), 1):
            record = json.loads(line)
            assert isinstance(record, dict), f"{f}:{n}: not an object"
            out.append(record)
    return out


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets among a process's open file descriptors."""
    out: set[int] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                out.add(int(target[len("socket:[") : -1]))
    return out


#: The socket tables of ``/proc/<pid>/net``: every address family a socket can be listed under.
NET_TABLES = ("unix", "tcp", "tcp6", "udp", "udp6", "udplite", "udplite6", "raw", "raw6", "packet", "netlink")


def socket_tables(pid: int) -> dict[int, str]:
    """Each of a process's socket inodes -> the ``/proc/<pid>/net`` table listing it ("?" if none)."""
    inodes = socket_inodes(pid)
    found: dict[int, str] = {}
    for table in NET_TABLES:
        path = Path(f"/proc/{pid}/net/{table}")
        try:
            lines = path.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            for token in line.split():
                if token.isdigit() and int(token) in inodes:
                    found.setdefault(int(token), table)
    return {inode: found.get(inode, "?") for inode in inodes}


def wait_until(cond: Callable[[], bool], *, timeout: float = WAIT_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class ClientPool:
    """Many socket clients served by one thread with a selector (a hundred threads would measure
    the test more than the daemon). Each client keeps every message it received."""

    def __init__(self, path: Path, n: int, *, subscribe: Callable[[int], list[str] | None] = lambda i: None) -> None:
        self.messages: list[list[Message]] = [[] for _ in range(n)]
        self.eof = [False] * n
        self._socks = [connect(path) for _ in range(n)]
        for i, s in enumerate(self._socks):
            events = subscribe(i)
            if events is not None:
                s.sendall(json.dumps({"type": "subscribe", "events": events}).encode() + b"\n")
            s.setblocking(False)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        bufs = [b""] * len(self._socks)
        for i, s in enumerate(self._socks):
            sel.register(s, selectors.EVENT_READ, i)
        while not self._stop.is_set() and not all(self.eof):
            for key, _ in sel.select(timeout=0.2):
                i = key.data
                try:
                    data = self._socks[i].recv(1 << 16)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(self._socks[i])
                    with self._lock:
                        self.eof[i] = True
                    continue
                *lines, bufs[i] = (bufs[i] + data).split(b"\n")
                got = [json.loads(x) for x in lines if x.strip()]
                with self._lock:
                    self.messages[i].extend(got)
        sel.close()

    def count(self, kind: str) -> list[int]:
        """Messages of type ``kind`` each client received so far."""
        with self._lock:
            return [sum(1 for m in msgs if m.get("type") == kind) for msgs in self.messages]

    def wait_eof(self, timeout: float = WAIT_S) -> None:
        wait_until(lambda: all(self.eof), timeout=timeout, what="every client's connection to end")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for s in self._socks:
            s.close()
