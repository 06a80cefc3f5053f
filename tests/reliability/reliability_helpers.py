"""Helpers for the reliability tests: their base configuration, many socket clients served by one
thread, and strict readers of what the daemon leaves on disk and of its sockets. The daemon as a
subprocess (its stderr a pipe, as under journald) and single clients are in :mod:`ambient.devtools`."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ambient.devtools.client import Message, connect
from ambient.devtools.daemon import daemon_config as base_daemon_config
from ambient.devtools.daemon import merge_sections
from ambient.devtools.waiting import WAIT_S, wait_until


def daemon_config(workdir: Path, model: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """:func:`ambient.devtools.daemon.daemon_config` with a 300 ms gate hangover (utterances close
    sooner); ``sections`` are merged over it (``audio={"source": "stdin"}``)."""
    return merge_sections(base_daemon_config(workdir, model, vad={"hangover_ms": 300}), **sections)


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
