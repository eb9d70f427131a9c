"""What the rescore modules hand each other: items, jobs, judge facts, outcomes. No pyarrow here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Protocol

import grpc

# Failures worth another try later (the server was full, starting, draining, or the call ran out
# of time). Every other status is a verdict on the video or the request and is committed as a row.
TRANSIENT_CODES = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN"})


@dataclass(frozen=True)
class DimensionSpec:
    """What the driver must know about a dimension to plan rows before scoring."""

    name: str
    requires_prompt: bool = False
    inputs: tuple[str, ...] = ()  # input names the dimension takes (e.g. ("question",))


@dataclass(frozen=True)
class JudgeInfo:
    """The judge a run scores with. `checksum` keys the skip rule: rows of another judge are not "done"."""

    name: str
    checksum: str
    dimensions: Mapping[str, DimensionSpec]

    def wanted(self, requested: tuple[str, ...], has_prompt: bool,
               inputs: dict[str, dict[str, str]] | None = None) -> tuple[str, ...]:
        """Dimensions a manifest row is scored on: those asked for, else every one it can be scored on,
        i.e. whose prompt and inputs it has (the server's rule for a request naming no dimension)."""
        if requested:
            return requested
        inputs = inputs or {}
        return tuple(d.name for d in self.dimensions.values()
                     if (has_prompt or not d.requires_prompt) and all(inputs.get(d.name, {}).get(i) for i in d.inputs))


@dataclass(frozen=True)
class Item:
    """One manifest row that still has work: its id, where the video is, and the dimensions left to score."""

    id: str
    path: str
    prompt: str = ""
    generator: str = ""
    dimensions: tuple[str, ...] = ()
    # dimension -> {input name: value}, e.g. {"love_qa": {"question": "Is there a cat?"}}
    inputs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def inputs_json(self) -> str:
        return json.dumps(self.inputs, sort_keys=True, separators=(",", ":"))


@dataclass
class Job:
    """One call to a judge: the unit of dedupe (identical content, prompt, inputs and dimensions)."""

    key: str
    data: bytes
    prompt: str
    dimensions: tuple[str, ...]
    inputs: Mapping[str, Mapping[str, str]]
    video_sha256: str


class Scorer(Protocol):
    """A judge the driver can await: in-process pipeline or gRPC servers."""

    info: JudgeInfo
    mode: str

    async def score(self, job: Job) -> tuple[object, str]:
        """(the judge's result: a server or client ScoreResult, who scored it); raises a vidjudge error
        (its `scored_by` attribute, when set, names who refused)."""

    async def aclose(self) -> None: ...


def status_name(code: grpc.StatusCode | str) -> str:
    return code if isinstance(code, str) else code.name

