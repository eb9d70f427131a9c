"""The visual encoder interface: patchified pixels of same-grid videos in, merged visual tokens out.

Every video of a bundle has the same grid, so a batch is a plain leading axis:
    encode(pixel_values [B, N, D] float32) -> embeds [B, T, H] float32
with N = t*h*w patches, D = C*temporal_patch*patch*patch, T = N / merge^2 tokens and
H the language model's hidden size.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class VisualEncoder(ABC):
    """Base class of the backends. Subclasses set `name`, `input_shape`, `output_shape` and
    implement `_encode_batch`; `encode` checks the input and splits batches over `max_batch`."""

    name: str = "visual-encoder"
    input_shape: tuple[int, int]  # (N, D) per video
    output_shape: tuple[int, int]  # (T, H) per video
    max_batch: int | None = None  # most videos per run; None: no limit

    def encode(self, pixel_values: np.ndarray) -> np.ndarray:
        x = np.asarray(pixel_values)
        if x.ndim != 3 or tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(f"{self.name}: pixel_values must have shape [batch, {self.input_shape[0]}, "
                             f"{self.input_shape[1]}], got {list(x.shape)}")
        if x.shape[0] == 0:
            return np.zeros((0, *self.output_shape), dtype=np.float32)
        x = np.ascontiguousarray(x, dtype=np.float32)
        step = self.max_batch or x.shape[0]
        if x.shape[0] <= step:
            return self._encode_batch(x)
        return np.concatenate([self._encode_batch(x[i:i + step]) for i in range(0, x.shape[0], step)], axis=0)

    @abstractmethod
    def _encode_batch(self, pixel_values: np.ndarray) -> np.ndarray:
        """[b, N, D] contiguous float32 -> [b, T, H] float32, b <= max_batch."""

    def close(self) -> None:
        """Release the runtime's resources; the encoder cannot be used afterwards."""

    def __enter__(self) -> VisualEncoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} in={self.input_shape} out={self.output_shape}>"
