"""Stream positions to wall-clock times, from the capture timestamps of the blocks."""

from __future__ import annotations

import time

import pytest

from ambient.daemon.worker import Timeline


def test_positions_map_through_the_block_that_holds_them() -> None:
    t = Timeline(sample_rate=16000)
    t.add(0, 1000.0)
    t.add(16000, 1001.5)  # a gap of 0.5 s between the first two blocks (dropped audio)
    assert t.wall(0) == 1000.0
    assert t.wall(8000) == pytest.approx(1000.5)
    assert t.wall(16000) == 1001.5
    assert t.wall(24000) == pytest.approx(1002.0)


def test_before_the_oldest_anchor_it_extrapolates_and_old_anchors_are_dropped() -> None:
    t = Timeline(sample_rate=16000, max_anchors=2)
    for k in range(5):
        t.add(k * 1600, 100.0 + k * 0.1)
    assert t.wall(0) == pytest.approx(100.0)  # anchors 0..2 are gone: extrapolated from 3
    assert t.wall(4 * 1600) == pytest.approx(100.4)


def test_without_anchors_it_is_now() -> None:
    before = time.time()
    assert before <= Timeline().wall(123) <= time.time()
