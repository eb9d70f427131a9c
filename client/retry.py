"""Retry with exponential backoff and jitter for the retryable codes."""

from __future__ import annotations

import random
from dataclasses import dataclass

import grpc

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries on UNAVAILABLE and RESOURCE_EXHAUSTED only; everything else is final."""

    max_attempts: int = 5
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    multiplier: float = 2.0

    def backoff(self, attempt: int) -> float:
        """Sleep before retry number `attempt` (1-based): full jitter, capped."""
        cap = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        return random.uniform(0, cap)


NO_RETRY = RetryPolicy(max_attempts=1)
