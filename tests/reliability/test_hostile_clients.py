"""Hostile and broken socket clients against the real daemon (the publisher's unit tests in
tests/publish cover the server alone). While the daemon transcribes a file in real time, clients
send garbage, invalid UTF-8, a 10 MB line without a newline, thousands of requests per second, shut
down their sending side, never read, or connect and vanish by the hundred. Each is contained: a
well-behaved client connected at the same time receives every event (consecutive ``seq``, every
final that is in the event log), and the daemon's memory does not grow with what clients send."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from reliability_helpers import daemon_config, log_records

from ambient.devtools.client import Client, connect
from ambient.devtools.daemon import DaemonProcess, write_config
from ambient.devtools.waiting import wait_until

pytestmark = pytest.mark.slow

MiB = 1024 * 1024


class _Hostile(threading.Thread):
    """Runs ``fn(stop)`` in a thread and keeps what it returns or raises."""

    def __init__(self, name: str, fn: Any, stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self._fn, self._stop_event = fn, stop
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._fn(self._stop_event)
        except BaseException as e:
            self.error = e


def _read_lines(sock: socket.socket, *, until_type: str | None = None, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Lines from ``sock`` until EOF (or a message of ``until_type``); tolerates a reset at the end."""
    sock.settimeout(timeout)
    buf, out = b"", []
    while True:
        try:
            data = sock.recv(1 << 16)
        except (ConnectionResetError, TimeoutError):
            break
        if not data:
            break
        buf += data
        *lines, buf = buf.split(b"\n")
        out += [json.loads(x) for x in lines if x.strip()]
        if until_type is not None and any(m.get("type") == until_type for m in out):
            break
    return out


