"""Typed messages passed between pipeline stages, all in one module:

    ScoreRequestData -> DecodeRequest -> DecodedVideo (named views)
      -> PreprocessedVideo (one input per encoder) -> EncodedVideo (embedding spans)
      -> LlmRequest (prompt parts + one LLM operation) -> LlmOutput -> DimensionScore

Protobuf never crosses into the pipeline: the gRPC edge converts to and from these.
Every stage consumes one of these and produces the next; none reaches back. What is
model-specific (which frames, how they are resized, which encoders, how a prompt is
laid out) is decided by the bundle's family (server/families/) and carried here as
data, so the stages themselves never branch on a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, Union, runtime_checkable

import numpy as np

# --------------------------------------------------------------------------- the request


@dataclass(frozen=True)
class DecodeLimits:
    """Server-side ceilings no request can raise (see config.LimitsConfig)."""

    max_bytes: int = 256 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    max_frames: int = 20_000
    max_duration_s: float = 3600.0
    timeout_s: float = 60.0


@dataclass(frozen=True)
class VideoSource:
    """Either inline bytes or a path already checked against the allowed roots."""

    data: bytes | None = None
    path: Path | None = None

    def __post_init__(self) -> None:
        if (self.data is None) == (self.path is None):
            raise ValueError("VideoSource needs exactly one of data or path")

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.path.stat().st_size  # type: ignore[union-attr]


# --------------------------------------------------------------------------- decode: views


@dataclass(frozen=True)
class StreamFacts:
    """What is known of a video stream before its frames are chosen (header, or a packet scan)."""

    num_frames: int  # frames in presentation order; 0 when unknown
    duration_s: float  # seconds
    fps: float  # average frame rate; 0 when unknown


@dataclass(frozen=True)
class FrameTargets:
    """The frames a view wants, in the order it wants them (repeats allowed). Exactly one of:

    - `times_s`: presentation times, seconds from the stream's first frame; each takes the
      nearest frame (ties: the earlier), so variable-frame-rate files sample what is shown then.
    - `indices`: frame numbers in presentation order (0-based), as index-based loaders
      (decord, InternVL/LOVE, Video-Bench) count them.
    """

    times_s: tuple[float, ...] | None = None
    indices: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if (self.times_s is None) == (self.indices is None):
            raise ValueError("FrameTargets needs exactly one of times_s or indices")

    def __len__(self) -> int:
        return len(self.times_s if self.times_s is not None else self.indices)  # type: ignore[arg-type]


@runtime_checkable
class FrameSampler(Protocol):
    """Which frames a view takes. Implementations are small frozen dataclasses (they travel to
    decode worker processes by pickle), e.g. decode.sampling.SegmentCentres."""

    def targets(self, facts: StreamFacts) -> FrameTargets: ...


@runtime_checkable
class FrameTransform(Protocol):
    """What a view does to each chosen frame, in the decode worker (so only view-sized arrays
    come back): upright native-size RGB uint8 (H, W, 3) -> the view's frame. `k` is the frame's
    position in the view (transforms that differ per clip use it). E.g. decode.transforms.Resize."""

    def __call__(self, rgb: np.ndarray, k: int) -> np.ndarray: ...


@dataclass(frozen=True)
class ViewSpec:
    """One view of a video: a sampler and a per-frame transform, under a name the family reads back."""

    name: str
    sampler: FrameSampler
    transform: FrameTransform


@dataclass(frozen=True)
class DecodeRequest:
    """Every view one request needs, decoded in one pass over the file (frames shared by
    several views are decoded once)."""

    views: tuple[ViewSpec, ...]

    def __post_init__(self) -> None:
        names = [v.name for v in self.views]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"a decode request needs one or more uniquely named views, got {names}")


@dataclass(frozen=True)
class VideoInfo:
    """Facts about the decoded file, returned to the caller for debugging."""

    width: int
    height: int
    duration_s: float
    avg_fps: float
    codec: str
    rotation: int = 0  # degrees clockwise applied to the frames
    frames_decoded: int = 0  # frames actually decoded to sample from (cost indicator)
    decoder: str = "software"  # "software" or "nvdec"


@dataclass
class FrameView:
    """The frames of one view, in the order its targets asked for them."""

    frames: np.ndarray  # (T, ...) whatever the view's transform returns, stacked; uint8 RGB for Resize
    timestamps_s: np.ndarray  # (T,) float64, presentation time of each frame from the stream's start
    indices: np.ndarray | None = None  # (T,) int64 presentation-order frame numbers, where known


@dataclass
class DecodedVideo:
    views: dict[str, FrameView]
    info: VideoInfo
    decode_s: float = 0.0  # seconds the worker spent decoding (set by the decode pool)


# --------------------------------------------------------------------------- preprocess -> encode


@dataclass
class PreprocessedVideo:
    """One video's input to each of its family's encoders, plus what the prompt needs later."""

    # encoder name -> this video's input (fixed shape per bundle), or a list of such items (one per frame
    # for image encoders: each item is batched on its own, so videos with different frame counts batch)
    inputs: dict[str, np.ndarray | list[np.ndarray]]
    seconds_per_t: float | None = None  # seconds one temporal step of the visual grid spans (rotary time axis)


@dataclass(frozen=True)
class EmbeddingSpan:
    """Visual embeddings that take the place of `len(embeds)` prompt tokens.

    `embeds` is (n, hidden): a NumPy array, or a torch tensor in the language model's dtype
    (bf16 on a GPU) when the encoder ran on the same device. `grid_thw` / `seconds_per_t`
    describe the tokens' layout for models with multi-axis rotary positions (Qwen mRoPE);
    None for models that number visual tokens like text.
    """

    embeds: Any
    grid_thw: tuple[int, int, int] | None = None
    seconds_per_t: float | None = None

    @property
    def num_tokens(self) -> int:
        return int(self.embeds.shape[0])


@dataclass
class EncodedVideo:
    """Every embedding span a family's encoders produced for one video, by name."""

    spans: dict[str, EmbeddingSpan]


