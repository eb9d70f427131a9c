"""`vidjudge export trt BUNDLE`: build a TensorRT engine from the bundle's ONNX encoder (GPU machine).

TensorRT 11 builds strongly typed networks only (the FP16 builder flag is gone),
so precision lives in the graph: export/mixed_precision.py writes an FP16 copy
of the ONNX with norms, reductions, softmax and erf kept in FP32 (ViT
activations overflow or lose the small differences a judge scores on
otherwise), and that graph is built strongly typed (the flag is required on
TensorRT 10.12+, implied on 11). One optimisation profile over the batch axis
(the patch count is fixed per bundle). The engine, the GPU and the TensorRT
version it was built for are recorded in the manifest, whose checksums are
updated.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from vidjudge.server.bundle import MANIFEST, load_bundle, sha256_file

log = logging.getLogger(__name__)
ENGINE = "encoder/vision.plan"
FP16_ONNX = "encoder/vision_fp16.onnx"


def build_tensorrt_engine(bundle_dir: Path, *, max_batch: int = 32, opt_batch: int = 8, fp16: bool = True,
                          workspace_gb: int = 8) -> dict:
    import tensorrt as trt

    from vidjudge.server.encoder.tensorrt_backend import current_gpu

    from vidjudge.export.mixed_precision import convert_to_mixed_precision

    bundle = load_bundle(bundle_dir)
    onnx_path = bundle.encoder_path
    if fp16:
        onnx_path = convert_to_mixed_precision(onnx_path, bundle.root / FP16_ONNX)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_gb << 30)
    inp = network.get_input(0)
    n, d = int(inp.shape[1]), int(inp.shape[2])
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, (1, n, d), (min(opt_batch, max_batch), n, d), (max_batch, n, d))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT failed to build the engine (see the log above)")
    engine_path = bundle.root / ENGINE
    engine_path.write_bytes(bytes(plan))
    gpu, cc = current_gpu()
    record = dict(engine=ENGINE, tensorrt_version=trt.__version__, gpu_name=gpu, compute_capability=cc,
                  precision="fp16" if fp16 else "fp32", max_batch=max_batch, opt_batch=opt_batch)
    manifest_path = bundle.root / MANIFEST
    doc = json.loads(manifest_path.read_text())
    doc["vision"]["tensorrt"] = record
    doc["checksums"][ENGINE] = sha256_file(engine_path)
    if fp16:
        doc["checksums"][FP16_ONNX] = sha256_file(bundle.root / FP16_ONNX)
    manifest_path.write_text(json.dumps(doc, indent=2) + "\n")
    load_bundle(bundle.root)  # the updated manifest must validate
    return record
