"""What the client returns: small value objects, converted from protobuf here only."""

from __future__ import annotations

from dataclasses import dataclass, field

from vidjudge.errors import VidjudgeError, error_from_status, status_code_from_int
from vidjudge.v1 import judge_pb2 as pb


@dataclass(frozen=True)
class DimensionScore:
    dimension: str
    score: float  # NaN when `error` is set
    scale_min: float
    scale_max: float
    levels: dict[str, float] = field(default_factory=dict)  # level word -> probability, best first
    head: str = "level_token"
    answer: str = ""  # yes_no: "yes" or "no"
    answer_probability: float = 0.0  # yes_no: probability of `answer`
    rationale: str = ""  # generate: the judge's text
    error: VidjudgeError | None = None  # this dimension alone failed (e.g. unparsable_output)

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def from_pb(cls, r: pb.DimensionResult) -> "DimensionScore":
        return cls(r.dimension, r.score, r.scale_min, r.scale_max, {lv.level: lv.probability for lv in r.levels},
                   r.head, r.answer, r.answer_probability, r.rationale,
                   _error_from_pb(r.error) if r.HasField("error") else None)

    def to_dict(self) -> dict:
        out: dict = {"score": self.score, "scale": [self.scale_min, self.scale_max], "head": self.head}
        if self.levels:
            out["levels"] = self.levels
        if self.answer:
            out["answer"], out["answer_probability"] = self.answer, self.answer_probability
        if self.rationale:
            out["rationale"] = self.rationale
        if self.error is not None:
            out["error"] = {"code": self.error.code.name, "reason": self.error.reason, "message": self.error.message}
        return out


def _error_from_pb(e: pb.Error) -> VidjudgeError:
    return error_from_status(status_code_from_int(e.code), e.message, e.reason, e.kind or None)


@dataclass(frozen=True)
class ScoreResult:
    model: str
    scores: dict[str, DimensionScore]
    timings: dict[str, float]
    video: dict[str, object]

    @classmethod
    def from_pb(cls, m: pb.ScoreResponse) -> "ScoreResult":
        t, v = m.timings, m.video
        return cls(
            model=m.model,
            scores={r.dimension: DimensionScore.from_pb(r) for r in m.results},
            timings={k: getattr(t, k) for k in ("queue_s", "decode_s", "preprocess_s", "encode_s", "llm_s",
                                                 "total_s")},
            video={k: getattr(v, k) for k in ("width", "height", "duration_s", "avg_fps", "codec", "rotation",
                                               "frames_decoded", "decoder")},
        )

    def to_dict(self) -> dict:
        return {"model": self.model, "scores": {k: s.to_dict() for k, s in self.scores.items()},
                "timings": self.timings, "video": self.video}


@dataclass(frozen=True)
class StreamResult:
    """One answer on a ScoreStream: a result or the error for that item."""

    id: str
    result: ScoreResult | None = None
    error: VidjudgeError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def from_pb(cls, m: pb.ScoreStreamResponse) -> "StreamResult":
        if m.WhichOneof("outcome") == "error":
            return cls(m.id, error=_error_from_pb(m.error))
        return cls(m.id, result=ScoreResult.from_pb(m.response))


@dataclass(frozen=True)
class GroupItem:
    """One video's answer in a ScoreGroup: its result or the error for that video alone."""

    id: str
    generator: str
    result: ScoreResult | None = None
    error: VidjudgeError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def from_pb(cls, m: pb.GroupVideoResult) -> "GroupItem":
        if m.WhichOneof("outcome") == "error":
            return cls(m.id, m.generator, error=_error_from_pb(m.error))
        return cls(m.id, m.generator, result=ScoreResult.from_pb(m.response))


@dataclass(frozen=True)
class DimensionInfo:
    name: str
    description: str
    scale_min: float
    scale_max: float
    levels: tuple[str, ...]
    requires_prompt: bool
    head: str = "level_token"
    inputs: tuple[str, ...] = ()  # per-dimension inputs a request must give, e.g. ("question",)
    adapter: str = ""


@dataclass(frozen=True)
class ViewInfo:
    name: str
    num_frames: int
    height: int
    width: int
    strategy: str


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    is_default: bool
    num_frames: int
    height: int
    width: int
    dimensions: tuple[DimensionInfo, ...]
    encoder_backend: str
    scorer_backend: str
    views: tuple[ViewInfo, ...] = ()
    adapters: tuple[str, ...] = ()
    encoder_backends: dict[str, str] = field(default_factory=dict)
    bundle_sha256: str = ""  # the judge's identity (manifest + dimension file)

    @classmethod
    def from_pb(cls, m: pb.ModelInfo) -> "ModelInfo":
        return cls(m.name, m.family, m.is_default, m.sampling.num_frames, m.sampling.height, m.sampling.width,
                   tuple(DimensionInfo(d.name, d.description, d.scale_min, d.scale_max, tuple(d.levels),
                                       d.requires_prompt, d.head, tuple(d.inputs), d.adapter) for d in m.dimensions),
                   m.encoder_backend, m.scorer_backend,
                   tuple(ViewInfo(v.name, v.num_frames, v.height, v.width, v.strategy) for v in m.views),
                   tuple(m.adapters), dict(m.encoder_backends), m.bundle_sha256)
