"""Visual encoder on a TensorRT engine built by `vidjudge export trt` (GPU machines only).

An engine is only valid for the GPU model and TensorRT version it was built
with: the manifest records both, and a mismatch raises BackendUnavailable
(the selector then falls back to onnxruntime-CUDA) with a message saying how
to rebuild. Inputs and outputs stay float32; the engine runs FP16 inside with
normalisation and softmax kept in FP32 (see export/trt.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vidjudge.server.encoder.base import VisualEncoder
from vidjudge.server.encoder.select import BackendUnavailable


def current_gpu() -> tuple[str, str]:
    """(device name, compute capability 'major.minor') of CUDA device 0."""
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable("no CUDA device is visible")
    major, minor = torch.cuda.get_device_capability(0)
    return torch.cuda.get_device_name(0), f"{major}.{minor}"


def check_record(record, bundle_root: Path) -> Path:
    """The engine path if the recorded build matches this machine, else BackendUnavailable naming the mismatch."""
    if record is None:
        raise BackendUnavailable("the bundle has no TensorRT engine (build one on this GPU: vidjudge export trt BUNDLE)")
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendUnavailable("tensorrt is not installed (install the gpu extra)") from None
    name, cc = current_gpu()
    problems = []
    if record.tensorrt_version != trt.__version__:
        problems.append(f"TensorRT {record.tensorrt_version} (this machine has {trt.__version__})")
    if record.compute_capability != cc or record.gpu_name != name:
        problems.append(f"GPU {record.gpu_name} sm_{record.compute_capability} (this machine has {name} sm_{cc})")
    if problems:
        raise BackendUnavailable("the engine was built for " + " and ".join(problems)
                                 + "; rebuild it here with: vidjudge export trt BUNDLE")
    path = bundle_root / record.engine
    if not path.is_file():
        raise BackendUnavailable(f"engine file {path} is missing")
    return path


class TensorRTVisualEncoder(VisualEncoder):
    name = "tensorrt"

    def __init__(self, engine_path: Path, max_batch: int):
        import tensorrt as trt
        import torch

        self._torch = torch
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self._engine is None:
            raise BackendUnavailable(f"TensorRT could not deserialize {engine_path}")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._in = next(n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self._out = next(n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        _, _, max_shape = self._engine.get_tensor_profile_shape(self._in, 0)
        self.engine_max_batch = int(max_shape[0])
        self._stream = torch.cuda.Stream()
        self.input_shape = tuple(int(d) for d in max_shape[1:])
        self.output_shape = tuple(int(d) for d in self._engine.get_tensor_shape(self._out)[1:])
        self.max_batch = min(max_batch, self.engine_max_batch)

    def _encode_batch(self, pixel_values: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.cuda.stream(self._stream):
            x = torch.from_numpy(np.ascontiguousarray(pixel_values, dtype=np.float32)).cuda(non_blocking=True)
            self._context.set_input_shape(self._in, tuple(x.shape))
            y = torch.empty(tuple(self._context.get_tensor_shape(self._out)), dtype=torch.float32, device="cuda")
            self._context.set_tensor_address(self._in, x.data_ptr())
            self._context.set_tensor_address(self._out, y.data_ptr())
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
            out = y.cpu().numpy()
        return out

    def close(self) -> None:
        self._context = self._engine = self._runtime = None


def load_tensorrt_encoder(record, bundle_root: Path) -> TensorRTVisualEncoder:
    path = check_record(record, bundle_root)
    return TensorRTVisualEncoder(path, max_batch=record.max_batch)
