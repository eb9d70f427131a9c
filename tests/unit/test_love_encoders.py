"""The bundle's LOVE encoders (ONNX through onnxruntime, and the torch modules) against the reference
implementation on the original checkpoints: transformers' InternVL vision tower + projector with the
vision LoRA applied unmerged by hooks, and the Swin3D re-expressed from swin_backbone.py.

Tolerances (measured on the tiny checkpoints): vision ~3e-6 absolute on outputs up to ~3.5 (float32
summation order; LoRA merged vs unmerged). Motion ~3e-4 absolute on outputs up to ~2: the reference
rounds attention probabilities and values to bfloat16 and multiplies them in bfloat16, so a float32
summation-order difference flips a bfloat16 rounding now and then (one flip moves an element by up
to 2^-8 relative); without that rounding the two agree to ~2e-7."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import love_reference as R
from vidjudge.server.bundle import load_bundle
from vidjudge.server.encoder import create_encoder

VISION_ATOL = 3e-5
MOTION_ATOL = 2e-3


@pytest.fixture(scope="module")
def bundle(love_bundle):
    return load_bundle(love_bundle)


def _encoder(spec, backend):
    return create_encoder(backend, onnx_path=spec.onnx_path, torch_module=spec.torch_module,
                          input_shape=spec.input_shape, output_shape=spec.output_shape, threads=1)


def test_vision_encoders_match_transformers_internvl_with_unmerged_lora(bundle, love_checkpoints):
    specs = {s.name: s for s in bundle.family.encoders()}
    frames = torch.randn(8, 3, 448, 448, generator=torch.Generator().manual_seed(0))
    outs = {}
    for skill, backend in (("perception", "onnxruntime"), ("qa", "torch")):
        ck = R.Original.load(love_checkpoints[skill])
        model = R.build_hf_model(ck, image_token_id=0)
        with torch.no_grad():
            want = model.model.get_image_features(pixel_values=frames, vision_feature_layer=-1,
                                                  vision_feature_select_strategy="default").pooler_output
        got = _encoder(specs[f"vision.{skill}"], backend).encode(frames.numpy()[None])[0]
        want = want.reshape(got.shape).numpy()
        assert np.abs(want).max() > 0.5
        np.testing.assert_allclose(got, want, rtol=0, atol=VISION_ATOL)
        outs[skill] = got
    assert np.abs(outs["perception"] - outs["qa"]).max() > 0.05  # each skill has its own vision LoRA


def test_motion_encoder_matches_the_reference_swin(bundle, love_checkpoints):
    fam = bundle.family
    spec = {s.name: s for s in fam.encoders()}["motion"]
    clip = torch.randn(1, 3, 32, 224, 224, generator=torch.Generator().manual_seed(1))
    cks = {s: R.Original.load(love_checkpoints[s]) for s in ("perception", "correspondence", "qa")}
    swin_sd = {k[len("evaluator."):]: v for k, v in cks["perception"].state.items() if k.startswith("evaluator.")}
    with torch.no_grad():
        feats = R.RefSwin(swin_sd)(clip)  # (1, F)
    # Four copies of the clip: every row of a video's output is that clip's motion vector.
    got = _encoder(spec, "onnxruntime").encode(clip.repeat(4, 1, 1, 1, 1).numpy()[None])[0]  # (rows, 4, H)
    assert got.shape == (3, 4, 128)
    for skill, ck in cks.items():
        sd = ck.state
        x = torch.nn.functional.layer_norm(feats, feats.shape[-1:], sd["fast_mlp.0.weight"], sd["fast_mlp.0.bias"])
        x = torch.nn.functional.gelu(torch.nn.functional.linear(x, sd["fast_mlp.1.weight"], sd["fast_mlp.1.bias"]))
        want = torch.nn.functional.linear(x, sd["fast_mlp.3.weight"], sd["fast_mlp.3.bias"])[0].numpy()
        row = fam.config.skills[skill].motion_row
        for k in range(4):
            np.testing.assert_allclose(got[row, k], want, rtol=0, atol=MOTION_ATOL)
    # The torch module (the torch backend) agrees with the reference the same way.
    module = spec.torch_module()
    with torch.no_grad():
        np.testing.assert_allclose(module.swin(clip).numpy(), feats.numpy(), rtol=0, atol=MOTION_ATOL)
