"""The event server's counters: kept in one mutable record, read as a frozen :class:`ServerStats`."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["ServerCounters", "ServerStats"]


@dataclass(frozen=True, kw_only=True)
class ServerStats:
    """Counters since ``start()``."""

    clients: int  # connected now
    connections: int  # accepted and greeted
    rejected_forbidden: int
    rejected_full: int
    disconnected_slow: int
    partials_dropped: int
    events_published: int
    bad_messages: int
    last_seq: int


@dataclass(kw_only=True)
class ServerCounters:
    """What the server counts as it runs (changed on the event loop's thread only)."""

    connections: int = 0  # accepted and greeted
    rejected_forbidden: int = 0  # refused by the peer-credential allow-lists
    rejected_full: int = 0  # refused at socket.max_clients
    disconnected_slow: int = 0  # dropped because an important event found their queue full
    partials_dropped: int = 0  # partials dropped from full queues
    events_published: int = 0
    bad_messages: int = 0  # client lines that were not valid messages

    def snapshot(self, *, clients: int, last_seq: int) -> ServerStats:
        """The counters with the two figures the server keeps elsewhere: clients now and the last ``seq``."""
        return ServerStats(clients=clients, last_seq=last_seq, **asdict(self))
