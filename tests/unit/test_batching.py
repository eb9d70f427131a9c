"""The batcher is synchronous: these tests step it with an explicit clock."""

import threading

import pytest

from vidjudge.errors import DeadlineExceeded, InternalError, InvalidVideo, Overloaded
from vidjudge.server.batching import Batcher, BatchWorker, WorkItem


def items(n, deadline=None):
    return [WorkItem(i, deadline=deadline) for i in range(n)]


def test_full_batch_is_released_at_once_and_the_rest_waits():
    b = Batcher(max_batch=3, max_wait_s=1.0, capacity=10)
    for it in items(5):
        b.put(it, now=0.0)
    assert b.wait_time(0.0) == 0.0
    assert [it.payload for it in b.take(0.0)] == [0, 1, 2]
    assert b.take(0.5) == []  # two left, the oldest has waited 0.5 s of 1.0
    assert b.wait_time(0.5) == pytest.approx(0.5)
    assert [it.payload for it in b.take(1.0)] == [3, 4]
    assert b.wait_time(1.0) is None


def test_capacity_bounds_the_queue():
    b = Batcher(max_batch=2, max_wait_s=0.0, capacity=2, name="encode")
    b.put(WorkItem(1), 0.0)
    b.put(WorkItem(2), 0.0)
    with pytest.raises(Overloaded, match="encode queue is full") as e:
        b.put(WorkItem(3), 0.0)
    assert e.value.reason == "encode_queue_full"


def test_expired_items_fail_and_never_reach_the_backend():
    b = Batcher(max_batch=4, max_wait_s=0.0, capacity=10)
    late, ok = WorkItem("late", deadline=1.0), WorkItem("ok", deadline=10.0)
    b.put(late, 0.0)
    b.put(ok, 0.0)
    batch = b.take(2.0)
    assert [it.payload for it in batch] == ["ok"]
    with pytest.raises(DeadlineExceeded):
        late.future.result(timeout=0)


def test_cancelled_items_are_skipped():
    b = Batcher(max_batch=4, max_wait_s=0.0, capacity=10)
    a, c = WorkItem("a"), WorkItem("c")
    b.put(a, 0.0)
    b.put(c, 0.0)
    assert a.future.cancel()
    assert [it.payload for it in b.take(0.0)] == ["c"]
    assert c.future.running()


def test_worker_batches_concurrent_submissions_and_resolves_in_order():
    seen = []

    def backend(xs):
        seen.append(list(xs))
        return [x * 10 for x in xs]

    w = BatchWorker(Batcher(max_batch=8, max_wait_s=0.2, capacity=64), backend)
    try:
        futs = [w.submit(i) for i in range(5)]
        assert [f.result(timeout=5) for f in futs] == [0, 10, 20, 30, 40]
        # All five arrived well inside the 200 ms window: one batch.
        assert seen == [[0, 1, 2, 3, 4]]
    finally:
        w.close()


def test_backend_errors_fail_the_batch_but_not_the_worker():
    calls = {"n": 0}

    def backend(xs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        if calls["n"] == 2:
            raise InvalidVideo("bad frames", reason="bad_frames")
        return xs

    w = BatchWorker(Batcher(max_batch=1, max_wait_s=0.0, capacity=8), backend)
    try:
        with pytest.raises(InternalError, match="RuntimeError: boom"):
            w.submit("x").result(timeout=5)
        with pytest.raises(InvalidVideo, match="bad frames"):
            w.submit("y").result(timeout=5)
        assert w.submit("z").result(timeout=5) == "z"
    finally:
        w.close()


def test_close_fails_waiting_items():
    started = threading.Event()
    release = threading.Event()

    def slow(xs):
        started.set()
        release.wait(5)
        return xs

    w = BatchWorker(Batcher(max_batch=1, max_wait_s=0.0, capacity=8), slow)
    first = w.submit(1)
    assert started.wait(5)
    queued = w.submit(2)
    closer = threading.Thread(target=w.close)
    closer.start()  # the worker is busy with item 1: item 2 is still queued
    with pytest.raises(InternalError, match="shutting down"):
        queued.result(timeout=5)
    release.set()
    closer.join(5)
    assert first.result(timeout=5) == 1  # work already running finishes
