"""The bridge from the daemon's socket to the hub: the reference client's ``lost`` callback turns a
missing or vanished daemon into ``daemon: down``, a new ``hello`` into ``connected``, and events
reach the hub on its event loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ambient.captions.bridge import DaemonBridge
from ambient.captions.hub import Hub
from ambient.devtools.captions import FakeDaemon


async def _until(hub: Hub, pred: Callable[[dict[str, Any]], bool], *, timeout: float = 20.0) -> dict[str, Any]:
    """The hub's snapshot once ``pred`` holds for it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        snap: dict[str, Any] = json.loads(hub.snapshot())
        if pred(snap):
            return snap
        assert loop.time() < deadline, f"never happened; snapshot {snap}"
        await asyncio.sleep(0.02)


def _connected(s: dict[str, Any]) -> bool:
    return bool(s["daemon"] == "connected" and s["status"] == "listening")


def test_the_bridge_follows_the_daemon_through_absence_and_restart(tmp_path: Path) -> None:
    path = tmp_path / "d.sock"

    async def scenario() -> None:
        hub = Hub()
        fatal: list[str] = []
        DaemonBridge(path, hub, asyncio.get_running_loop(), fatal=fatal.append).start()
        await _until(hub, lambda s: s["daemon"] == "down" and s["detail"].startswith("daemon not running"))
        daemon = FakeDaemon(path)
        await _until(hub, _connected)
        daemon.final("hello there")
        daemon.status("audio_lost", "no input")
        snap = await _until(hub, lambda s: s["status"] == "audio_lost")
        assert [f["text"] for f in snap["finals"]] == ["hello there"] and snap["detail"] == "no input"
        daemon.close()
        path.unlink()
        snap = await _until(hub, lambda s: s["daemon"] == "down")
        assert snap["detail"] and snap["partial"] is None, snap  # why: closed, or reset by the peer
        daemon = FakeDaemon(path)  # the daemon is back
        await _until(hub, _connected)
        daemon.close()
        assert not fatal and hub.counters.daemon_connects == 2

    asyncio.run(scenario())
