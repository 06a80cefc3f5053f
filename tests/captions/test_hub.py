"""The hub's bounded per-browser queues, the Host check and the --listen parser (no processes)."""

from __future__ import annotations

import argparse
import asyncio
import json

import pytest

from ambient.captions.hub import Hub, PageClient
from ambient.captions.web import host_allowed
from ambient.cli.captions_cmd import parse_listen


def test_a_partial_replaces_the_queued_partial() -> None:
    c = PageClient(limit=3)
    assert c.offer("p1", partial=True) and c.offer("f1", partial=False) and c.offer("p2", partial=True)
    assert c.pending() == 2
    assert [asyncio.run(c.next()) for _ in range(2)] == ["f1", "p2"]


def test_a_full_queue_drops_partials_then_the_client() -> None:
    c = PageClient(limit=2)
    assert c.offer("f1", partial=False) and c.offer("f2", partial=False)
    assert c.offer("p", partial=True) and c.pending() == 2  # dropped: nothing to replace, no room
    assert not c.offer("f3", partial=False) and c.too_slow
    assert asyncio.run(c.next()) is None


def test_the_hub_drops_a_slow_page_and_keeps_the_others() -> None:
    hub = Hub(client_queue=4)
    slow, fast = hub.add(), hub.add()
    for i in range(10):
        hub.final(f"u{i}", f"text {i}", 1.0, 2.0)
        assert asyncio.run(fast.next()) is not None
    assert len(hub) == 1 and hub.counters.dropped_too_slow == 1 and slow.too_slow


def test_the_snapshot_holds_finals_partial_and_connection() -> None:
    hub = Hub()
    hub.daemon_connected()
    hub.final("a", "hello there", 1.0, 2.0)
    hub.final("b", "", 3.0, 4.0)  # empty finals are not kept
    hub.partial("c", "and the", 5.0)
    snap = json.loads(hub.snapshot())
    assert snap["type"] == "snapshot" and snap["daemon"] == "connected" and snap["status"] == "listening"
    assert [f["text"] for f in snap["finals"]] == ["hello there"]
    assert snap["partial"] == {"id": "c", "text": "and the", "start": 5.0}
    hub.daemon_lost("connection closed")
    snap = json.loads(hub.snapshot())
    assert snap["daemon"] == "down" and snap["partial"] is None and snap["detail"] == "connection closed"


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:8765", True),
        ("localhost:8765", True),
        ("[::1]:8765", True),
        ("LOCALHOST", True),
        ("evil.example:8765", False),  # DNS rebinding: a name the attacker owns
        ("127.0.0.1.evil.example", False),
        ("", False),
        (None, False),
        ("[::1", False),
    ],
)
def test_host_header(host: str | None, ok: bool) -> None:
    assert host_allowed(host) is ok


def test_allowed_host_names() -> None:
    assert host_allowed("kiosk.lan:8765", ["kiosk.lan"]) and not host_allowed("other.lan:8765", ["kiosk.lan"])


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:8765") == ("127.0.0.1", 8765)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("localhost:80") == ("localhost", 80)
    for bad in ("8765", "example.com:80", "127.0.0.1:http", "127.0.0.1:70000", ":80"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_listen(bad)
