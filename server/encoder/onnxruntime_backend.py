"""Visual encoder on onnxruntime, running the bundle's `encoder/vision.onnx`.

CPU by default. CUDA and TensorRT execution providers are accepted by name
("cuda", "tensorrt" or their full onnxruntime names, optionally as
(name, options) pairs) for machines with `onnxruntime-gpu`; the CPU provider is
always appended as the fallback for nodes the others do not take.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vidjudge.server.encoder.base import VisualEncoder

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
_SHORT = {v: k for k, v in PROVIDER_ALIASES.items() if k != "trt"}

ProviderSpec = str | tuple[str, dict]


def resolve_providers(providers: Sequence[ProviderSpec] | None) -> list[ProviderSpec]:
    """Full provider names (aliases expanded), CPU last; ValueError for ones this onnxruntime lacks."""
    import onnxruntime as ort

    wanted: list[ProviderSpec] = []
    for p in providers or ["CPUExecutionProvider"]:
        name, opts = (p, None) if isinstance(p, str) else (p[0], dict(p[1]))
        name = PROVIDER_ALIASES.get(name.lower(), name)
        wanted.append(name if opts is None else (name, opts))
    names = [p if isinstance(p, str) else p[0] for p in wanted]
    if "CPUExecutionProvider" not in names:
        wanted.append("CPUExecutionProvider")
        names.append("CPUExecutionProvider")
    available = ort.get_available_providers()
    missing = [n for n in names if n not in available]
    if missing:
        raise ValueError(f"onnxruntime execution provider(s) {missing} are not available in this installation "
                         f"(available: {available}); install onnxruntime-gpu for CUDA/TensorRT")
    return wanted


class OnnxRuntimeVisualEncoder(VisualEncoder):
    def __init__(self, onnx_path: Path | str, providers: Sequence[ProviderSpec] | None = None,
                 threads: int | None = None, max_batch: int | None = None) -> None:
        import onnxruntime as ort

        path = Path(onnx_path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX visual encoder not found: {path}")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = int(threads)
        so.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), sess_options=so, providers=resolve_providers(providers))
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{path}: expected one input and one output, got {len(inputs)} and {len(outputs)}")
        in_shape, out_shape = inputs[0].shape, outputs[0].shape
        if len(in_shape) < 2 or len(out_shape) < 2 or not all(isinstance(d, int) for d in
                                                            (*in_shape[1:], *out_shape[1:])):
            raise ValueError(f"{path}: expected [batch, ...] -> [batch, ...] with fixed per-video shapes; "
                             f"got {in_shape} -> {out_shape}")
        self._input, self._output = inputs[0].name, outputs[0].name
        self.input_shape = tuple(int(d) for d in in_shape[1:])
        self.output_shape = tuple(int(d) for d in out_shape[1:])
        self.max_batch = max_batch
        self.providers = self._session.get_providers()
        self.name = "onnxruntime-" + _SHORT.get(self.providers[0], self.providers[0])

    def _encode_batch(self, pixel_values: np.ndarray) -> np.ndarray:
        if self._session is None:
            raise RuntimeError("encoder is closed")
        (out,) = self._session.run([self._output], {self._input: pixel_values})
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        self._session = None
