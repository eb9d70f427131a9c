"""The served score equals what the untouched Hugging Face model computes end to end from the same frames.

Reference path: the original Qwen2_5_VLForConditionalGeneration forward (its own vision tower on
pixel_values_videos, full LM, full-vocabulary log-softmax), level-word softmax, expected value. The
only inputs we supply are the frames' patches (our NumPy patchify, checked against HF's image
processor in tests/unit/test_preprocess.py, since HF's video processor needs torchvision) and the
mRoPE position ids by the original Qwen2.5-VL rule (DESIGN.md §5; transformers 5.19 places text after
a multi-group video differently, so its default would not be the original model).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidjudge.client import JudgeClient
from vidjudge.server.app import ServerThread
from vidjudge.server.bundle import load_bundle
from vidjudge.server.decode import decode_video
from vidjudge.server.preprocess import PatchSpec, preprocess
from vidjudge.server.scorer.positions import mrope_positions
from vidjudge.server.types import DecodeLimits, VideoSource

from servers import make_config

SCORE_TOL = 1e-4  # on the 1..5 scale
PROB_TOL = 1e-5
PROMPT = "a colourful gradient sweeping across the screen"


def hf_reference(bundle_dir, video_path, prompt):
    from transformers import Qwen2_5_VLForConditionalGeneration

    bundle = load_bundle(bundle_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(bundle.llm_path, dtype=torch.float32).eval()
    decoded = decode_video(VideoSource(path=video_path), bundle.frame_spec.decode_request, DecodeLimits(), hwaccel="none")
    p = bundle.manifest.preprocess
    pre = preprocess(decoded, PatchSpec(p.patch_size, p.temporal_patch_size, p.merge_size, tuple(p.mean),
                                        tuple(p.std)))
    n_vid = bundle.manifest.vision.num_tokens
    out = {}
    for dim in bundle.dimensions.values():
        ids = bundle.prompt_ids(dim, prompt)
        input_ids = torch.tensor([[*ids.prefix, *[bundle.video_token_id] * n_vid, *ids.suffix]])
        pos = mrope_positions(len(ids.prefix), pre.grid_thw, p.merge_size, pre.second_per_grid_t,
                              bundle.manifest.vision.tokens_per_second, len(ids.suffix))
        with torch.no_grad():
            logits = model(input_ids=input_ids, pixel_values_videos=torch.from_numpy(pre.pixel_values),
                           video_grid_thw=torch.tensor([pre.grid_thw]),
                           second_per_grid_ts=torch.tensor([pre.second_per_grid_t]),
                           position_ids=torch.from_numpy(pos)[:, None, :]).logits[0, -1]
        lp = torch.log_softmax(logits.double(), -1)[list(dim.level_token_ids)].numpy()
        out[dim.name] = dim.score(lp)
    return out


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_served_scores_match_the_untouched_hf_model(tiny_bundle, video_dir, backend):
    videos = [video_dir / "gradient.mp4", video_dir / "noise.mp4"]
    refs = [hf_reference(tiny_bundle, v, PROMPT) for v in videos]
    # The two videos must give different reference scores, or this test could not tell them apart.
    assert abs(refs[0]["visual_quality"][0] - refs[1]["visual_quality"][0]) > 1e-4
    with ServerThread(make_config(tiny_bundle, video_dir, **{"encoder.backend": backend})) as s:
        with JudgeClient(s.address) as c:
            for v, ref in zip(videos, refs):
                r = c.score(v, prompt=PROMPT)
                assert set(r.scores) == set(ref)
                for name, (score, probs) in ref.items():
                    got = r.scores[name]
                    assert got.score == pytest.approx(score, abs=SCORE_TOL), (v.name, name)
                    np.testing.assert_allclose(list(got.levels.values()), probs, atol=PROB_TOL)
