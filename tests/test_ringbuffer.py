"""Ring buffer and hop scheduler: absolute addressing, wrap-around, skipping stale windows."""

from __future__ import annotations

import threading

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from listener.audio.ringbuffer import RingBuffer
from listener.audio.scheduler import HopScheduler


def test_read_by_absolute_index_across_wraps():
    rb = RingBuffer(10)
    data = np.arange(37, dtype=np.float32)
    for i in range(0, 37, 3):
        rb.write(data[i : i + 3])
    assert rb.total == 37 and rb.oldest == 27
    np.testing.assert_array_equal(rb.read(27, 37), data[27:37])
    np.testing.assert_array_equal(rb.read(30, 35), data[30:35])
    np.testing.assert_array_equal(rb.latest(4), data[33:37])
    # overwritten samples are clamped away, never returned stale
    np.testing.assert_array_equal(rb.read(20, 30), data[27:30])
    # nothing past what was written
    np.testing.assert_array_equal(rb.read(35, 50), data[35:37])


def test_block_larger_than_capacity_keeps_newest():
    rb = RingBuffer(8)
    rb.write(np.arange(5, dtype=np.float32))
    rb.write(np.arange(100, 120, dtype=np.float32))
    assert rb.total == 25
    np.testing.assert_array_equal(rb.read(0, 25), np.arange(112, 120, dtype=np.float32))


def test_startup_window_is_what_exists():
    rb = RingBuffer(100)
    rb.write(np.ones(30, np.float32))
    assert rb.read(-70, 30).size == 30


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 50), st.lists(st.integers(0, 80), max_size=30))
def test_matches_a_plain_array(capacity, sizes):
    rb = RingBuffer(capacity)
    ref = np.zeros(0, np.float32)
    for n in sizes:
        block = np.random.default_rng(n).random(n).astype(np.float32)
        rb.write(block)
        ref = np.concatenate([ref, block])
        lo = max(0, len(ref) - capacity)
        np.testing.assert_array_equal(rb.read(0, len(ref)), ref[lo:])


def test_concurrent_writer_reader_sees_consistent_windows():
    """A window copied while the reader thread writes is always a contiguous run."""
    rb = RingBuffer(1000)
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set() and i < 200_000:
            rb.write(np.arange(i, i + 7, dtype=np.float32))
            i += 7

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(2000):
            total = rb.total
            w = rb.read(total - 500, total)
            if w.size > 1:
                assert np.all(np.diff(w) == 1.0)
    finally:
        stop.set()
        t.join(timeout=10)


def test_scheduler_catch_up_scores_every_window():
    s = HopScheduler(10)
    assert s.take_next(9) is None
    got = []
    while (e := s.take_next(35)) is not None:
        got.append(e)
    assert got == [10, 20, 30] and s.skipped == 0
    assert s.final(35) == 35
    assert s.final(35) is None


def test_scheduler_skips_stale_windows_newest_wins():
    s = HopScheduler(10)
    assert s.take_newest(10) == 10
    assert s.take_newest(15) is None
    assert s.take_newest(57) == 50  # 20, 30, 40 are stale
    assert s.skipped == 3
    assert s.take_newest(60) == 60
    assert s.skipped == 3
    assert s.final(60) is None
