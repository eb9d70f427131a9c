"""CPU priority of the server's parts: the edge first, admitted work next, new decodes last.

On a machine whose cores are saturated (a burst, a shared box) the scheduler shares them by
niceness. The ladder:

- the event loop (gRPC edge: admission, refusals, responses) and the decode dispatcher: the
  process's own priority;
- stage threads (preprocess, encoder, LLM batching): +5. They finish work already admitted,
  so they still run before new decodes;
- decode worker processes: +10 (the bulk of the CPU, work not yet started).

With idle cores none of this changes anything. Measured with `benchmarks.burst` (640 Score
calls at a limit of 64, 2 cores shared with the 4 client processes): the transformers LLM
thread took 170-300 ms of CPU during the ~0.8 s burst, as much as the event loop; at +5 the
refusal p99 went from 454-730 ms to 283-563 ms over 5 paired runs (better in each).

Linux applies setpriority() to one thread given its id; elsewhere the whole process would be
lowered, so the thread-level call only runs on Linux. Niceness cannot be raised again
without privileges, and threads a lowered thread starts (e.g. torch's intra-op pool) inherit it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

log = logging.getLogger(__name__)

STAGE_THREAD_NICENESS = 5
DECODE_WORKER_NICENESS = 10


def lower_this_thread(by: int = STAGE_THREAD_NICENESS) -> bool:
    """Add `by` to the calling thread's nice value (Linux); True if it was applied."""
    if not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
    except OSError as e:
        log.debug("could not lower thread %d's priority: %s", tid, e)
        return False
    return True


def lower_this_process(by: int = DECODE_WORKER_NICENESS) -> bool:
    """Add `by` to the calling process's nice value; True if it was applied."""
    try:
        os.nice(by)
    except OSError as e:
        log.debug("could not lower the process's priority: %s", e)
        return False
    return True


__all__ = ["lower_this_thread", "lower_this_process", "STAGE_THREAD_NICENESS", "DECODE_WORKER_NICENESS"]
