"""Visual encoder backends: onnxruntime (the bundle's ONNX), TensorRT, and torch (the family's reference).

Backends are imported lazily, so a server running onnxruntime never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vidjudge.server.encoder.base import VisualEncoder

BACKENDS = ("onnxruntime", "torch")

__all__ = ["BACKENDS", "VisualEncoder", "create_encoder"]


def create_encoder(backend: str, *, onnx_path: Path | str | None = None, torch_module=None,
                   input_shape: tuple[int, ...] | None = None, output_shape: tuple[int, ...] | None = None,
                   threads: int | None = None, providers: Sequence | None = None, max_batch: int | None = None,
                   device: str = "cpu", dtype: str = "auto") -> VisualEncoder:
    """Build the visual encoder of `backend`: "onnxruntime" needs onnx_path; "torch" needs torch_module
    (a factory of the reference module) and the per-video input/output shapes. threads: intra-op
    threads, None or 0 for the runtime's default. device/dtype: torch only."""
    if backend == "onnxruntime":
        if onnx_path is None:
            raise ValueError("the onnxruntime encoder backend needs onnx_path")
        from vidjudge.server.encoder.onnxruntime_backend import OnnxRuntimeVisualEncoder

        return OnnxRuntimeVisualEncoder(onnx_path, providers=providers, threads=threads, max_batch=max_batch)
    if backend == "torch":
        if torch_module is None or input_shape is None or output_shape is None:
            raise ValueError("the torch encoder backend needs torch_module, input_shape and output_shape")
        from vidjudge.server.encoder.torch_backend import TorchVisualEncoder

        return TorchVisualEncoder(torch_module, input_shape, output_shape, threads=threads, max_batch=max_batch,
                                  device=device, dtype=dtype)
    raise ValueError(f"unknown encoder backend {backend!r}; choose one of {', '.join(BACKENDS)}")
