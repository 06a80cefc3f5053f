"""``ambient captions``: live captions in a browser, as a separate small process.

The daemon keeps its private network; this process reads the daemon's Unix socket through the
reference client (:func:`ambient.publish.client.follow`, reconnecting when the daemon restarts) and
serves one page and a websocket on a loopback address.

- :mod:`ambient.captions.hub`: what the page shows (recent finals, the current partial, the
  status line) and the fan-out to browsers, each with a small bounded queue of its own.
- :mod:`ambient.captions.bridge`: the thread that follows the daemon and feeds the hub.
- :mod:`ambient.captions.web`: the aiohttp application (page, websocket, ``/stats``) and its guards.
- ``static/``: the page (HTML, CSS, JavaScript), shipped as package data; no external assets.
"""

from __future__ import annotations

__all__: list[str] = []
