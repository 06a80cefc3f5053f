"""Reading Wyoming events with limits, so that a hostile peer costs one connection and nothing more.

A Wyoming event is one JSON header line (``type``, optional ``data``, ``data_length``,
``payload_length``), then ``data_length`` bytes of JSON merged into ``data``, then
``payload_length`` bytes of payload. The ``wyoming`` package's reader has no limits and turns a
malformed header into a silent disconnect; this one checks every length before reading it, bounds
the wait for each part, and raises :class:`FramingError` (sent to the peer as an ``error`` event)
with a code a client can act on. Writing uses the package's own serializer.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from wyoming.event import Event

__all__ = ["FramingError", "Limits", "read_event"]


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Bounds on one event (``wyoming.max_event_bytes`` etc.)."""

    max_event_bytes: int = 65536
    max_payload_bytes: int = 1 << 20
    timeout_s: float = 60.0


class FramingError(Exception):
    """The peer sent something that is not a well-formed, acceptable event."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def _length(header: dict[str, Any], key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FramingError("bad_event", f"{key} must be a non-negative integer")
    if value > limit:
        raise FramingError("too_large", f"{key} {value} exceeds the limit of {limit} bytes")
    return value


def _json_object(raw: bytes, message: str) -> dict[str, Any]:
    """``raw`` parsed as a JSON object, or a ``bad_event`` :class:`FramingError` saying ``message``."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise FramingError("bad_event", message) from None
    if not isinstance(value, dict):
        raise FramingError("bad_event", message)
    return value


async def read_event(reader: asyncio.StreamReader, limits: Limits) -> Event | None:
    """The next event, or None when the peer closed the connection cleanly between events.

    Raises :class:`FramingError` for a malformed or oversized event, ``TimeoutError`` when the peer
    is silent for ``limits.timeout_s`` (between events or inside one)."""
    try:
        line = await asyncio.wait_for(reader.readuntil(b"\n"), limits.timeout_s)
    except asyncio.IncompleteReadError as e:
        if not e.partial.strip():
            return None
        raise FramingError("bad_event", "connection closed inside an event header") from None
    except asyncio.LimitOverrunError:
        raise FramingError("too_large", f"event header longer than {limits.max_event_bytes} bytes") from None
    if len(line) > limits.max_event_bytes:
        raise FramingError("too_large", f"event header longer than {limits.max_event_bytes} bytes")
    header = _json_object(line, "event header is not a JSON object")
    kind = header.get("type")
    if not isinstance(kind, str) or not kind:
        raise FramingError("bad_event", "event header has no type")
    data = header.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FramingError("bad_event", "event data is not a JSON object")
    data_length = _length(header, "data_length", limits.max_event_bytes - len(line))
    payload_length = _length(header, "payload_length", limits.max_payload_bytes)
    try:
        if data_length:
            raw = await asyncio.wait_for(reader.readexactly(data_length), limits.timeout_s)
            data = {**data, **_json_object(raw, "event data section is not a JSON object")}
        payload = (
            await asyncio.wait_for(reader.readexactly(payload_length), limits.timeout_s) if payload_length else None
        )
    except asyncio.IncompleteReadError:
        raise FramingError("bad_event", "connection closed inside an event") from None
    return Event(type=kind, data=data, payload=payload)
