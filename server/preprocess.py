"""Frames -> patchified pixel values in the Qwen2-VL / Qwen2.5-VL vision tower's input layout.

NumPy only. Frames arrive already resized to the bundle's frame size (the decode
stage resizes), so this stage rescales by 1/255, normalises with the CLIP
mean/std and patchifies, exactly like the Hugging Face Qwen2-VL processors:

  frames (T, H, W, C) -> (gt, tp, gh/m, m, p, gw/m, m, p, C)
                      -> (gt, gh/m, gw/m, m, m, C, tp, p, p)
                      -> (gt*gh*gw, C*tp*p*p)

i.e. temporal groups of `temporal_patch_size` consecutive frames in time order,
then spatial merge blocks (m x m patches) in raster order, each patch flattened
channel-major, then time, then row, column (`video_processing_qwen2_vl.py`'s
`patchify`; for one image the PIL image processor gives the same layout with the
image repeated over time).

Rescale and normalise are a per-channel lookup table over the 256 byte values,
computed with the same float64-rescale / float32-normalise steps as the HF PIL
image processor, so the result is bit-identical to it and costs one gather.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from vidjudge.server.seam_shim import FrameSpec, PreprocessedVideo, frames_of
from vidjudge.server.types import DecodedVideo

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class PatchSpec:
    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD

    @property
    def factor(self) -> int:
        """Frame height and width must be multiples of this."""
        return self.patch_size * self.merge_size

    @property
    def patch_dim(self) -> int:
        return len(self.mean) * self.temporal_patch_size * self.patch_size * self.patch_size


def grid_for(frame_spec: FrameSpec, spec: PatchSpec) -> tuple[int, int, int]:
    """(t, h, w) in patches for frames of `frame_spec`; ValueError if they cannot be patchified."""
    _check_shape(frame_spec.num_frames, frame_spec.height, frame_spec.width, spec)
    return (frame_spec.num_frames // spec.temporal_patch_size,
            frame_spec.height // spec.patch_size,
            frame_spec.width // spec.patch_size)


def _check_shape(num_frames: int, height: int, width: int, spec: PatchSpec) -> None:
    f = spec.factor
    if height <= 0 or width <= 0 or height % f or width % f:
        raise ValueError(f"frame size {height}x{width} is not a positive multiple of "
                         f"patch_size*merge_size = {f} in both dimensions")
    if num_frames <= 0 or num_frames % spec.temporal_patch_size:
        raise ValueError(f"frame count {num_frames} is not a positive multiple of "
                         f"temporal_patch_size = {spec.temporal_patch_size}")


@lru_cache(maxsize=16)
def _lut(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(C, 256) float32: normalised value of each byte per channel, computed like the HF PIL
    image processor (rescale in float64 then cast to float32; (x - mean) / std in float32)."""
    values = (np.arange(256, dtype=np.float64) * (1 / 255)).astype(np.float32)
    m = np.asarray(mean, dtype=np.float32)[:, None]
    s = np.asarray(std, dtype=np.float32)[:, None]
    lut = (values[None, :] - m) / s
    lut.setflags(write=False)
    return lut


def second_per_grid_t(video: DecodedVideo, spec: PatchSpec) -> float:
    """Seconds spanned by one temporal patch group (Qwen's second_per_grid_ts = temporal_patch / fps).

    Frames are sampled one per equal segment, so the sampling rate is num_frames / duration;
    unknown durations count as 2 fps.
    """
    n = int(frames_of(video).shape[0])
    duration = float(video.info.duration_s)
    if not np.isfinite(duration) or duration <= 0 or n <= 0:
        return spec.temporal_patch_size / 2.0
    return spec.temporal_patch_size * duration / n


def patchify(frames: np.ndarray, spec: PatchSpec) -> np.ndarray:
    """(T, H, W, C) uint8 -> (T/tp * H/p * W/p, C*tp*p*p) float32, normalised, in HF's layout."""
    if frames.ndim != 4 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be a (T, H, W, C) uint8 array, got {frames.dtype} {frames.shape}")
    t, h, w, c = frames.shape
    if c != len(spec.mean):
        raise ValueError(f"frames have {c} channels, the spec normalises {len(spec.mean)}")
    _check_shape(t, h, w, spec)
    p, tp, m = spec.patch_size, spec.temporal_patch_size, spec.merge_size
    gt, gh, gw = t // tp, h // p, w // p
    x = frames.reshape(gt, tp, gh // m, m, p, gw // m, m, p, c)
    # -> (gt, gh/m, gw/m, m, m, C, tp, p, p): reorder the bytes first (4x less memory traffic) ...
    x = x.transpose(0, 2, 5, 3, 6, 8, 1, 4, 7)
    x = np.ascontiguousarray(x).reshape(gt * gh * gw, c, tp * p * p)
    # ... then normalise with one gather per channel into the float32 output.
    lut = _lut(tuple(spec.mean), tuple(spec.std))
    out = np.empty((gt * gh * gw, c, tp * p * p), dtype=np.float32)
    for ch in range(c):
        out[:, ch] = lut[ch][x[:, ch]]
    return out.reshape(gt * gh * gw, c * tp * p * p)


def preprocess(video: DecodedVideo, spec: PatchSpec) -> PreprocessedVideo:
    """Rescale, normalise and patchify a decoded video (frames already at the bundle size)."""
    frames = frames_of(video)
    pixel_values = patchify(frames, spec)
    t, h, w = frames.shape[:3]
    grid = (t // spec.temporal_patch_size, h // spec.patch_size, w // spec.patch_size)
    return PreprocessedVideo(pixel_values=pixel_values, grid_thw=grid,
                             second_per_grid_t=second_per_grid_t(video, spec))
