"""Per-frame transforms a view applies in the decode worker (`types.FrameTransform`).

Each is a small frozen dataclass (pickled to worker processes) called as
``transform(rgb, k)`` on an upright, native-size RGB uint8 frame (H, W, 3); `k` is
the frame's position in its view. They run where the frame was decoded so only
view-sized arrays travel back to the server.

``depends_on_k = False`` tells the decoder that the output depends on the pixels
alone, so a frame a view takes twice (short clips) is transformed once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Resize:
    """Bicubic resize to (height, width) with PIL, the resize of Hugging Face's Qwen image
    processor; frames already at that size pass through unchanged (bit-exact)."""

    height: int
    width: int
    depends_on_k: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"Resize needs a positive size, got {self.height}x{self.width}")

    def __call__(self, rgb: np.ndarray, k: int) -> np.ndarray:
        if rgb.shape[0] != self.height or rgb.shape[1] != self.width:
            img = Image.fromarray(np.ascontiguousarray(rgb))
            rgb = np.asarray(img.resize((self.width, self.height), Image.BICUBIC))
        return np.ascontiguousarray(rgb, dtype=np.uint8)


@dataclass(frozen=True)
class Native:
    """The upright frame at its own size, unchanged."""

    depends_on_k: ClassVar[bool] = False

    def __call__(self, rgb: np.ndarray, k: int) -> np.ndarray:
        return rgb


__all__ = ["Resize", "Native"]
