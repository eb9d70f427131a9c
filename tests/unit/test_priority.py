"""The CPU priority ladder (server/priority.py): event loop at the process's niceness, stage
threads +5, decode workers +10. Read back from the kernel, not from our own bookkeeping."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from vidjudge.server.batching import Batcher, BatchWorker
from vidjudge.server.decode import DecodePool
from vidjudge.server.priority import DECODE_WORKER_NICENESS, STAGE_THREAD_NICENESS
from vidjudge.server.types import DecodeLimits

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")


def _expected(base: int, by: int) -> int:
    return min(19, base + by)


def test_stage_threads_run_below_the_caller_and_the_caller_is_untouched():
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen = []

    def backend(batch):
        tid = threading.get_native_id()
        seen.append(os.getpriority(os.PRIO_PROCESS, tid))
        return batch

    w = BatchWorker(Batcher(max_batch=1, max_wait_s=0.0, capacity=4), backend)
    try:
        assert w.submit(1).result(timeout=10) == 1
    finally:
        w.close()
    assert seen == [_expected(base, STAGE_THREAD_NICENESS)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base


def test_decode_workers_run_below_the_stage_threads():
    base = os.getpriority(os.PRIO_PROCESS, 0)
    with DecodePool(1, DecodeLimits()) as pool:
        deadline = time.monotonic() + 60
        while pool.ready < 1 and time.monotonic() < deadline:  # a worker lowers itself as it starts
            time.sleep(0.05)
        (pid,) = pool.worker_pids
        assert os.getpriority(os.PRIO_PROCESS, pid) == _expected(base, DECODE_WORKER_NICENESS)
    assert DECODE_WORKER_NICENESS > STAGE_THREAD_NICENESS > 0
