"""Reference visual encoder: the family's torch module, no grad; float32 on CPU, or on a GPU in bf16.

On CPU it is the reference the ONNX export is checked against. On a GPU machine without
TensorRT or onnxruntime-gpu (the measurement machine, DESIGN.md 5) it is the fast path:
the batch runs on the device in the chosen dtype and the output stays there, as a torch
tensor, for the language model.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from vidjudge.server.devices import resolve_device, resolve_dtype
from vidjudge.server.encoder.base import VisualEncoder


class TorchVisualEncoder(VisualEncoder):
    """`module_factory()` builds the module ([B, *input] float32 -> [B, *output]).

    `threads` (> 0) sets torch's intra-op thread count, which is process-wide.
    """

    def __init__(self, module_factory: Callable[[], Any], input_shape: tuple[int, ...],
                 output_shape: tuple[int, ...], threads: int | None = None, max_batch: int | None = None,
                 device: str = "cpu", dtype: str = "auto") -> None:
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        self._torch = torch
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self._model = module_factory().to(device=self.device, dtype=self.dtype).eval()
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(output_shape)
        self.max_batch = max_batch
        self.name = f"torch-{self.device}" + ("" if self.dtype == torch.float32 else f"-{str(self.dtype)[6:]}")

    def _encode_batch(self, pixel_values: np.ndarray) -> Any:
        if self._model is None:
            raise RuntimeError("encoder is closed")
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(pixel_values).to(self.device, non_blocking=True).to(self.dtype)
            out = self._model(x)
        if self.device == "cpu" and out.dtype == torch.float32:
            return out.numpy()
        return out  # stays on the device, in the model's dtype

    def close(self) -> None:
        self._model = None
