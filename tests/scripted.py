"""A scripted text backend for testing chain mechanics (Video-Bench) deterministically.

Tiny random weights write arbitrary text, so the mechanics of a chain (which calls, in which order,
batched how, what each prompt holds, how answers are parsed, retried and failed) are tested against
this stand-in for the LLM. It is an `LlmBackend` like the real ones, so everything else (decode,
encoders, the family's prompt layout, heads, the gRPC edge) is real. Each call is recorded with the
prompt's text (its token ids decoded by the family's tokenizer) and the number of images in it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vidjudge.server.scorer.base import LlmBackend
from vidjudge.server.types import EmbeddingSpan, Generate, GeneratedText, LlmOutput, LlmRequest, NextTokenLogprobs, TokenLogprobs


@dataclass
class Call:
    text: str  # the prompt, images left out
    images: int  # embedding spans in the prompt
    started: float
    ended: float = 0.0


class ScriptedLlm(LlmBackend):
    name = "scripted"

    def __init__(self, tokenizer, reply: Callable[[str, int], str], delay_s: float = 0.05):
        import torch

        self.dtype = torch.float32
        self.tokenizer = tokenizer
        self.reply = reply  # (prompt text, image count) -> answer text
        self.delay_s = delay_s
        self.calls: list[Call] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def run(self, request: LlmRequest, *, deadline: float | None = None,
                  request_id: str | None = None) -> LlmOutput:
        ids = [i for p in request.prompt.parts if not isinstance(p, EmbeddingSpan) for i in p]
        images = sum(isinstance(p, EmbeddingSpan) for p in request.prompt.parts)
        call = Call(self.tokenizer.decode(ids), images, time.monotonic())
        self.calls.append(call)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)  # a model takes time: concurrent calls overlap
        finally:
            self.in_flight -= 1
            call.ended = time.monotonic()
        if isinstance(request.op, Generate):
            return GeneratedText(self.reply(call.text, images), (), "stop")
        if isinstance(request.op, NextTokenLogprobs):
            import numpy as np

            return TokenLogprobs(-np.arange(len(request.op.token_ids), dtype=np.float64))
        raise TypeError(f"the scripted backend does not do {type(request.op).__name__}")

    def run_blocking(self, requests: Sequence[LlmRequest]) -> list[LlmOutput]:
        raise NotImplementedError

    def queue_depth(self) -> int:
        return self.in_flight

    def close(self) -> None:
        pass
