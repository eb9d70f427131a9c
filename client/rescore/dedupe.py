"""Identical videos are decoded, encoded and scored once per run.

Two manifest rows share one call to the judge when the video bytes are identical (sha256) and so is
everything else the judge reads: the dimensions, their inputs, and the prompt if any of those
dimensions uses it. The first row's call is awaited by the others; its result is kept (bounded
LRU) for identical rows that come later in the run.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from vidjudge.client.rescore.types import Item, JudgeInfo


def content_sha256(data: bytes) -> str:
    # hashlib releases the GIL on large buffers: callers hash on a thread pool.
    return hashlib.sha256(data).hexdigest()


def job_key(video_sha256: str, item: Item, judge: JudgeInfo) -> str:
    uses_prompt = any(judge.dimensions[d].requires_prompt for d in item.dimensions if d in judge.dimensions)
    ident = [video_sha256, sorted(item.dimensions), item.inputs_json(), item.prompt if uses_prompt else None]
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


@dataclass
class Claim:
    """What a row should do with its key: score it (`first`), wait for the call in flight, or reuse."""

    first: bool = False
    cached: Any = None


@dataclass
class Deduper:
    cache_size: int = 100_000
    _waiting: dict[str, list[Item]] = field(default_factory=dict)
    _done: OrderedDict = field(default_factory=OrderedDict)

    def claim(self, key: str, item: Item) -> Claim:
        if key in self._done:
            self._done.move_to_end(key)
            return Claim(cached=self._done[key])
        if key in self._waiting:
            self._waiting[key].append(item)
            return Claim()
        self._waiting[key] = []
        return Claim(first=True)

    def finish(self, key: str, outcome: Any, keep: bool) -> list[Item]:
        """The rows that waited on `key`; the outcome is kept for later identical rows when `keep`
        (a transient failure is not: the next identical row tries again)."""
        waiters = self._waiting.pop(key, [])
        if keep:
            self._done[key] = outcome
            if len(self._done) > self.cache_size:
                self._done.popitem(last=False)
        return waiters

    @property
    def in_flight(self) -> int:
        return len(self._waiting)
