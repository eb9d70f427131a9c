"""Reference visual encoder: the fixed-grid Qwen2.5-VL tower in PyTorch, float32, no grad."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vidjudge.server.encoder.base import VisualEncoder


class TorchVisualEncoder(VisualEncoder):
    """Runs `vidjudge.export.vision.FixedGridVisionEncoder` built from a HF checkpoint.

    `threads` (> 0) sets torch's intra-op thread count, which is process-wide.
    """

    def __init__(self, checkpoint_dir: Path | str, grid_thw: tuple[int, int, int], threads: int | None = None,
                 max_batch: int | None = None) -> None:
        import torch

        from vidjudge.export.vision import build_encoder

        if threads:
            torch.set_num_threads(int(threads))
        self._torch = torch
        self._model = build_encoder(Path(checkpoint_dir), tuple(int(v) for v in grid_thw))
        self.grid_thw = self._model.grid_thw
        self.input_shape = (self._model.num_patches, self._model.in_dim)
        self.output_shape = (self._model.num_tokens, self._model.out_hidden)
        self.max_batch = max_batch
        self.name = "torch-cpu"

    def _encode_batch(self, pixel_values: np.ndarray) -> np.ndarray:
        if self._model is None:
            raise RuntimeError("encoder is closed")
        with self._torch.inference_mode():
            out = self._model(self._torch.from_numpy(pixel_values))
        return out.numpy().astype(np.float32, copy=False)

    def close(self) -> None:
        self._model = None
