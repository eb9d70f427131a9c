"""Dynamic batching across requests: a synchronous core and a thin thread around it.

`Batcher` is a plain object a test can step: `put()` items, ask `take(now)` for
a batch. A batch is released when it is full (`max_batch`) or when its oldest
item has waited `max_wait_s`. Items whose future was cancelled or whose
deadline has passed are dropped (and failed) before they reach the backend, so
expired work never costs GPU time. `capacity` bounds the queue: `put()` on a
full queue raises Overloaded instead of growing memory.

`BatchWorker` runs one Batcher on a thread, calling a backend function with the
list of payloads and resolving each item's concurrent.futures.Future; asyncio
callers await them with `asyncio.wrap_future`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Sequence, TypeVar

from vidjudge.errors import DeadlineExceeded, InternalError, Overloaded, VidjudgeError
from vidjudge.server.priority import lower_this_thread

P = TypeVar("P")
log = logging.getLogger(__name__)


@dataclass
class WorkItem(Generic[P]):
    payload: P
    deadline: float | None = None  # time.monotonic() seconds; None = no deadline
    future: Future = field(default_factory=Future)
    enqueued: float = 0.0


class Batcher(Generic[P]):
    def __init__(self, max_batch: int, max_wait_s: float, capacity: int, name: str = "batch"):
        if max_batch < 1 or capacity < max_batch:
            raise ValueError("need 1 <= max_batch <= capacity")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.capacity = capacity
        self.name = name
        self._q: deque[WorkItem[P]] = deque()

    def __len__(self) -> int:
        return len(self._q)

    def put(self, item: WorkItem[P], now: float) -> None:
        if len(self._q) >= self.capacity:
            raise Overloaded(f"the {self.name} queue is full ({self.capacity} items)", reason=f"{self.name}_queue_full")
        item.enqueued = now
        self._q.append(item)

    def _prune(self, now: float) -> None:
        """Drop cancelled and expired items from the queue, failing the expired ones."""
        if not self._q:
            return
        keep: deque[WorkItem[P]] = deque()
        for it in self._q:
            if it.future.cancelled():
                continue
            if it.deadline is not None and now >= it.deadline:
                if it.future.set_running_or_notify_cancel():
                    it.future.set_exception(DeadlineExceeded(
                        f"deadline passed while waiting for the {self.name} stage"))
                continue
            keep.append(it)
        self._q = keep

    def wait_time(self, now: float) -> float | None:
        """Seconds until a batch is due; 0 if one is ready now; None if the queue is empty."""
        self._prune(now)
        if not self._q:
            return None
        if len(self._q) >= self.max_batch:
            return 0.0
        return max(0.0, self._q[0].enqueued + self.max_wait_s - now)

    def take(self, now: float, force: bool = False) -> list[WorkItem[P]]:
        """The next batch if one is due (or any waiting items when `force`), marked running."""
        wait = self.wait_time(now)
        if wait is None or (wait > 0 and not force):
            return []
        batch: list[WorkItem[P]] = []
        while self._q and len(batch) < self.max_batch:
            it = self._q.popleft()
            if it.future.set_running_or_notify_cancel():  # False: cancelled meanwhile
                batch.append(it)
        return batch

    def fail_all(self, exc: BaseException) -> None:
        while self._q:
            it = self._q.popleft()
            if it.future.set_running_or_notify_cancel():
                it.future.set_exception(exc)


def resolve(batch: Sequence[WorkItem[Any]], fn: Callable[[list[Any]], Sequence[Any]],
            observe: Callable[[int, float], None] | None = None) -> None:
    """Run the backend on one batch and settle every item's future (results in order). `observe(size,
    seconds)` runs before any future is settled, so whoever sees a result also sees it counted."""
    t0 = time.perf_counter()
    results: Sequence[Any] | None = None
    error: VidjudgeError | None = None
    try:
        results = fn([it.payload for it in batch])
        if len(results) != len(batch):
            raise InternalError(f"backend returned {len(results)} results for {len(batch)} items")
    except VidjudgeError as e:
        error = e
    except Exception as e:  # a backend bug must not kill the worker thread
        log.exception("batch backend failed")
        error = InternalError(f"{type(e).__name__}: {e}")
    if observe:
        try:
            observe(len(batch), time.perf_counter() - t0)
        except Exception:  # metrics must never leave a batch's futures unsettled
            log.exception("batch observer failed")
    if error is not None:
        for it in batch:
            it.future.set_exception(error)
        return
    for it, r in zip(batch, results):
        it.future.set_result(r)


class BatchWorker(Generic[P]):
    """Drives a Batcher from one thread. `observe(size, seconds)` is called per batch (metrics)."""

    def __init__(self, batcher: Batcher[P], fn: Callable[[list[P]], Sequence[Any]],
                 observe: Callable[[int, float], None] | None = None):
        self.batcher = batcher
        self._fn = fn
        self._observe = observe
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=f"vidjudge-{batcher.name}", daemon=True)
        self._thread.start()

    def submit(self, payload: P, deadline: float | None = None) -> Future:
        item = WorkItem(payload, deadline)
        with self._cv:
            if self._stop:
                raise InternalError(f"the {self.batcher.name} stage is stopped", reason="stopped")
            self.batcher.put(item, time.monotonic())
            self._cv.notify()
        return item.future

    def depth(self) -> int:
        return len(self.batcher)

    def _run(self) -> None:
        lower_this_thread()  # below the event loop, above new decodes (priority.py)
        while True:
            with self._cv:
                while True:
                    if self._stop:
                        return
                    wait = self.batcher.wait_time(time.monotonic())
                    if wait == 0.0:
                        break
                    self._cv.wait(timeout=wait)  # None: until notified
                batch = self.batcher.take(time.monotonic())
            if batch:
                resolve(batch, self._fn, self._observe)

    def close(self, exc: BaseException | None = None) -> None:
        with self._cv:
            self._stop = True
            self.batcher.fail_all(exc or InternalError("server shutting down", reason="stopped"))
            self._cv.notify_all()
        self._thread.join(timeout=5)
