"""systemd notify protocol against a real datagram socket (path and abstract namespace)."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

from ambient.daemon.notify import Notifier


def receiver(address: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(address)
    s.settimeout(5)
    return s


def fields(data: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in data.decode().splitlines())


def test_sends_ready_status_stopping_to_a_path_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with receiver(path) as r:
        n = Notifier.from_env({"NOTIFY_SOCKET": path})
        assert n.enabled
        n.ready(status="Listening: mic")
        assert fields(r.recv(4096)) == {"READY": "1", "STATUS": "Listening: mic"}
        n.status("line one\nline two")  # a status is always one line
        assert fields(r.recv(4096)) == {"STATUS": "line one line two"}
        n.reloading()
        msg = fields(r.recv(4096))
        assert msg["RELOADING"] == "1" and int(msg["MONOTONIC_USEC"]) > 0
        n.stopping()
        assert fields(r.recv(4096)) == {"STOPPING": "1"}
        n.close()


def test_abstract_namespace_address() -> None:
    name = f"ambient-test-{uuid.uuid4().hex}"
    with receiver("\0" + name) as r:
        n = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        n.ready()
        assert r.recv(4096) == b"READY=1"
        n.close()


def test_watchdog_pings_are_rate_limited_to_a_third_of_the_interval(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with receiver(path) as r:
        n = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "600000000"})  # 10 minutes
        assert n.watchdog_interval_s == 600.0
        for _ in range(100):
            n.watchdog()
        assert r.recv(4096) == b"WATCHDOG=1"
        r.settimeout(0.2)
        try:
            extra = r.recv(4096)
        except TimeoutError:
            extra = b""
        assert extra == b""  # 100 calls, one datagram
        n.close()


def test_watchdog_for_another_pid_or_without_socket_is_off() -> None:
    other = Notifier.from_env({"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval_s is None
    mine = Notifier.from_env(
        {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert mine.watchdog_interval_s == 0.001
    outside = Notifier.from_env({})
    assert not outside.enabled
    assert outside.send(ready=1) is False
    outside.watchdog()


def test_a_vanished_manager_socket_never_raises(tmp_path: Path) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert n.send(ready=1) is False
    assert n.send(status="still fine") is False
    n.close()
