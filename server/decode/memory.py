"""Keep a decode process's freed frame memory for the next video instead of handing it back.

A decode allocates a few large, short-lived buffers per video: swscale's RGB frames and the
stacked output (4.4 MB for 8 frames of 568x320, 50 MB at 1080p). With glibc's defaults these
are returned to the kernel when the video is done (trimmed from the heap top, or unmapped),
and the next video takes every page again as a fresh page fault. Measured on the 2 s 320p
clip of `benchmarks.stages decode`: 2,180 minor faults per video, 22.4 ms per decode against
16.8 ms with the thresholds below (0 faults); decode-all with PyAV, whose decoder recycles
frames from its own pool, takes none either way.

`retain_freed_memory()` raises glibc's mmap threshold to its ceiling (32 MiB: blocks below it
come from the heap) and its trim threshold to 128 MiB (the heap keeps that much free memory
rather than giving it back), so a worker's steady state is its largest video's working set,
held between videos. Outputs over 32 MiB (8 RGB frames at 1080p and up) are still mapped
fresh each time: the ceiling is glibc's. Decode workers call it once at start; elsewhere
(musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc refuses more (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 128 << 20


def retain_freed_memory() -> bool:
    """Set the thresholds above for this process; True where glibc took both."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        log.debug("no mallopt here: freed frame memory goes back to the system as usual")
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not ok:
        log.debug("mallopt refused the frame-memory thresholds")
    return ok


__all__ = ["retain_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]
