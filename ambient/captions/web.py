"""The captions web server (aiohttp): the page, its websocket and ``/stats``.

Guards, each counted in :class:`~ambient.captions.hub.Counters`:

- **Host and Origin.** Every request must name an IP address, ``localhost`` or an ``--allow-host``
  name in ``Host`` (DNS rebinding gives a hostile site only a name it owns), and a websocket's
  ``Origin``, when a browser sends one, must be this server itself, so another site open in the same
  browser cannot read the room's transcripts.
- **How many.** At most ``max_clients`` websockets; more get HTTP 503 before the upgrade.
- **What they send.** The page sends nothing: any data frame, a frame over 1 KiB or a malformed
  frame closes that connection.
- **How fast they read.** Each browser has a bounded queue (:class:`~ambient.captions.hub.PageClient`)
  and one writer task; a browser that lets important messages pile up, or whose socket accepts no
  data for ``send_timeout_s``, is aborted. Heartbeat pings find browsers that vanished.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from ambient.captions.hub import Hub, PageClient

__all__ = ["STATIC_FILES", "ServerLimits", "build_app", "host_allowed"]

#: The page's files (package data in ``ambient/captions/static``) and their content types.
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "captions.css": "text/css; charset=utf-8",
    "captions.js": "text/javascript; charset=utf-8",
}

_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_log = structlog.get_logger("ambient.captions")

#: How long a closing connection may take to answer before it is cut off.
_CLOSE_TIMEOUT_S = 2.0

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ServerLimits:
    """Bounds on what browsers may cost (see the module docstring)."""

    max_clients: int = 64
    send_timeout_s: float = 10.0
    heartbeat_s: float = 20.0
    max_frame_bytes: int = 1024


def host_allowed(host_header: str | None, extra: Collection[str] = ()) -> bool:
    """Whether a ``Host`` header names this server safely: an IP literal, ``localhost`` or a name in
    ``extra`` (case-insensitive), with or without a port."""
    if not host_header:
        return False
    host = host_header.strip().lower()
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        if end < 0:
            return False
        name = host[1:end]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name in ("localhost", *(e.lower() for e in extra)):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _same_origin(origin: str, host_header: str) -> bool:
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host_header.strip().lower()


def _static(name: str) -> bytes:
    return resources.files("ambient.captions").joinpath("static", name).read_bytes()


def build_app(hub: Hub, *, limits: ServerLimits = ServerLimits(), allow_hosts: Collection[str] = ()) -> web.Application:
    """The application: ``/`` (the page), its CSS and JavaScript, ``/ws`` and ``/stats``."""
    pages = {name: _static(name) for name in STATIC_FILES}  # read once: the files never change at run time

    @web.middleware
    async def guard(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if not host_allowed(request.headers.get("Host"), allow_hosts):
            hub.counters.refused_host += 1
            return web.Response(status=421, text="unknown host name (see ambient captions --allow-host)\n")
        response = await handler(request)
        if not isinstance(response, web.WebSocketResponse):
            response.headers.update(_SECURITY_HEADERS)
        return response

    def page(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(_request: web.Request) -> web.Response:
            return web.Response(body=pages[name], headers={"Content-Type": STATIC_FILES[name]})

        return handler

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(hub.counters.as_dict())

    async def websocket(request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and not _same_origin(origin, request.headers.get("Host", "")):
            hub.counters.refused_host += 1
            return web.Response(status=403, text="cross-origin websocket refused\n")
        if len(hub) >= limits.max_clients:
            hub.counters.refused_too_many += 1
            return web.Response(status=503, text="too many caption pages open\n")
        ws = web.WebSocketResponse(
            heartbeat=limits.heartbeat_s, max_msg_size=limits.max_frame_bytes, compress=False, timeout=_CLOSE_TIMEOUT_S
        )
        client = hub.add()  # the slot is taken before the handshake yields, so a crowd cannot overshoot the cap
        writer: asyncio.Task[None] | None = None
        try:
            await ws.prepare(request)
            writer = asyncio.create_task(_write(ws, client, request.remote, hub, limits))
            client.on_drop = writer.cancel
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.ERROR):
                    hub.counters.dropped_bad_frames += 1
                    await _close(ws, WSCloseCode.UNSUPPORTED_DATA)
                    break
        finally:
            hub.remove(client)
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
            if ws.prepared:
                await _close(ws, WSCloseCode.GOING_AWAY)
        return ws

    app = web.Application(middlewares=[guard], client_max_size=4096)
    app.router.add_get("/", page("index.html"))
    app.router.add_get("/index.html", page("index.html"))
    app.router.add_get("/captions.css", page("captions.css"))
    app.router.add_get("/captions.js", page("captions.js"))
    app.router.add_get("/ws", websocket)
    app.router.add_get("/stats", stats)
    return app


async def _write(
    ws: web.WebSocketResponse, client: PageClient, peer: str | None, hub: Hub, limits: ServerLimits
) -> None:
    """Drain one browser's queue; close the connection when it reads too slowly. The hub cancels
    this task when the browser's queue overflows (see ``PageClient.on_drop``)."""
    try:
        while (text := await client.next()) is not None:
            await asyncio.wait_for(ws.send_str(text), limits.send_timeout_s)
    except asyncio.CancelledError:
        if not client.too_slow:
            raise
        _log.info("caption page too slow, dropped", peer=peer)
    except (asyncio.TimeoutError, TimeoutError):
        hub.counters.dropped_send_timeout += 1
        hub.remove(client)
        _log.info("caption page not reading, dropped", peer=peer)
    except (ConnectionError, RuntimeError):
        pass  # the browser went away; the reader side notices too
    await _close(ws, WSCloseCode.POLICY_VIOLATION)


async def _close(ws: web.WebSocketResponse, code: int) -> None:
    """Close with ``code``; a peer that does not answer (or read) within the close timeout is cut off."""
    with contextlib.suppress(asyncio.TimeoutError, TimeoutError, ConnectionError, RuntimeError):
        await asyncio.wait_for(ws.close(code=code), _CLOSE_TIMEOUT_S)
