"""FP16 copy of the ONNX encoder with the numerically fragile ops kept in FP32.

TensorRT 11 builds strongly typed networks only (no FP16 builder flag): the
precision must be in the graph. Matmuls and elementwise work go to FP16; the
RMS/LayerNorm chain (Pow, ReduceMean, the eps Add, Sqrt, Reciprocal and the
scaling Mul), Softmax and Erf (GELU) stay FP32, as do the graph's inputs and
outputs, so callers keep feeding float32.
"""

from __future__ import annotations

from pathlib import Path

FP32_OPS = {"Pow", "ReduceMean", "Sqrt", "Reciprocal", "Softmax", "Erf", "LayerNormalization",
            "RMSNormalization", "SimplifiedLayerNormalization"}
# Consumers of these outputs stay FP32 too (the eps add after the mean, the x * 1/rms multiply).
_PROPAGATE = {"ReduceMean", "Reciprocal"}


def fp32_nodes(model) -> list[str]:
    producers = {out: n for n in model.graph.node for out in n.output}
    keep = []
    for i, n in enumerate(model.graph.node):
        if not n.name:
            n.name = f"{n.op_type}_{i}"
        if n.op_type in FP32_OPS or any(
            producers.get(x) is not None and producers[x].op_type in _PROPAGATE for x in n.input
        ):
            keep.append(n.name)
    return keep


def convert_to_mixed_precision(onnx_in: Path, onnx_out: Path) -> Path:
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(onnx_in))
    keep = fp32_nodes(model)
    fp16 = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=keep,
                                            disable_shape_infer=False)
    onnx.checker.check_model(fp16)
    onnx.save(fp16, str(onnx_out))
    return onnx_out
