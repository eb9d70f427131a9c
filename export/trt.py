"""`vidjudge export trt BUNDLE`: build a TensorRT engine from the bundle's ONNX encoder (GPU machine).

TensorRT 11 builds strongly typed networks only (the FP16 builder flag is gone),
so precision lives in the graph: export/mixed_precision.py writes an FP16 copy
of the ONNX with norms, reductions, softmax and erf kept in FP32 (ViT
activations overflow or lose the small differences a judge scores on
otherwise), and that graph is built strongly typed (the flag is required on
TensorRT 10.12+, implied on 11). One optimisation profile over the batch axis
(each encoder's input is fixed per bundle). One engine per encoder; the engine, the GPU and the TensorRT
version it was built for are recorded in the manifest, whose checksums are
updated.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from vidjudge.server.bundle import MANIFEST, load_bundle, sha256_file

log = logging.getLogger(__name__)


def build_tensorrt_engine(bundle_dir: Path, *, max_batch: int = 32, opt_batch: int = 8, fp16: bool = True,
                          workspace_gb: int = 8) -> dict[str, dict]:
    """Build one engine per encoder of the bundle (`encoder/<name>.plan`); returns the records by encoder."""
    bundle = load_bundle(bundle_dir)
    records = {spec.name: _build_one(bundle.root, spec, max_batch=max_batch, opt_batch=opt_batch, fp16=fp16,
                                     workspace_gb=workspace_gb) for spec in bundle.family.encoders()}
    manifest_path = bundle.root / MANIFEST
    doc = json.loads(manifest_path.read_text())
    for name, record in records.items():
        doc["encoders"][name]["tensorrt"] = record
        doc["checksums"][record["engine"]] = sha256_file(bundle.root / record["engine"])
        if fp16:
            rel = _fp16_onnx(name)
            doc["checksums"][rel] = sha256_file(bundle.root / rel)
    manifest_path.write_text(json.dumps(doc, indent=2) + "\n")
    load_bundle(bundle.root)  # the updated manifest must validate
    return records


def _fp16_onnx(name: str) -> str:
    return f"encoder/{name}_fp16.onnx"


def _build_one(root: Path, spec, *, max_batch: int, opt_batch: int, fp16: bool, workspace_gb: int) -> dict:
    import tensorrt as trt

    from vidjudge.export.mixed_precision import convert_to_mixed_precision
    from vidjudge.server.encoder.tensorrt_backend import current_gpu

    onnx_path = spec.onnx_path
    if fp16:
        onnx_path = convert_to_mixed_precision(onnx_path, root / _fp16_onnx(spec.name))
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
    per_video = tuple(int(d) for d in inp.shape[1:])  # fixed per bundle; only the batch axis varies
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, (1, *per_video), (min(opt_batch, max_batch), *per_video), (max_batch, *per_video))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT failed to build the engine of encoder {spec.name} (see the log above)")
    engine = f"encoder/{spec.name}.plan"
    (root / engine).write_bytes(bytes(plan))
    gpu, cc = current_gpu()
    return dict(engine=engine, tensorrt_version=trt.__version__, gpu_name=gpu, compute_capability=cc,
                precision="fp16" if fp16 else "fp32", max_batch=max_batch, opt_batch=opt_batch)
