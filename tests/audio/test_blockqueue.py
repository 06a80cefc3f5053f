"""The capture hand-off queue: bounded, drop-oldest for the callback, backpressure for readers."""

from __future__ import annotations

import threading
import time

import pytest

from ambient.audio.blockqueue import BlockQueue


def test_offer_never_waits_and_drops_the_oldest_when_full() -> None:
    q: BlockQueue[int] = BlockQueue(capacity=3)
    assert [q.offer(i) for i in range(5)] == [True, True, True, False, False]
    assert q.dropped == 2 and len(q) == 3
    assert [q.get(timeout=0), q.get(timeout=0), q.get(timeout=0)] == [2, 3, 4]
    assert q.get(timeout=0) is None


def test_put_waits_for_room_and_times_out() -> None:
    q: BlockQueue[int] = BlockQueue(capacity=1)
    assert q.put(1, timeout=0)
    assert not q.put(2, timeout=0.05)
    assert q.dropped == 0


def test_blocked_put_resumes_when_the_consumer_takes_an_item() -> None:
    q: BlockQueue[int] = BlockQueue(capacity=2)
    done = threading.Event()

    def producer() -> None:
        for i in range(100):
            q.put(i)
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    got = [q.get(timeout=10) for _ in range(100)]
    t.join(10)
    assert done.is_set() and got == list(range(100))  # nothing lost, order kept


def test_get_wakes_up_for_an_item_offered_from_another_thread() -> None:
    q: BlockQueue[str] = BlockQueue(capacity=4)
    threading.Timer(0.05, q.offer, args=("x",)).start()
    assert q.get(timeout=10) == "x"


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        BlockQueue(capacity=0)


def test_a_lazy_offer_does_not_wake_the_consumer_but_loses_nothing() -> None:
    q: BlockQueue[int] = BlockQueue(capacity=10)
    q.lazy = True
    got: list[tuple[int | None, float]] = []

    def consumer() -> None:
        t0 = time.monotonic()
        got.append((q.get(timeout=0.5), time.monotonic() - t0))

    t = threading.Thread(target=consumer)
    t.start()
    time.sleep(0.05)  # the consumer is waiting
    q.offer(1)
    t.join(5)
    item, waited = got[0]
    assert item == 1 and waited >= 0.45  # collected at the consumer's timeout, not woken at once
    got.clear()
    t = threading.Thread(target=consumer)
    t.start()
    time.sleep(0.05)
    q.offer(2, wake=True)  # an urgent item (a failed stream) wakes it even when lazy
    t.join(5)
    assert got[0][0] == 2 and got[0][1] < 0.4
    q.lazy = False
    got.clear()
    t = threading.Thread(target=consumer)
    t.start()
    time.sleep(0.05)
    q.offer(3)
    t.join(5)
    assert got[0][0] == 3 and got[0][1] < 0.4
