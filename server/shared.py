"""Concurrent requests for the same video share one decode and one encode.

`SharedWork.run(key, start, deadline)` starts `start()` for the first request with a
key and lets later requests with the same key join it while it runs. Every waiter
keeps its own deadline and cancellation: leaving (deadline, client gone) never stops
the work for the others; the work is cancelled only when no waiter is left. Finished
work is forgotten at once: this shares work in flight, it is not a cache.

Keys are built by the pipeline from the content (sha256 of inline bytes; path, size and
modification time for server-side paths) and the bundle, so two bundles never share.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidjudge.server.types import VideoSource


@dataclass
class Progress:
    """Where shared work is, as its waiters see it (e.g. in their deadline messages)."""

    stage: str = ""

    def __str__(self) -> str:
        return self.stage


@dataclass
class _Entry:
    task: asyncio.Future
    progress: Progress
    waiters: int = 0


class SharedWork:
    def __init__(self) -> None:
        self._entries: dict[Hashable, _Entry] = {}
        self.joined = 0  # requests that joined work already in flight (metrics)

    def __len__(self) -> int:
        return len(self._entries)

    async def run(self, key: Hashable, start: Callable[[Progress], Awaitable[Any]],
                  wait: Callable[[Awaitable[Any], Progress], Awaitable[Any]]) -> Any:
        """The result of the work for `key`, started now (`start(progress)`, which may note its stage in
        `progress`) or joined. `wait(awaitable, progress)` is how this waiter waits (its deadline); it is
        given a shielded view, so this waiter timing out or being cancelled does not cancel the work for
        the others."""
        entry = self._entries.get(key)
        if entry is None:
            progress = Progress()
            entry = _Entry(asyncio.ensure_future(start(progress)), progress)
            self._entries[key] = entry
            entry.task.add_done_callback(lambda _t, key=key, entry=entry: self._forget(key, entry))
        else:
            self.joined += 1
        entry.waiters += 1
        try:
            return await wait(asyncio.shield(entry.task), entry.progress)
        finally:
            entry.waiters -= 1
            if entry.waiters == 0 and not entry.task.done():
                entry.task.cancel()  # nobody is left to want it
                self._forget(key, entry)

    def _forget(self, key: Hashable, entry: _Entry) -> None:
        if self._entries.get(key) is entry:
            del self._entries[key]


def content_key(source: VideoSource) -> tuple:
    """Identity of a video's content: sha256 of inline bytes; (path, size, mtime) for a server-side file."""
    if source.data is not None:
        return ("sha256", hashlib.sha256(source.data).hexdigest())
    st = Path(source.path).stat()  # type: ignore[arg-type]
    return ("file", str(source.path), st.st_size, st.st_mtime_ns)
