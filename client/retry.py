"""Retry with exponential backoff and jitter for the retryable codes."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import grpc

from vidjudge.client.request import error_from_rpc
from vidjudge.errors import DeadlineExceeded

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


class Attempts:
    """Deadline and attempt bookkeeping of one call, shared by the sync and asyncio clients.

        attempts = Attempts(policy, timeout, target)
        while True:
            try:
                return call(request, timeout=attempts.time_left())
            except grpc.RpcError as e:
                sleep(attempts.pause_after(e))   # raises the typed error when it is final
    """

    def __init__(self, policy: RetryPolicy, timeout: float | None, target: str):
        self._clock = time.monotonic
        self.policy = policy
        self.timeout = timeout
        self.target = target
        self.deadline = None if timeout is None else self._clock() + timeout
        self.attempt = 0

    def time_left(self) -> float | None:
        """Seconds left for the next attempt (None: no deadline); raises DeadlineExceeded when none are."""
        self.attempt += 1
        if self.deadline is None:
            return None
        left = self.deadline - self._clock()
        if left <= 0:
            raise DeadlineExceeded(f"no answer from {self.target} within {self.timeout}s")
        return left

    def pause_after(self, e: grpc.RpcError) -> float:
        """Seconds to wait before retrying after `e`; raises its typed error when it is not retried."""
        if e.code() not in RETRYABLE or self.attempt >= self.policy.max_attempts:
            raise error_from_rpc(e) from None
        pause = self.policy.backoff(self.attempt)
        if self.deadline is not None:
            pause = min(pause, max(0.0, self.deadline - self._clock()))
        return pause
