"""Run the captions process: the hub, the daemon bridge and the web server on one event loop."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Collection
from pathlib import Path

import structlog
from aiohttp import web

from ambient.captions.bridge import DaemonBridge
from ambient.captions.hub import Hub
from ambient.captions.web import ServerLimits, build_app

__all__ = ["serve"]

_log = structlog.get_logger("ambient.captions")


async def serve(
    daemon_socket: Path,
    *,
    host: str,
    port: int,
    allow_hosts: Collection[str] = (),
    max_clients: int = 64,
    stats_every_s: float = 60.0,
) -> int:
    """Serve captions of the daemon at ``daemon_socket`` on ``host:port`` until SIGINT/SIGTERM
    (returns 0) or until the daemon cannot be followed any more (returns 1)."""
    loop = asyncio.get_running_loop()
    hub = Hub()
    stop = asyncio.Event()
    exit_code = 0

    def fatal(message: str) -> None:
        nonlocal exit_code
        _log.error("cannot follow the daemon", socket=str(daemon_socket), error=message)
        exit_code = 1
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    app = build_app(hub, limits=ServerLimits(max_clients=max_clients), allow_hosts=allow_hosts)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        try:
            sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
        except OSError as e:
            _log.error("cannot listen", host=host, port=port, error=e.strerror or str(e))
            return 1
        await web.SockSite(runner, sock, shutdown_timeout=1.0).start()
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        _log.info("captions serving", url=f"http://{shown}:{bound}/", socket=str(daemon_socket))
        DaemonBridge(daemon_socket, hub, loop, fatal=fatal).start()
        await _until(stop, hub, stats_every_s)
    finally:
        await runner.cleanup()
    _log.info("captions stopped", **hub.counters.as_dict())
    return exit_code


async def _until(stop: asyncio.Event, hub: Hub, every_s: float) -> None:
    """Wait for ``stop``, logging the counters every ``every_s`` when they changed."""
    last = hub.counters.as_dict()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except (asyncio.TimeoutError, TimeoutError):
            now = hub.counters.as_dict()
            if now != last:
                _log.info("captions stats", **now)
                last = now
