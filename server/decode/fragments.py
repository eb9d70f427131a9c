"""Clip sampling and spatial fragments for motion branches (FAST-VQA / DOVER, used by LOVE).

- `ClipIndices(clips, clip_len)`: mmaction's `SampleFrames` in test mode, as LOVE's reference uses it
  (`train/infer_perception.py`): for a stream of N frames, ``avg = (N - clip_len*interval + 1) / clips``
  and clip k starts at ``int(avg*k + avg/2)`` (all clips start at 0 when N < clip_len*interval); frame
  numbers wrap around modulo N, so short videos repeat frames. Index-based, like decord.
- `Fragments(...)`: each frame becomes a grid of `fragments x fragments` crops of `size` pixels
  (LOVE: 7 x 7 crops of 32 px -> 224 x 224). The grid's cells and their offset ranges come from the
  decoded frame size, but when the frame's shorter side is below the grid size the crops are cut from
  a bilinear upsampling of the frame (torch's `interpolate(frame / 255, scale_factor=1 / ratio)`,
  times 255, truncated to uint8), exactly as the reference does.

Crop offsets: inside its cell, each crop is shifted by an offset the reference draws with
`torch.randint(cell - size)` at inference too, so its scores are reproducible only under one seed.
Serving must be deterministic; `offsets` picks the rule:

- ``"middle"`` (default): the middle of the range the reference draws from, ``(cell - size - 1) // 2``
  (0 when the cell is not larger than the crop); the same for every clip.
- ``"seeded:N"``: draws like the reference's (one per cell and clip, uniform on that range) from
  NumPy's PCG64 seeded with N and the frame size, so a video always gets the same draws.

`fragment_offsets` exposes the rule, so a reference implementation can be fed the same offsets.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from vidjudge.server.types import FrameTargets, StreamFacts


def clip_indices(total_frames: int, clips: int, clip_len: int, interval: int = 1) -> tuple[int, ...]:
    """The reference's test-mode SampleFrames, step for step (float64 average, int32 truncation, mod N)."""
    if total_frames < 1:
        raise ValueError("clip sampling needs the stream's frame count")
    span = clip_len * interval
    avg = (total_frames - span + 1) / float(clips)
    if total_frames > span - 1:
        offsets = (np.arange(clips) * avg + avg / 2.0).astype(np.int32)
    else:
        offsets = np.zeros((clips,), dtype=np.int32)
    inds = offsets[:, None] + np.arange(clip_len)[None, :] * interval
    return tuple(int(i) for i in np.mod(inds, total_frames).reshape(-1))


@dataclass(frozen=True)
class ClipIndices:
    """`clips` clips of `clip_len` frames (frame numbers, in clip order), test-mode SampleFrames."""

    clips: int
    clip_len: int
    interval: int = 1

    def __post_init__(self) -> None:
        if self.clips < 1 or self.clip_len < 1 or self.interval < 1:
            raise ValueError(f"ClipIndices needs positive sizes, got {self}")

    @property
    def num_frames(self) -> int:
        return self.clips * self.clip_len

    def targets(self, facts: StreamFacts) -> FrameTargets:
        if facts.num_frames < 1:
            raise ValueError("ClipIndices needs the stream's frame count")
        return FrameTargets(indices=clip_indices(facts.num_frames, self.clips, self.clip_len, self.interval))


def _rule(offsets: str) -> tuple[str, int]:
    if offsets == "middle":
        return "middle", 0
    if offsets.startswith("seeded:"):
        try:
            return "seeded", int(offsets.split(":", 1)[1])
        except ValueError:
            pass
    raise ValueError(f"fragment offsets rule {offsets!r}: use 'middle' or 'seeded:N'")


@lru_cache(maxsize=64)
def fragment_offsets(height: int, width: int, fragments: int, size: int, clips: int,
                     offsets: str = "middle") -> tuple[np.ndarray, np.ndarray]:
    """(rnd_h, rnd_w), each (fragments, fragments, clips) int64: the shift of each crop in its cell, for a
    decoded frame of height x width (the reference's `rnd_h[i][j][t]`, `rnd_w[i][j][t]`)."""
    kind, seed = _rule(offsets)
    shape = (fragments, fragments, clips)
    out = []
    for side in (height, width):
        n = side // fragments - size  # the reference draws torch.randint(n) when n > 0, else 0
        if n <= 0:
            out.append(np.zeros(shape, np.int64))
        elif kind == "middle":
            out.append(np.full(shape, (n - 1) // 2, np.int64))
        else:
            rng = np.random.Generator(np.random.PCG64([seed, height, width, len(out)]))
            out.append(rng.integers(0, n, size=shape, dtype=np.int64))
    for a in out:
        a.setflags(write=False)
    return out[0], out[1]


def upsample_small(frame: np.ndarray, target: int) -> np.ndarray:
    """The reference's fallback for frames whose shorter side is below `target`: bilinear upsampling by
    1 / min(h / target, w / target) on values / 255, times 255, truncated to uint8. torch computes it,
    with the frame shaped as one of the reference's (channel, time) planes, which gives the same bits
    as the reference's whole-video call."""
    import torch

    h, w = frame.shape[:2]
    ratio = min(h / target, w / target)
    if ratio >= 1:
        return frame
    if torch.get_num_threads() > 1:
        torch.set_num_threads(1)  # a decode worker: one core each
    x = torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1)))[:, None]  # (3, 1, H, W)
    up = torch.nn.functional.interpolate(x / 255.0, scale_factor=1 / ratio, mode="bilinear")
    up = (up * 255.0).type_as(x)
    return up[:, 0].permute(1, 2, 0).numpy()


@dataclass(frozen=True)
class Fragments:
    """Per frame: a (fragments*size, fragments*size, 3) uint8 grid of crops (see the module docstring).
    `clip_len` tells which clip frame `k` of the view belongs to (k // clip_len)."""

    fragments: int = 7
    size: int = 32
    clip_len: int = 32
    clips: int = 4
    offsets: str = "middle"

    def __post_init__(self) -> None:
        if self.fragments < 1 or self.size < 1 or self.clip_len < 1 or self.clips < 1:
            raise ValueError(f"Fragments needs positive sizes, got {self}")
        _rule(self.offsets)

    @property
    def depends_on_k(self) -> bool:  # the same crops for every clip under the "middle" rule
        return self.offsets != "middle"

    @property
    def out_size(self) -> int:
        return self.fragments * self.size

    def __call__(self, rgb: np.ndarray, k: int) -> np.ndarray:
        h, w = rgb.shape[:2]
        f, s = self.fragments, self.size
        if h < s or w < s:
            from vidjudge.errors import InvalidVideo

            raise InvalidVideo(f"frames of {w}x{h} are too small for {s}-pixel fragments (the motion view needs "
                               f"at least {s} pixels on each side)", reason="too_small")
        rnd_h, rnd_w = fragment_offsets(h, w, f, s, self.clips, self.offsets)
        clip = min(k // self.clip_len, self.clips - 1)
        src = upsample_small(rgb, f * s)
        out = np.empty((f * s, f * s, 3), np.uint8)
        for i in range(f):
            for j in range(f):
                hs = min(h // f * i, h - s) + int(rnd_h[i, j, clip])
                ws = min(w // f * j, w - s) + int(rnd_w[i, j, clip])
                out[i * s:(i + 1) * s, j * s:(j + 1) * s] = src[hs:hs + s, ws:ws + s]
        return out


__all__ = ["ClipIndices", "Fragments", "clip_indices", "fragment_offsets", "upsample_small"]
