"""Which frames to take from a video: samplers and pure functions on timestamps (no decoding here).

Samplers (`types.FrameSampler`: small frozen dataclasses, pickled to decode workers) map
what is known of a stream (`StreamFacts`) to `FrameTargets`:

- `SegmentCentres(n)`: split the video into `n` equal segments and take the frame
  nearest each segment's centre, ``t_i = (i + 0.5) * duration / n`` seconds after the
  start. Time is presentation time (pts x time_base), so variable-frame-rate files
  sample the frame actually shown at that time.
- `UniformIndices(n)`: InternVL's / LOVE's ``get_index`` without a time bound (DESIGN.md
  2.1): frame numbers in presentation order, ``int(seg/2 + np.round(seg*i))`` with
  ``seg = (N - 1) / n`` for a stream of N frames, exactly as the reference computes it.

"Nearest" ties go to the earlier frame (with a small tolerance for timestamp
rounding), so a clip with exactly `n` evenly spaced frames yields each frame once.
A clip with fewer frames than asked yields repeats of the nearest frames, so
exactly `n` always come out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vidjudge.server.types import FrameTargets, StreamFacts

# Distances closer than this (seconds) count as a tie; timestamps are rationals
# turned into floats, so exact midpoints can land a hair either side.
TIE_TOLERANCE_S = 1e-6


def segment_centres(duration_s: float, n: int, start_s: float = 0.0) -> np.ndarray:
    """The `n` target times (seconds): the centre of each of `n` equal segments of the video."""
    if n < 1:
        raise ValueError(f"need at least one frame, got n={n}")
    if not np.isfinite(duration_s) or duration_s < 0:
        raise ValueError(f"duration must be finite and >= 0, got {duration_s}")
    return start_s + (np.arange(n, dtype=np.float64) + 0.5) * (float(duration_s) / n)


def nearer_is_later(target_s: float, earlier_s: float, later_s: float) -> bool:
    """True when the frame at `later_s` is strictly nearer `target_s` than the one at `earlier_s`."""
    return abs(later_s - target_s) < abs(target_s - earlier_s) - TIE_TOLERANCE_S


def nearest_indices(frame_times_s: Sequence[float] | np.ndarray, targets_s: Sequence[float] | np.ndarray) -> np.ndarray:
    """For each target, the index of the frame whose time is nearest (ties: the earlier frame).

    `frame_times_s` must be sorted ascending (presentation order). Several targets
    may map to the same frame (fewer frames than targets): that frame repeats.
    """
    times = np.asarray(frame_times_s, dtype=np.float64)
    targets = np.asarray(targets_s, dtype=np.float64)
    if times.size == 0:
        raise ValueError("no frames to choose from")
    if times.size > 1 and np.any(np.diff(times) < 0):
        raise ValueError("frame times must be sorted ascending")
    # First frame strictly after each target; its predecessor is the last frame at or before it.
    after = np.searchsorted(times, targets, side="right")
    out = np.empty(targets.shape, dtype=np.int64)
    for k, (t, j) in enumerate(zip(targets, after)):
        if j == 0:
            out[k] = 0
        elif j == times.size:
            out[k] = times.size - 1
        else:
            out[k] = j if nearer_is_later(t, times[j - 1], times[j]) else j - 1
    return out


def duration_from_frame_times(frame_times_s: Sequence[float] | np.ndarray) -> float:
    """Duration implied by frame times alone: last - first + one typical frame interval.

    A clip of k frames at f fps then lasts k/f seconds, as its metadata would say.
    """
    times = np.asarray(frame_times_s, dtype=np.float64)
    if times.size == 0:
        return 0.0
    if times.size == 1:
        return 0.0
    step = float(np.median(np.diff(times)))
    return float(times[-1] - times[0] + max(step, 0.0))


def sample_indices(frame_times_s: Sequence[float] | np.ndarray, n: int, duration_s: float | None = None) -> np.ndarray:
    """Indices of the `n` frames to keep from a fully known list of frame times.

    `duration_s` defaults to `duration_from_frame_times`; targets are measured from
    the first frame's time.
    """
    times = np.asarray(frame_times_s, dtype=np.float64)
    if times.size == 0:
        raise ValueError("no frames to choose from")
    if duration_s is None:
        duration_s = duration_from_frame_times(times)
    return nearest_indices(times, segment_centres(duration_s, n, start_s=float(times[0])))


@dataclass(frozen=True)
class SegmentCentres:
    """`num_frames` targets by time, one at the centre of each equal segment of the video."""

    num_frames: int

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ValueError(f"SegmentCentres needs at least one frame, got {self.num_frames}")

    def targets(self, facts: StreamFacts) -> FrameTargets:
        duration = facts.duration_s if np.isfinite(facts.duration_s) and facts.duration_s > 0 else 0.0
        return FrameTargets(times_s=tuple(float(t) for t in segment_centres(duration, self.num_frames)))


@dataclass(frozen=True)
class UniformIndices:
    """`num_frames` frame numbers spread evenly over the stream's frames, as InternVL's and LOVE's
    ``get_index(bound=None, fps, max_frame=N-1, first_idx=0, num_segments=num_frames)`` picks them."""

    num_frames: int

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ValueError(f"UniformIndices needs at least one frame, got {self.num_frames}")

    def targets(self, facts: StreamFacts) -> FrameTargets:
        if facts.num_frames < 1:
            raise ValueError("UniformIndices needs the stream's frame count")
        return FrameTargets(indices=uniform_indices(facts.num_frames, self.num_frames))


def uniform_indices(total_frames: int, n: int) -> tuple[int, ...]:
    """The reference's arithmetic, step for step (float64 segment, numpy round half to even, int truncation):
    start_idx = max(first_idx=0, round(-100000 * fps)) = 0 and end_idx = min(round(100000 * fps), N - 1)."""
    start_idx, end_idx = 0, total_frames - 1
    seg_size = float(end_idx - start_idx) / n
    return tuple(int(start_idx + (seg_size / 2) + np.round(seg_size * idx)) for idx in range(n))


@dataclass(frozen=True)
class FpsStep:
    """Video-Bench's frames (its utils.py `extract_frames`): frame numbers 1, 1+s, 1+2s, ... below N-1, with
    s = int(fps / per_second), then the last frame N-1; at most `max_frames` (a server limit), kept evenly
    spread (first and last always) when there are more.

    Video-Bench loops forever when fps < per_second (s = 0); s is at least 1 here.
    """

    per_second: float = 2.0
    max_frames: int = 32

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.max_frames < 1:
            raise ValueError(f"FpsStep needs per_second > 0 and max_frames >= 1, got {self}")

    def targets(self, facts: StreamFacts) -> FrameTargets:
        if facts.num_frames < 1:
            raise ValueError("FpsStep needs the stream's frame count")
        return FrameTargets(indices=fps_step_indices(facts.num_frames, facts.fps, self.per_second,
                                                     self.max_frames))


def fps_step_indices(total_frames: int, fps: float, per_second: float, max_frames: int) -> tuple[int, ...]:
    step = max(1, int(fps / per_second)) if fps > 0 else 1
    picks = [*range(1, total_frames - 1, step), total_frames - 1]
    if len(picks) > max_frames:
        keep = np.unique(np.round(np.linspace(0, len(picks) - 1, max_frames)).astype(int))
        picks = [picks[i] for i in keep]
    return tuple(picks)


__all__ = [
    "FpsStep",
    "fps_step_indices",
    "SegmentCentres",
    "UniformIndices",
    "uniform_indices",
    "TIE_TOLERANCE_S",
    "segment_centres",
    "nearer_is_later",
    "nearest_indices",
    "duration_from_frame_times",
    "sample_indices",
]
