"""Hostile websocket clients are contained and counted: hundreds of connections, garbage frames,
a client that never reads. A stand-in daemon (a Unix socket speaking just enough of the protocol)
pushes finals; a well-behaved page must receive every one of them while the others misbehave."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from ambient.devtools.captions import CaptionsProcess, FakeDaemon

#: Finals the stand-in daemon sends while one client stalls: 7.5 MB, more than the kernel's socket
#: buffers (up to 4 MB on loopback), the server's write buffer and the stalled page's queue can hold.
FINALS = 300


def _push(daemon: FakeDaemon, n: int) -> None:
    """``n`` finals of 25 kB at 200 a second (a good reader keeps up on a busy machine)."""
    for i in range(n):
        daemon.final(f"{i} " + "x" * 25_000)
        time.sleep(0.005)


def _wait_stats(captions: CaptionsProcess, pred: Callable[[dict[str, int]], bool]) -> dict[str, int]:
    deadline = time.monotonic() + 20
    while not pred(stats := captions.stats()):
        assert time.monotonic() < deadline, stats
        time.sleep(0.1)
    return stats


def _upgrade(url: str, *, rcvbuf: int | None = None) -> socket.socket:
    """A raw websocket handshake on a new TCP connection; returns the socket after the 101."""
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    """Read until EOF or reset (the server dropped us); False on a timeout."""
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


async def _crowd(url: str, n: int) -> tuple[list[aiohttp.ClientWebSocketResponse], list[int]]:
    """Open ``n`` websockets at once; returns the open ones and the HTTP statuses of the refusals."""
    session = aiohttp.ClientSession()
    opened: list[aiohttp.ClientWebSocketResponse] = []
    refused: list[int] = []

    async def one() -> None:
        try:
            opened.append(await session.ws_connect(url + "ws", timeout=aiohttp.ClientWSTimeout(ws_close=2)))
        except aiohttp.WSServerHandshakeError as e:
            refused.append(e.status)

    await asyncio.gather(*(one() for _ in range(n)))
    for ws in opened:
        assert (await ws.receive_json(timeout=10))["type"] == "snapshot"
    for ws in opened:
        await ws.close()
    await session.close()
    return opened, refused


def test_hostile_clients_are_contained_and_counted(tmp_path: Path) -> None:
    daemon = FakeDaemon(tmp_path / "d.sock")
    captions = CaptionsProcess(daemon.path, tmp_path, "--max-clients", "40")
    try:
        captions.wait_log("daemon connected")

        # Hundreds of connections: 40 pages open, the rest refused before the upgrade.
        opened, refused = asyncio.run(_crowd(captions.url, 300))
        assert len(opened) == 40 and refused == [503] * 260

        # Garbage: bytes that are no websocket frame, and a text frame the page would never send.
        junk = _upgrade(captions.url)
        junk.sendall(os.urandom(4096))
        assert _closed_by_server(junk)
        chatty = _upgrade(captions.url)
        chatty.sendall(b"\x81\x85" + b"\x00" * 4 + b"hello")  # masked text frame "hello"
        assert _closed_by_server(chatty), captions.stats()

        # Never reading, while a good page reads everything.
        stalled = _upgrade(captions.url, rcvbuf=4096)

        async def good_page() -> int:
            async with aiohttp.ClientSession() as session, session.ws_connect(captions.url + "ws") as ws:
                assert (await ws.receive_json(timeout=10))["type"] == "snapshot"
                pushing = asyncio.create_task(asyncio.to_thread(_push, daemon, FINALS))
                got = 0
                while got < FINALS:
                    msg = await ws.receive_json(timeout=30)
                    got += msg["type"] == "final"
                await pushing
                return got

        assert asyncio.run(good_page()) == FINALS
        stats = _wait_stats(captions, lambda s: s["dropped_too_slow"] + s["dropped_send_timeout"] > 0)
        assert stats["dropped_too_slow"] + stats["dropped_send_timeout"] == 1, stats
        assert stats["refused_too_many"] == 260 and stats["dropped_bad_frames"] == 2, stats
        assert stats["connections"] == 40 + 2 + 2 and stats["clients"] == 0, stats
        dropped = ("caption page too slow, dropped", "caption page not reading, dropped")
        assert [r["event"] for r in captions.logs() if r["event"] in dropped], captions.logs()
        stalled.close()
        assert daemon.clients() == 1  # one daemon connection whatever the browsers did
    finally:
        code = captions.stop()
        daemon.close()
    assert code == 0
    last = captions.wait_log("captions stopped")
    assert last["refused_too_many"] == 260
