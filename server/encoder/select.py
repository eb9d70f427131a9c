"""Choosing the visual encoder backend: the preferred one, else the next that works, with the reason logged.

Chains (first that loads wins):
  auto             tensorrt -> onnxruntime-cuda -> onnxruntime
  tensorrt         tensorrt -> onnxruntime-cuda -> onnxruntime
  onnxruntime-cuda onnxruntime-cuda -> onnxruntime
  onnxruntime      onnxruntime
  torch            torch (the reference; never replaced silently)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from vidjudge.server.encoder.base import VisualEncoder

log = logging.getLogger(__name__)

CHAINS = {
    "auto": ("tensorrt", "onnxruntime-cuda", "onnxruntime"),
    "tensorrt": ("tensorrt", "onnxruntime-cuda", "onnxruntime"),
    "onnxruntime-cuda": ("onnxruntime-cuda", "onnxruntime"),
    "onnxruntime": ("onnxruntime",),
    "torch": ("torch",),
}


class BackendUnavailable(RuntimeError):
    """This backend cannot run here; the message says why (shown in the fallback log line)."""


@dataclass
class Selection:
    encoder: VisualEncoder
    backend: str
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (backend, reason) tried before


def _build(name: str, spec, *, bundle_root: Path, threads, device: str, dtype: str) -> VisualEncoder:
    if name == "tensorrt":
        from vidjudge.server.encoder.tensorrt_backend import load_tensorrt_encoder

        return load_tensorrt_encoder(spec.tensorrt, bundle_root)
    providers = None
    if name == "onnxruntime-cuda":
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendUnavailable(f"onnxruntime is not installed ({e})") from None
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendUnavailable("this onnxruntime has no CUDAExecutionProvider (install the gpu extra: "
                                     "onnxruntime-gpu instead of onnxruntime)")
        name, providers = "onnxruntime", ["cuda"]
    from vidjudge.server.encoder import create_encoder

    try:
        return create_encoder(name, onnx_path=spec.onnx_path, torch_module=spec.torch_module,
                              input_shape=spec.input_shape, output_shape=spec.output_shape, threads=threads,
                              providers=providers, device=device, dtype=dtype)
    except ImportError as e:
        raise BackendUnavailable(f"{e.name or e} is not installed") from None


def select_encoder(preferred: str, spec, *, bundle_root: Path, threads: int | None = None, device: str = "auto",
                   dtype: str = "auto") -> Selection:
    """The first backend of `preferred`'s chain that can run `spec` (a families.base.EncoderSpec of the
    bundle at `bundle_root`, against which its TensorRT engine path is resolved)."""
    if preferred not in CHAINS:
        raise ValueError(f"unknown encoder backend {preferred!r}; choose one of {', '.join(CHAINS)}")
    chain = CHAINS[preferred]
    skipped: list[tuple[str, str]] = []
    for i, name in enumerate(chain):
        try:
            enc = _build(name, spec, bundle_root=bundle_root, threads=threads, device=device, dtype=dtype)
        except BackendUnavailable as e:
            skipped.append((name, str(e)))
            if i + 1 < len(chain):
                # Quiet for auto on a CPU machine (expected); loud when the operator asked for it.
                level = logging.INFO if preferred == "auto" else logging.WARNING
                log.log(level, "encoder %s: backend %s unavailable: %s; falling back to %s", spec.name, name, e,
                        chain[i + 1])
            continue
        return Selection(enc, name, skipped)
    reasons = "; ".join(f"{n}: {r}" for n, r in skipped)
    raise BackendUnavailable(f"no encoder backend of {chain} can run encoder {spec.name} here ({reasons})")
