"""Shim (drop when merging the judge seam): the pre-seam stage types the rest of the server still uses.

`server/types.py` now describes decodes as named views; the pipeline, preprocess, bundle and
scorers on this branch still speak the single frame spec and the one-encoder video of before.
These are those old types, verbatim, plus the translation from a frame spec to a one-view
DecodeRequest, so the whole suite runs until the lead's seam replaces every user of this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vidjudge.server.types import DecodedVideo, DecodeRequest, ViewSpec

VIEW = "frames"  # the single view a frame spec asks for


@dataclass(frozen=True)
class FrameSpec:
    """What the decode stage must deliver: `num_frames` RGB frames of `height` x `width`.

    Frames are sampled one per equal segment of the video, at the segment centre
    (LOVE's rule), and resized with bicubic interpolation (Qwen/HF's rule).
    """

    num_frames: int
    height: int
    width: int

    @property
    def decode_request(self) -> DecodeRequest:
        from vidjudge.server.decode import Resize, SegmentCentres

        return DecodeRequest(views=(ViewSpec(VIEW, SegmentCentres(self.num_frames), Resize(self.height, self.width)),))


def frames_of(video: DecodedVideo) -> np.ndarray:
    """The frames of a decode made from a FrameSpec."""
    return video.views[VIEW].frames


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


__all__ = ["FrameSpec", "frames_of", "PreprocessedVideo", "EncodedVideo", "VIEW"]
