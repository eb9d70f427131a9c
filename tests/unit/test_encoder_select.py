"""Backend selection on a machine without a GPU: each missing backend is skipped with a reason."""

import dataclasses
import logging

import numpy as np
import pytest

from vidjudge.server.bundle import TensorRTRecord, load_bundle
from vidjudge.server.encoder.select import select_encoder


def select(bundle, backend, tensorrt_record=None, **kw):
    b = load_bundle(bundle)
    (spec,) = b.family.encoders()
    if tensorrt_record is not None:
        spec = dataclasses.replace(spec, tensorrt=tensorrt_record)
    return select_encoder(backend, spec, bundle_root=b.root, **kw)


def test_auto_falls_back_to_onnxruntime_cpu_and_says_why(tiny_bundle, caplog):
    with caplog.at_level(logging.INFO, logger="vidjudge.server.encoder.select"):
        sel = select(tiny_bundle, "auto")
    assert sel.backend == "onnxruntime" and sel.encoder.name.startswith("onnxruntime")
    reasons = dict(sel.skipped)
    assert set(reasons) == {"tensorrt", "onnxruntime-cuda"}
    assert "no TensorRT engine" in reasons["tensorrt"] or "tensorrt is not installed" in reasons["tensorrt"]
    assert "CUDAExecutionProvider" in reasons["onnxruntime-cuda"]
    assert "falling back to onnxruntime" in caplog.text
    x = np.zeros((1, *sel.encoder.input_shape), np.float32)
    assert sel.encoder.encode(x).shape == (1, *sel.encoder.output_shape)


def test_asking_for_tensorrt_explicitly_warns(tiny_bundle, caplog):
    with caplog.at_level(logging.WARNING, logger="vidjudge.server.encoder.select"):
        sel = select(tiny_bundle, "tensorrt")
    assert sel.backend == "onnxruntime"
    assert "encoder vision: backend tensorrt unavailable" in caplog.text


def test_an_engine_for_another_machine_is_refused_with_the_reason(tiny_bundle):
    rec = TensorRTRecord(engine="encoder/vision.plan", tensorrt_version="0.0", gpu_name="Imaginary GPU",
                         compute_capability="1.0")
    sel = select(tiny_bundle, "tensorrt", tensorrt_record=rec)
    reason = dict(sel.skipped)["tensorrt"]
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert reason == "tensorrt is not installed (install the gpu extra)"
    else:  # a GPU machine: the record names another GPU and TensorRT version
        assert "rebuild it here" in reason or "no CUDA device" in reason


def test_torch_is_never_replaced_silently(tiny_bundle):
    assert select(tiny_bundle, "torch").backend == "torch"
    with pytest.raises(ValueError, match="unknown encoder backend"):
        select(tiny_bundle, "tpu")


def test_onnxruntime_cuda_falls_back_to_cpu(tiny_bundle):
    sel = select(tiny_bundle, "onnxruntime-cuda")
    assert sel.backend == "onnxruntime" and [n for n, _ in sel.skipped] == ["onnxruntime-cuda"]
