"""Utterance ids: ULIDs, unique, sortable, strictly increasing."""

from __future__ import annotations

import re
import threading
import time

from ambient.daemon.ids import UlidGenerator

_ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


def test_ids_are_ulids_that_strictly_increase() -> None:
    g = UlidGenerator()
    ids = [g.new() for _ in range(20000)]  # many share a millisecond
    assert all(_ULID.fullmatch(i) for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_the_time_prefix_is_the_current_millisecond() -> None:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    before = time.time_ns() // 1_000_000
    uid = UlidGenerator().new()
    after = time.time_ns() // 1_000_000
    ms = 0
    for c in uid[:10]:
        ms = ms * 32 + alphabet.index(c)
    assert before <= ms <= after


def test_ids_from_several_threads_never_collide() -> None:
    g = UlidGenerator()
    out: list[list[str]] = [[] for _ in range(4)]

    def work(k: int) -> None:
        out[k].extend(g.new() for _ in range(2000))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [i for part in out for i in part]
    assert len(set(flat)) == len(flat)
