"""How the vLLM backend takes a LOVE prompt (see server/families/love.py)."""

from __future__ import annotations

from vidjudge.server.families.base import VllmAdapter
from vidjudge.server.types import LlmPrompt


class LoveVllm(VllmAdapter):
    def __init__(self, family):
        self.family = family

    def engine_kwargs(self) -> dict:
        raise NotImplementedError("LOVE on vLLM: not implemented yet")

    def prompt(self, prompt: LlmPrompt) -> dict:
        raise NotImplementedError("LOVE on vLLM: not implemented yet")
