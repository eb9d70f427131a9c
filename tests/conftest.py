"""Shared fixtures: the tiny checkpoint and bundle are built once per test session, offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import vidjudge.server  # noqa: F401  (installs the torchvision hook before any test imports transformers)

# Two cores here: keep each library to one intra-op thread so parallel stages don't thrash.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from vidjudge.export.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-qwen2_5_vl", seed=0)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_checkpoint) -> Path:
    from vidjudge.export.hf import export_hf

    out = tmp_path_factory.mktemp("bundle") / "tiny"
    return export_hf(tiny_checkpoint, out, num_frames=8, height=112, width=112, name="tiny-qwen2_5_vl")
