"""Helpers for the daemon tests: the daemon as a subprocess, a systemd notify receiver, an
``ambient listen --json`` client, and checks of the utterance contract."""

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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

#: Guards against hangs only; no test asserts on how long something took.
WAIT_S = 60.0

Message = dict[str, Any]


def write_config(path: Path, data: dict[str, Any]) -> Path:
    """Write a YAML config file."""
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def base_config(workdir: Path, model: Path, **audio: Any) -> dict[str, Any]:
    """A config for tests: files in ``workdir``, the tiny model, debug logs as JSON."""
    return {
        "audio": {"stall_timeout_s": 3.0, **audio},
        "model": {"path": str(model)},
        "socket": {"path": str(workdir / "ambient.sock")},
        "event_log": {"path": str(workdir / "events.jsonl"), "fsync": "never"},
        "logging": {"level": "info", "format": "json"},
    }


class NotifyReceiver:
    """Binds the datagram socket a service manager would listen on (``NOTIFY_SOCKET``)."""

    def __init__(self, path: Path | None = None, *, abstract: str | None = None) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract is not None:
            self._sock.bind("\0" + abstract)
            self.address = "@" + abstract
        else:
            assert path is not None
            self._sock.bind(str(path))
            self.address = str(path)
        self._sock.settimeout(0.2)
        self.messages: list[dict[str, str]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
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
        """The first message holding ``key`` (with ``value`` if given)."""
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
        with self._cond:
            return sum(1 for m in self.messages if key in m)

    def close(self) -> None:
        self._closed = True
        self._sock.close()


class DaemonProcess:
    """``ambient run`` as a subprocess, with a notify socket to know when it is ready."""

    def __init__(
        self,
        *,
        config: Path,
        workdir: Path,
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
        stdin_pipe: bool = False,
        watchdog_usec: int | None = None,
    ) -> None:
        self.config = config
        self.workdir = workdir
        self.notify = NotifyReceiver(workdir / "notify.sock")
        full_env = dict(os.environ if env is None else env)
        full_env["NOTIFY_SOCKET"] = self.notify.address
        full_env.pop("WATCHDOG_USEC", None)
        full_env.pop("WATCHDOG_PID", None)
        if watchdog_usec is not None:
            full_env["WATCHDOG_USEC"] = str(watchdog_usec)
        self.stderr_path = workdir / "daemon.stderr"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ambient", "run", "--config", str(config), *args],
            env=full_env,
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = WAIT_S) -> dict[str, str]:
        """Block until READY=1 (fails early with the daemon's log if it exits)."""
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
        return self.proc.wait(timeout=timeout)

    def stderr_text(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def logs(self) -> list[Message]:
        """The daemon's JSON log lines (PortAudio/ALSA print some plain lines too: skipped)."""
        out = []
        for line in self.stderr_text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=WAIT_S)
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        self._stderr.close()
        self.notify.close()


class Listener:
    """``ambient listen --json`` as a subprocess; collects every line it prints."""

    def __init__(self, socket_path: Path, *, reconnect: bool = False) -> None:
        args = [sys.executable, "-m", "ambient", "listen", "--json", "--socket", str(socket_path)]
        if not reconnect:
            args.append("--no-reconnect")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.messages: list[Message] = []
        self._cond = threading.Condition()
        self._eof = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            msg = json.loads(line)
            with self._cond:
                self.messages.append(msg)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def wait_for(self, pred: Callable[[Message], bool], *, timeout: float = WAIT_S, what: str = "message") -> Message:
        """The first message (received so far or later) for which ``pred`` is true."""
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
        """Wait until ``count`` messages of type ``kind`` arrived; returns them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [m for m in self.messages if m.get("type") == kind]
                if len(got) >= count:
                    return got
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    raise AssertionError(f"{len(got)} of {count} '{kind}' messages; received {self.types()}")
                self._cond.wait(remaining)

    def wait_eof(self, timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._eof:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("the listener's connection did not end")
                self._cond.wait(remaining)

    def types(self) -> list[str]:
        with self._cond:
            return [str(m.get("type")) for m in self.messages]

    def events(self) -> list[Message]:
        """Broadcast events received (messages with a ``seq``)."""
        with self._cond:
            return [m for m in self.messages if "seq" in m]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._thread.join(timeout=10)


def utterances(events: Sequence[Message]) -> dict[str, list[Message]]:
    """Group speech events by utterance and check the contract: each utterance is
    ``speech_start``, then partials, then exactly one ``final``; utterances do not overlap;
    ``seq`` increases. Returns ``{utterance_id: [events]}`` in order."""
    seqs = [e["seq"] for e in events if "seq" in e]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"seq not increasing: {seqs}"
    groups: dict[str, list[Message]] = {}
    open_id: str | None = None
    for e in events:
        kind = e["type"]
        if kind not in ("speech_start", "partial", "final"):
            continue
        uid = e["utterance_id"]
        if kind == "speech_start":
            assert open_id is None, f"speech_start {uid} while {open_id} is open"
            assert uid not in groups, f"utterance id {uid} reused"
            groups[uid] = [e]
            open_id = uid
        else:
            assert uid == open_id, f"{kind} for {uid} but the open utterance is {open_id}"
            groups[uid].append(e)
            if kind == "final":
                open_id = None
    for uid, evs in groups.items():
        assert evs[0]["type"] == "speech_start"
        assert [e["type"] for e in evs[1:-1]] == ["partial"] * (len(evs) - 2), f"{uid}: {evs}"
    return groups


def finals_of(groups: dict[str, list[Message]]) -> list[Message]:
    """The final of each closed utterance, in order."""
    return [evs[-1] for evs in groups.values() if evs[-1]["type"] == "final"]


def check_final(final: Message) -> None:
    """Field-level sanity of a final (values a random model cannot get wrong)."""
    assert isinstance(final["text"], str)
    assert 0.0 <= final["confidence"] <= 1.0
    assert final["offset_start"] <= final["offset_end"]
    assert final["start"] <= final["end"]
    for w in final["words"]:
        assert w["word"] and " " not in w["word"]
        assert w["offset_start"] <= w["offset_end"] and w["start"] <= w["end"]
        assert 0.0 <= w["confidence"] <= 1.0
    if final["words"]:
        assert final["text"] == " ".join(w["word"] for w in final["words"])


def pcm16(audio: Any) -> bytes:
    """float32 samples in [-1, 1] -> s16le bytes."""
    import numpy as np

    a = np.clip(np.asarray(audio, dtype=np.float32) * 32768.0, -32768, 32767).astype("<i2")
    return a.tobytes()


def read_log(path: Path) -> list[Message]:
    """The event log's records (via the publisher's reader)."""
    from ambient.publish.eventlog import read_events

    return list(read_events(path))


def wait_until(cond: Callable[[], bool], *, timeout: float = WAIT_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
