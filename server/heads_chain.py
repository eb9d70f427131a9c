"""Chains of LLM calls declared in the dimension file (Video-Bench's method, DESIGN.md 2.2).

A `chain` dimension lists steps; each step is a chat turn answered greedily (temperature 0), whose
answer can be kept under a name for the steps after it. The last answer is parsed for the score and
returned as the rationale. Video-Bench's alignment chain is five steps (prompt-blind description, two
question-asking text-only assistants, answers from the frames, the judgement); its static quality is
one step with the other generators' first frames as unscored references. A `group_chain` judges every
video of a group in one call (dynamic quality) and reads one score per video, in the order shown.

Every call goes through the Judge, i.e. through the LLM backend's batching: the same step of many
videos' chains runs together. Output that does not parse is asked again once with the dimension's
reminder appended; then the dimension (for that video only) gets a typed error, never a default score.
"""

from __future__ import annotations

from vidjudge.errors import JudgeOutputError
from vidjudge.server.heads import Head
from vidjudge.server.types import DimensionScore, Frames, Generate, GeneratedText, Turn

_VIDEO_PARTS = ("{frames}", "{first_frame}", "{references}", "{all_videos}")


def _fill(text: str, values: dict[str, str]) -> str:
    # str.replace, not str.format: prompts and earlier answers may contain braces.
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


class ChainHead(Head):
    """A per-video chain. `run` judges `judge.video`; the group's other videos serve as references."""

    def operation(self):  # pragma: no cover - chains ask through `run`
        raise NotImplementedError("a chain asks several questions: see run()")

    def result(self, output):  # pragma: no cover - chains read their answer in `run`
        raise NotImplementedError("a chain reads its answer in run()")

    @property
    def engine(self) -> str:
        return "generate"

    def sizing(self) -> tuple[list[tuple[str, str]], int]:
        # Every step's text at once (a later step may quote them all) and every answer but the last.
        d = self.dim
        texts = " ".join([*d.texts.values(), *(t for st in d.step for t in (*st.user, st.system or ""))])
        return [(texts, "")], sum(st.max_tokens for st in d.step)

    def _parts(self, step, judge, values: dict[str, str]) -> tuple:
        parts: list = []
        for part in step.user:
            if part == "{frames}":
                parts.append(Frames(judge.video))
            elif part == "{first_frame}":
                parts.append(Frames(judge.video, first_only=True))
            elif part == "{references}":
                for k, other in enumerate(judge.others, start=1):
                    parts += [f"This example is from model {k}\n", Frames(other.video, first_only=True)]
            elif part == "{all_videos}":
                for m in judge.members:
                    parts += [f"\n{len(m.video.spans)} frames from {m.generator or m.id}\n", Frames(m.video)]
            else:
                parts.append(_fill(part, values))
        return tuple(parts)

    def _values(self, judge) -> dict[str, str]:
        member = judge.members[judge.target]
        return {"prompt": judge.prompt_text, **self.dim.texts, "generator": member.generator or member.id,
                "n_frames": str(len(member.video.spans)), **judge.inputs}

    async def _ask(self, judge, step, values: dict[str, str], hint: str = "") -> str:
        parts = self._parts(step, judge, values)
        if hint:
            parts = (*parts, hint)
        turn = Turn(parts, _fill(step.answer_prefix, values),
                    None if step.system is None else _fill(step.system, values))
        out = await judge.ask(judge.family.chat(turn), Generate(max_tokens=step.max_tokens), self.dim.adapter)
        if not isinstance(out, GeneratedText):
            raise TypeError(f"a chain step needs generated text, got {type(out).__name__}")
        return out.text

    async def _answers(self, judge) -> tuple[dict[str, str], str]:
        """Run every step but the last; return the kept values and the last step's answer."""
        import re

        values = self._values(judge)
        steps = self.dim.step
        for step in steps[:-1]:
            text = await self._ask(judge, step, values)
            if step.keep:
                m = re.search(step.extract, text, re.S) if step.extract else None
                values[step.keep] = (m.group(1) if m else text).strip()
        return values, await self._ask(judge, steps[-1], values)

    async def run(self, judge) -> DimensionScore:
        values, text = await self._answers(judge)
        value = self.dim.parse(text)
        if value is None:  # asked again once, with the reminder
            text = await self._ask(judge, self.dim.step[-1], values, self.dim.retry_hint)
            value = self.dim.parse(text)
        if value is None:
            return self.failed(self._unparsable("no score"), rationale=text)
        return self._score(value, rationale=text)

    def _unparsable(self, what: str) -> JudgeOutputError:
        d = self.dim
        return JudgeOutputError(f"dimension {d.name}: {what} in the judge's answer ({d.parser}, scale "
                                f"[{d.scale_min:g}, {d.scale_max:g}]; asked twice)")


class GroupChainHead(ChainHead):
    """One chain over every video of a group; one score per video, in the order they were shown."""

    group = True

    async def run(self, judge) -> DimensionScore:
        return (await self.run_group(judge))[judge.target]

    async def run_group(self, judge) -> list[DimensionScore]:
        n = len(judge.members)
        values, text = await self._answers(judge)
        scores = self.dim.parse_all(text)
        if len(scores) != n:  # asked again once, with the reminder
            text = await self._ask(judge, self.dim.step[-1], values, self.dim.retry_hint)
            scores = self.dim.parse_all(text)
        if len(scores) != n:
            # Scores cannot be matched to videos (Video-Bench assigns them by position regardless): none is given.
            err = self._unparsable(f"{len(scores)} scores for {n} videos")
            return [self.failed(err, rationale=text) for _ in range(n)]
        out = []
        for s in scores:
            on_scale = self.dim.scale_min <= s <= self.dim.scale_max
            out.append(self._score(s, rationale=text) if on_scale else
                       self.failed(self._unparsable(f"score {s:g} off the scale"), rationale=text))
        return out
