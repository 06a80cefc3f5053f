"""Helpers for the publisher tests: events, a line client, a started server, a hang-guarded wait."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ambient.config import SocketConfig
from ambient.publish.protocol import Final, Partial, SpeechStart, Status, WordInfo
from ambient.publish.server import EventServer, HelloInfo

#: Guard against hangs only; nothing asserts on time.
IO_TIMEOUT_S = 20.0
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def final(n: int = 1, text: str = "hello world", *, t: float = T0) -> Final:
    words = text.split()
    step = 0.4
    return Final(
        utterance_id=f"u{n}",
        text=text,
        words=tuple(
            WordInfo(
                word=w,
                start=t + i * step,
                end=t + (i + 1) * step,
                offset_start=10.0 + i * step,
                offset_end=10.0 + (i + 1) * step,
                confidence=0.9,
            )
            for i, w in enumerate(words)
        ),
        start=t,
        end=t + len(words) * step,
        offset_start=10.0,
        offset_end=10.0 + len(words) * step,
        confidence=0.875,
        reason="silence",
    )


def partial(n: int = 1, text: str = "hello", *, t: float = T0) -> Partial:
    return Partial(utterance_id=f"u{n}", text=text, start=t, end=t + 0.5, offset_start=10.0, offset_end=10.5)


def speech_start(n: int = 1, *, t: float = T0) -> SpeechStart:
    return SpeechStart(utterance_id=f"u{n}", offset=10.0, time=t)


def status(state: str = "listening", *, t: float = T0) -> Status:
    return Status(state=state, detail="", time=t, counters={"utterances": 3})


@contextlib.asynccontextmanager
async def serving(cfg: SocketConfig) -> AsyncIterator[EventServer]:
    """A started server, closed afterwards."""
    srv = EventServer(cfg, hello=HelloInfo(model="test-model", sample_rate=16000))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


class LineClient:
    """A test client speaking raw lines over a real Unix socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.hello: dict[str, Any] = {}

    @classmethod
    async def connect(cls, path: Path, *, expect_hello: bool = True) -> LineClient:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=64 * 1024 * 1024)
        client = cls(reader, writer)
        if expect_hello:
            client.hello = await client.recv()
            assert client.hello["type"] == "hello"
        return client

    async def recv(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), IO_TIMEOUT_S)
        assert line.endswith(b"\n"), f"connection ended: {line!r}"
        obj = json.loads(line)
        assert isinstance(obj, dict)
        return obj

    async def recv_type(self, kind: str) -> dict[str, Any]:
        """Skip to the next message of type ``kind``."""
        while True:
            msg = await self.recv()
            if msg["type"] == kind:
                return msg

    async def recv_all(self) -> list[dict[str, Any]]:
        """Everything until the server closes the connection."""
        out: list[dict[str, Any]] = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), IO_TIMEOUT_S)
            if not line:
                return out
            out.append(json.loads(line))

    async def send(self, data: bytes | dict[str, Any]) -> None:
        raw = data if isinstance(data, bytes) else json.dumps(data).encode() + b"\n"
        self.writer.write(raw)
        await self.writer.drain()

    async def request(self, obj: dict[str, Any], reply: str) -> dict[str, Any]:
        await self.send(obj)
        return await self.recv_type(reply)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def wait_until(predicate: Any, what: str) -> None:
    """Poll a condition that another task or process makes true (a hang guard, not a timing test)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + IO_TIMEOUT_S
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.01)
