"""Visual encoder backends: onnxruntime (the bundle's ONNX) and torch (reference).

Backends are imported lazily, so a server running onnxruntime never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vidjudge.server.encoder.base import VisualEncoder

BACKENDS = ("onnxruntime", "torch")

__all__ = ["BACKENDS", "VisualEncoder", "create_encoder"]


def create_encoder(backend: str, *, onnx_path: Path | str | None = None, checkpoint_dir: Path | str | None = None,
                   grid_thw: tuple[int, int, int] | None = None, threads: int | None = None,
                   providers: Sequence | None = None, max_batch: int | None = None) -> VisualEncoder:
    """Build the visual encoder of `backend` ("onnxruntime" needs onnx_path; "torch" needs
    checkpoint_dir and grid_thw). threads: intra-op threads, None or 0 for the runtime's default."""
    if backend == "onnxruntime":
        if onnx_path is None:
            raise ValueError("the onnxruntime encoder backend needs onnx_path")
        from vidjudge.server.encoder.onnxruntime_backend import OnnxRuntimeVisualEncoder

        return OnnxRuntimeVisualEncoder(onnx_path, providers=providers, threads=threads, max_batch=max_batch)
    if backend == "torch":
        if checkpoint_dir is None or grid_thw is None:
            raise ValueError("the torch encoder backend needs checkpoint_dir and grid_thw")
        from vidjudge.server.encoder.torch_backend import TorchVisualEncoder

        return TorchVisualEncoder(checkpoint_dir, grid_thw, threads=threads, max_batch=max_batch)
    raise ValueError(f"unknown encoder backend {backend!r}; choose one of {', '.join(BACKENDS)}")