# --------------------------------------------------------------------------- the language model


@dataclass(frozen=True)
class Frames:
    """A video's frames as part of a chat turn: all of them, or only the first (a reference picture)."""

    video: EncodedVideo
    first_only: bool = False


TurnPart = Union[str, Frames]


@dataclass(frozen=True)
class Turn:
    """One chat exchange as a head writes it: an optional system message, the user's content (text and
    frames, in order), and the start of the assistant's answer. The family lays it out (family.chat)."""

    user: tuple[TurnPart, ...]
    answer_prefix: str = ""
    system: str | None = None


PromptPart = Union[tuple[int, ...], EmbeddingSpan]


@dataclass(frozen=True)
class LlmPrompt:
    """A prompt as the language model sees it: runs of token ids and embedding spans, in order.

    The family lays it out (template, placeholders); each LLM backend turns it into its own
    input form through the family's adapter for that backend.
    """

    parts: tuple[PromptPart, ...]

    @property
    def num_tokens(self) -> int:
        return sum(p.num_tokens if isinstance(p, EmbeddingSpan) else len(p) for p in self.parts)

    @property
    def text_ids(self) -> tuple[int, ...]:
        return tuple(i for p in self.parts if not isinstance(p, EmbeddingSpan) for i in p)


@dataclass(frozen=True)
class NextTokenLogprobs:
    """Exact log-probabilities (full-vocabulary softmax) of these ids as the next token."""

    token_ids: tuple[int, ...]


@dataclass(frozen=True)
class LastHiddenState:
    """The final-norm hidden state of the prompt's last token."""


@dataclass(frozen=True)
class Generate:
    """Greedy (temperature 0) continuation, stopped at `max_tokens`, EOS or any `stop` string
    (the stop string is not part of the text)."""

    max_tokens: int = 256
    stop: tuple[str, ...] = ()


LlmOp = Union[NextTokenLogprobs, LastHiddenState, Generate]


@dataclass(frozen=True)
class LlmRequest:
    prompt: LlmPrompt
    op: LlmOp
    adapter: str | None = None  # a LoRA adapter of the bundle, by name; None = the base model


@dataclass(frozen=True)
class TokenLogprobs:
    values: np.ndarray  # (len(op.token_ids),) float64, in the op's order


@dataclass(frozen=True)
class HiddenState:
    vector: np.ndarray  # (hidden,) float32


@dataclass(frozen=True)
class GeneratedText:
    text: str
    token_ids: tuple[int, ...]
    finish_reason: str = ""  # "stop", "length", ...


LlmOutput = Union[TokenLogprobs, HiddenState, GeneratedText]


# --------------------------------------------------------------------------- results


@dataclass
class DimensionScore:
    dimension: str
    score: float
    scale_min: float
    scale_max: float
    head: str = "level_token"
    levels: list[str] = field(default_factory=list)  # level_token: level words, best first
    probabilities: list[float] = field(default_factory=list)  # ... and their probabilities
    answer: str = ""  # yes_no: "yes" or "no"
    answer_probability: float = 0.0  # yes_no: probability of `answer`
    rationale: str = ""  # generate: the model's text
    error: Any = None  # a VidjudgeError when this dimension alone failed (e.g. unparsable output); no score then


@dataclass
class StageTimings:
    queue_s: float = 0.0
    decode_s: float = 0.0
    preprocess_s: float = 0.0
    encode_s: float = 0.0
    llm_s: float = 0.0
    total_s: float = 0.0


DimensionInputs = Mapping[str, Mapping[str, str]]  # dimension -> {input name: value}, e.g. {"qa": {"question": ...}}
