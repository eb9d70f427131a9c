"""The FP16 encoder graph TensorRT builds from (strong typing): checked here with onnxruntime on CPU."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

pytest.importorskip("onnxconverter_common", reason="the gpu extra's onnxconverter-common builds FP16 graphs")

from vidjudge.export.mixed_precision import convert_to_mixed_precision  # noqa: E402


def test_fp16_graph_keeps_norms_and_softmax_fp32_and_matches(tiny_bundle, tmp_path):
    src = tiny_bundle / "encoder" / "vision.onnx"
    out = convert_to_mixed_precision(src, tmp_path / "fp16.onnx")
    m = onnx.load(str(out))
    # float32 in, float32 out: callers do not change.
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    # Most weights are FP16 now.
    kinds = [i.data_type for i in m.graph.initializer if len(i.dims) >= 2]
    assert kinds.count(onnx.TensorProto.FLOAT16) > len(kinds) // 2
    # Softmax and the norm reductions read FP32: every one is fed by a Cast to FLOAT or an FP32 producer.
    casts_to_fp32 = {n.output[0] for n in m.graph.node if n.op_type == "Cast"
                     and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute)}
    fp16_casts = {n.output[0] for n in m.graph.node if n.op_type == "Cast"
                  and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT16 for a in n.attribute)}
    for n in m.graph.node:
        if n.op_type in ("Softmax", "ReduceMean"):
            assert n.input[0] not in fp16_casts, n.name
    assert casts_to_fp32
    x = np.random.default_rng(0).standard_normal((2, *[d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim[1:]])).astype(np.float32)
    ref = ort.InferenceSession(str(src)).run(None, {"pixel_values": x})[0]
    got = ort.InferenceSession(str(out)).run(None, {"pixel_values": x})[0]
    rel = np.abs(ref - got).max() / np.abs(ref).max()
    assert got.dtype == np.float32 and rel < 5e-3, rel
