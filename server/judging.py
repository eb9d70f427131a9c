"""The handle a head judges through: one video (and its group), the family's prompt builders, the LLM.

A head is a small program over LLM operations (heads.py): most ask one question and read one
answer; a chain asks several in turn (Video-Bench); a group head asks one question about every
video of a group. `Judge` gives them what they may use and nothing else: the request's texts, the
encoded videos, `family.prompt` / `family.chat` to lay prompts out, and `ask` to run one operation
(batched with every other request's by the LLM backend, so step k of many videos' chains runs
together). The pipeline builds one Judge per (request, dimension).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vidjudge.server.types import EncodedVideo, LlmOp, LlmOutput, LlmPrompt, LlmRequest


@dataclass(frozen=True)
class Member:
    """One video of a group (ScoreGroup): the client's id for it, the model that generated it, its embeddings."""

    id: str
    generator: str
    video: EncodedVideo


@dataclass
class Judge:
    family: Any  # families.base.Family
    llm: Any  # scorer.base.LlmBackend
    prompt_text: str  # the generation prompt of the request ('' when none)
    inputs: dict[str, str]  # this dimension's per-request inputs (e.g. {"question": ...})
    members: list[Member]  # the videos being judged; one outside group scoring
    target: int = 0  # which member this judgement is for (per-video heads)
    deadline: float | None = None
    request_id: str = ""
    calls: int = field(default=0)  # LLM operations asked so far (reported by benchmarks)

    @property
    def video(self) -> EncodedVideo:
        return self.members[self.target].video

    @property
    def others(self) -> list[Member]:
        """The group's other videos (references for static quality)."""
        return [m for i, m in enumerate(self.members) if i != self.target]

    def question(self, dim) -> str:
        return dim.render_question(self.prompt_text, self.inputs)

    async def ask(self, prompt: LlmPrompt, op: LlmOp, adapter: str | None = None) -> LlmOutput:
        self.calls += 1
        return await self.llm.run(LlmRequest(prompt, op, adapter), deadline=self.deadline,
                                  request_id=f"{self.request_id}-{self.calls}")
