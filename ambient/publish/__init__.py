"""Delivering events: the wire protocol, the Unix-socket server, the durable event log, a client.

- ``protocol``: typed, versioned messages (JSON Lines) and their parsers.
- ``server``: ``EventServer``, the asyncio Unix-socket server that fans events out to clients.
- ``eventlog``: ``EventLog``, the append-only, crash-safe JSON Lines log.
- ``peercred``: SO_PEERCRED peer credentials and the allow-list rule.
- ``client``: a blocking client with reconnects (``ambient listen`` uses it).

The package knows nothing of audio or models. The daemon appends an event to the log, then
publishes it. Import from the submodules; this package module stays empty so that importing the
client does not pull in the server.
"""

__all__: list[str] = []
