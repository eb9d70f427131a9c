"""Admission: a request reserves its place before anything is read or decoded.

Bounds the requests in flight by count and by the inline bytes they hold;
past either bound the request is refused at once with Overloaded
(RESOURCE_EXHAUSTED) rather than queued, so memory stays bounded and callers
can back off or go elsewhere (vLLM issues 18826 and 58192 are the lesson).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from vidjudge.errors import Overloaded, Unavailable


class Admission:
    def __init__(self, max_in_flight: int, max_bytes: int):
        self.max_in_flight = max_in_flight
        self.max_bytes = max_bytes
        self.in_flight = 0
        self.bytes = 0
        self.draining = False
        self._lock = threading.Lock()

    def acquire(self, nbytes: int, count: int = 1) -> None:
        """Reserve `count` places (a group of videos takes one per video) and `nbytes`, all or none."""
        with self._lock:
            if self.draining:
                raise Unavailable("the server is shutting down; retry on another replica", reason="draining")
            if self.in_flight + count > self.max_in_flight:
                raise Overloaded(f"server busy: {self.in_flight} requests in flight (limit {self.max_in_flight})"
                                 + (f"; this group needs {count}" if count > 1 else ""), reason="too_many_requests")
            if self.bytes + nbytes > self.max_bytes:
                raise Overloaded(f"server busy: {self.bytes + nbytes} bytes of video would be held "
                                 f"(limit {self.max_bytes})", reason="too_many_bytes")
            self.in_flight += count
            self.bytes += nbytes

    def add_bytes(self, nbytes: int) -> None:
        """Hold `nbytes` more for a request admitted before its size was known (edge_admission)."""
        with self._lock:
            if self.bytes + nbytes > self.max_bytes:
                raise Overloaded(f"server busy: {self.bytes + nbytes} bytes of video would be held "
                                 f"(limit {self.max_bytes})", reason="too_many_bytes")
            self.bytes += nbytes

    def release(self, nbytes: int, count: int = 1) -> None:
        with self._lock:
            self.in_flight -= count
            self.bytes -= nbytes

    @contextmanager
    def slot(self, nbytes: int, count: int = 1) -> Iterator[None]:
        self.acquire(nbytes, count)
        try:
            yield
        finally:
            self.release(nbytes, count)
