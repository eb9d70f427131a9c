"""The visual encoder interface: one fixed-shape input per video in, embeddings out, batched.

Every video of a bundle gives each encoder an input of the same shape, so a batch is a
plain leading axis:
    encode(x [B, *input_shape] float32) -> [B, *output_shape]
(Qwen2.5-VL's tower: [B, N patches, C*T*P*P] -> [B, tokens, LLM hidden]). Backends return
float32 NumPy arrays, except the torch backend on a GPU, which keeps its output on the device
as a torch tensor in its dtype so embeddings reach the language model without a copy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class VisualEncoder(ABC):
    """Base class of the backends. Subclasses set `name`, `input_shape`, `output_shape` and
    implement `_encode_batch`; `encode` checks the input and splits batches over `max_batch`."""

    name: str = "visual-encoder"
    input_shape: tuple[int, ...]  # per video
    output_shape: tuple[int, ...]  # per video
    max_batch: int | None = None  # most videos per run; None: no limit

    def encode(self, pixel_values: np.ndarray) -> Any:
        x = np.asarray(pixel_values)
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(f"{self.name}: input must have shape [batch, {', '.join(map(str, self.input_shape))}], "
                             f"got {list(x.shape)}")
        if x.shape[0] == 0:
            return np.zeros((0, *self.output_shape), dtype=np.float32)
        x = np.ascontiguousarray(x, dtype=np.float32)
        step = self.max_batch or x.shape[0]
        if x.shape[0] <= step:
            return self._encode_batch(x)
        parts = [self._encode_batch(x[i:i + step]) for i in range(0, x.shape[0], step)]
        if isinstance(parts[0], np.ndarray):
            return np.concatenate(parts, axis=0)
        import torch

        return torch.cat(parts, dim=0)

    @abstractmethod
    def _encode_batch(self, pixel_values: np.ndarray) -> Any:
        """[b, *input_shape] contiguous float32 -> [b, *output_shape], b <= max_batch."""

    def close(self) -> None:
        """Release the runtime's resources; the encoder cannot be used afterwards."""

    def __enter__(self) -> VisualEncoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} in={self.input_shape} out={self.output_shape}>"
