"""The LLM operations seam: one interface for every language-model backend.

A backend runs `LlmRequest`s (a prompt laid out by the family, one operation, optionally
a LoRA adapter of the bundle) and returns their outputs:

    NextTokenLogprobs(ids) -> TokenLogprobs   exact next-token log-probs of the ids
    LastHiddenState()      -> HiddenState     final-norm hidden state of the last prompt token
    Generate(max, stop)    -> GeneratedText   greedy continuation

`run` is awaited by the pipeline (cancelling it drops or aborts the work); `run_blocking`
serves scripts and benchmarks. Backends batch across requests themselves: transformers
with a steppable batcher (batching.py), vLLM continuously inside its engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from vidjudge.server.types import LlmOutput, LlmRequest


@dataclass
class EngineStats:
    """What an engine reports after each step (vLLM): prefix-cache counters (tokens; summed since
    start), requests it finished, and its scheduler's running/waiting requests at the last step."""

    prefix_cache_requests: int = 0  # requests that looked up the prefix cache (i.e. were scheduled)
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    finished: int = 0
    running: int = 0
    waiting: int = 0


class LlmBackend(ABC):
    name: str
    dtype: object  # torch dtype the visual embeddings should arrive in
    stats: EngineStats | None = None  # engine counters, where the backend has an engine that reports them

    @abstractmethod
    async def run(self, request: LlmRequest, *, deadline: float | None = None,
                  request_id: str | None = None) -> LlmOutput: ...

    @abstractmethod
    def run_blocking(self, requests: Sequence[LlmRequest]) -> list[LlmOutput]:
        """All requests at once, from a thread that is not the backend's event loop."""

    @abstractmethod
    def queue_depth(self) -> int:
        """Requests accepted and not yet answered."""

    @property
    def errored(self) -> bool:
        """True once the backend cannot serve any more (its engine died)."""
        return False

    @abstractmethod
    def close(self) -> None: ...
