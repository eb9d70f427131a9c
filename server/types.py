"""Typed objects passed between pipeline stages (decode -> preprocess -> encode -> score).

Protobuf never crosses into the pipeline: the gRPC edge converts to and from these.
Every stage consumes one of these and produces the next; none reaches back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class FrameSpec:
    """What the decode stage must deliver: `num_frames` RGB frames of `height` x `width`.

    Frames are sampled one per equal segment of the video, at the segment centre
    (LOVE's rule), and resized with bicubic interpolation (Qwen/HF's rule).
    """

    num_frames: int
    height: int
    width: int


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
class DecodedVideo:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB at FrameSpec size
    timestamps_s: np.ndarray  # (T,) float64, presentation time of each sampled frame
    info: VideoInfo
    decode_s: float = 0.0  # seconds the worker spent decoding (set by the decode pool)


@dataclass
class PreprocessedVideo:
    """Patchified pixels in the vision tower's input layout."""

    pixel_values: np.ndarray  # (num_patches, C * temporal_patch * patch * patch) float32
    grid_thw: tuple[int, int, int]  # (t, h, w) in patches
    second_per_grid_t: float  # seconds spanned by one temporal patch group (Qwen mRoPE time axis)


@dataclass
class EncodedVideo:
    embeds: np.ndarray  # (num_tokens, llm_hidden) float32, merged visual tokens
    grid_thw: tuple[int, int, int]
    second_per_grid_t: float


@dataclass
class DimensionScore:
    dimension: str
    score: float
    scale_min: float
    scale_max: float
    levels: list[str] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)


@dataclass
class StageTimings:
    queue_s: float = 0.0
    decode_s: float = 0.0
    preprocess_s: float = 0.0
    encode_s: float = 0.0
    llm_s: float = 0.0
    total_s: float = 0.0
