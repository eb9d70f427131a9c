"""What the client returns: small value objects, converted from protobuf here only."""

from __future__ import annotations

from dataclasses import dataclass, field

from vidjudge.errors import VidjudgeError, error_from_status, status_code_from_int
from vidjudge.v1 import judge_pb2 as pb


@dataclass(frozen=True)
class DimensionScore:
    dimension: str
    score: float
    scale_min: float
    scale_max: float
    levels: dict[str, float] = field(default_factory=dict)  # level word -> probability, best first


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
            scores={r.dimension: DimensionScore(r.dimension, r.score, r.scale_min, r.scale_max,
                                                {lv.level: lv.probability for lv in r.levels}) for r in m.results},
            timings={k: getattr(t, k) for k in ("queue_s", "decode_s", "preprocess_s", "encode_s", "llm_s",
                                                 "total_s")},
            video={k: getattr(v, k) for k in ("width", "height", "duration_s", "avg_fps", "codec", "rotation",
                                               "frames_decoded", "decoder")},
        )

    def to_dict(self) -> dict:
        return {"model": self.model,
                "scores": {k: {"score": s.score, "scale": [s.scale_min, s.scale_max], "levels": s.levels}
                           for k, s in self.scores.items()},
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
            e = m.error
            return cls(m.id, error=error_from_status(status_code_from_int(e.code), e.message, e.reason))
        return cls(m.id, result=ScoreResult.from_pb(m.response))


@dataclass(frozen=True)
class DimensionInfo:
    name: str
    description: str
    scale_min: float
    scale_max: float
    levels: tuple[str, ...]
    requires_prompt: bool


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

    @classmethod
    def from_pb(cls, m: pb.ModelInfo) -> "ModelInfo":
        return cls(m.name, m.family, m.is_default, m.sampling.num_frames, m.sampling.height, m.sampling.width,
                   tuple(DimensionInfo(d.name, d.description, d.scale_min, d.scale_max, tuple(d.levels),
                                       d.requires_prompt) for d in m.dimensions),
                   m.encoder_backend, m.scorer_backend)