def test_hostile_clients_are_contained(tiny_checkpoint: Path, speech_file: Path, workdir: Path) -> None:
    data = daemon_config(
        workdir,
        tiny_checkpoint,
        audio={"source": "file", "file": str(speech_file), "realtime": True},
        socket={"client_queue": 8},  # the smallest queue: a client that never reads is cut off soon
    )
    cfg = write_config(workdir / "config.yaml", data)
    sock_path = workdir / "ambient.sock"
    daemon = DaemonProcess(config=cfg, workdir=workdir, stderr="pipe")
    stop = threading.Event()
    hostile: list[_Hostile] = []
    good: Client | None = None
    try:
        daemon.wait_ready()
        good = Client(sock_path)
        good.wait_type("hello")
        proc = psutil.Process(daemon.pid)
        rss_before = proc.memory_info().rss

        # Every hostile client connects first; the connection churn starts only then (a burst of
        # connections can fill socket.max_clients for a moment, and refuse newcomers: documented).
        socks = {name: connect(sock_path) for name in ("garbage", "huge_line", "flood", "never_reads", "half_open")}

        def garbage(stop: threading.Event) -> list[dict[str, Any]]:
            s = socks["garbage"]
            for _ in range(50):
                s.sendall(os.urandom(512) + b"\n")
            s.sendall(b"\xff\xfe\xfd not utf-8 \xc3\x28\n" * 20 + b'{"type":"ping","id":"alive"}\n')
            lines = _read_lines(s, until_type="pong")
            s.close()
            return lines

        def huge_line(stop: threading.Event) -> tuple[list[dict[str, Any]], int]:
            s = socks["huge_line"]
            peak = 0
            chunk = b"x" * MiB
            for _ in range(10):  # 10 MB, no newline, sampling the daemon's memory while it reads
                s.sendall(chunk)
                peak = max(peak, proc.memory_info().rss)
            s.sendall(b'\n{"type":"ping","id":"after"}\n')
            lines = _read_lines(s, until_type="pong")
            s.close()
            return lines, peak

        def flood(stop: threading.Event) -> int:
            s = socks["flood"]
            pongs = 0

            def read() -> None:  # a flooder that reads its replies is slowed down, not cut off
                nonlocal pongs
                try:
                    for line in s.makefile("rb"):
                        pongs += line.startswith(b'{"type":"pong"')
                except OSError:
                    pass  # reset when the daemon exits with its requests still unread

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            burst = memoryview(b'{"type":"ping"}\n' * 2000)
            sent = 0
            deadline = time.monotonic() + 4.0  # as many requests as the socket takes, for a few seconds
            while time.monotonic() < deadline and not stop.is_set():
                try:
                    sent += s.send(burst[sent % len(burst) :], socket.MSG_DONTWAIT)
                except BlockingIOError:
                    time.sleep(0.01)  # the daemon reads it at its rate limit: the writes block
            s.shutdown(socket.SHUT_WR)  # the daemon still has thousands of them to read
            reader.join(timeout=60)
            assert sent > 100_000, sent  # thousands of messages were offered
            return pongs

        def never_reads_and_asks_a_lot(stop: threading.Event) -> list[dict[str, Any]]:
            s = socks["never_reads"]
            names = json.dumps({"type": "subscribe", "events": [f"n{i:05d}" for i in range(6500)]}).encode() + b"\n"
            try:
                for _ in range(40):  # ~60 KB replies that it never reads
                    s.sendall(names)
            except OSError:
                pass  # the daemon closed it
            wait_until(lambda: bool(daemon.events_logged("client too slow, disconnecting")), what="too_slow")
            lines = _read_lines(s, timeout=10)
            s.close()
            return lines

        def half_open(stop: threading.Event) -> list[dict[str, Any]]:
            s = socks["half_open"]
            s.shutdown(socket.SHUT_WR)  # `nc -N`: it only listens
            return _read_lines(s, timeout=120)

        def churn(stop: threading.Event) -> int:
            wait_until(lambda: len(daemon.events_logged("client connected")) >= 26, what="the other clients")
            n = 0
            for i in range(200):
                s = connect(sock_path)
                if i % 3 == 0:
                    s.sendall(b'{"type":"ping"')  # half a message, then gone
                elif i % 3 == 1:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.close()  # with SO_LINGER 0: a reset instead of a clean close
                n += 1
            return n

        passive = [connect(sock_path) for _ in range(20)]  # connect, never read, never write
        for name, fn in [
            ("garbage", garbage),
            ("huge_line", huge_line),
            ("flood", flood),
            ("never_reads", never_reads_and_asks_a_lot),
            ("half_open", half_open),
            ("churn", churn),
        ]:
            hostile.append(_Hostile(name, fn, stop))
        for h in hostile:
            h.start()
        for h in hostile:
            if h.name != "half_open":
                h.join(timeout=120)
                assert not h.is_alive(), f"{h.name} hung"

        assert daemon.wait() == 0, daemon.stderr_text()  # the file ended: a clean exit
        hostile[4].join(timeout=30)
        good.wait_eof()
        for s in passive:
            s.close()
    finally:
        stop.set()
        if good is not None:
            good.close()
        daemon.close()

    errors = {h.name: h.error for h in hostile if h.error is not None}
    assert not errors, errors
    by_name = {h.name: h.result for h in hostile}

    garbage_lines = by_name["garbage"]
    codes = {m["code"] for m in garbage_lines if m["type"] == "error"}
    assert codes <= {"bad_json", "bad_encoding", "not_object", "bad_field", "unknown_type"} and "bad_encoding" in codes
    assert garbage_lines[-1] == {"type": "pong", "id": "alive", "time": garbage_lines[-1]["time"]}

    huge_lines, peak_rss = by_name["huge_line"]
    control = [m for m in huge_lines if "seq" not in m]
    assert [m["type"] for m in control] == ["hello", "error", "pong"] and control[1]["code"] == "too_long"
    print(f"\n10 MB line without a newline: daemon RSS grew by {(peak_rss - rss_before) / MiB:.1f} MiB")
    assert peak_rss - rss_before < 20 * MiB, f"daemon RSS grew by {(peak_rss - rss_before) / MiB:.1f} MiB"

    assert by_name["flood"] > 200  # served, at the rate limit
    # The client that never read was cut off (it may find the connection reset if it reads too late).
    slow = by_name["never_reads"]
    assert len(daemon.events_logged("client too slow, disconnecting")) == 1
    if slow and slow[-1]["type"] == "bye":
        assert slow[-2]["code"] == "too_slow" and slow[-1]["reason"] == "too_slow"
    assert by_name["churn"] == 200

    # The well-behaved client saw every event, in order, and every final that is in the log.
    assert good is not None
    events = [m for m in good.messages if "seq" in m]
    seqs = [m["seq"] for m in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "an event was lost"
    received = [m["utterance_id"] for m in events if m["type"] == "final"]
    logged = [r["utterance_id"] for r in log_records(workdir / "events.jsonl") if r["type"] == "final"]
    assert received == logged and len(received) >= 2
    assert good.messages[-1] == {"type": "bye", "reason": "shutdown"}
    listener_finals = [m["utterance_id"] for m in by_name["half_open"] if m.get("type") == "final"]
    assert listener_finals == logged  # a client that shut down its sending side still gets everything

    logs = daemon.logs()
    assert not [r for r in logs if r.get("level") in ("error", "critical")], [r for r in logs if r["level"] == "error"]
    assert not [r for r in logs if r.get("event") == "client handler failed"]
