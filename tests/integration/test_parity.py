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
from vidjudge.server.scorer.positions import mrope_positions
from vidjudge.server.types import DecodeLimits, VideoSource

from servers import make_config

SCORE_TOL = 1e-4  # on the 1..5 scale
PROB_TOL = 1e-5
PROMPT = "a colourful gradient sweeping across the screen"


def hf_reference(bundle_dir, video_path, prompt):
    from transformers import Qwen2_5_VLForConditionalGeneration

    bundle = load_bundle(bundle_dir)
    fam = bundle.family
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(bundle.llm_path, dtype=torch.float32).eval()
    decoded = decode_video(VideoSource(path=video_path), fam.decode_request(), DecodeLimits(), hwaccel="none")
    pre = fam.preprocess(decoded)
    pixel_values, grid = pre.inputs["vision"], fam.grid
    n_vid = fam.num_tokens
    out = {}
    for dim in bundle.dimensions.values():
        if dim.head != "level_token":
            continue  # heads on hidden states and yes/no are checked in test_heads
        prefix, suffix = fam.prompt_ids(dim.render_question(prompt), dim.answer_prefix)
        input_ids = torch.tensor([[*prefix, *[fam.video_token_id] * n_vid, *suffix]])
        pos = mrope_positions(len(prefix), grid, fam.config.merge_size, pre.seconds_per_t,
                              fam.config.tokens_per_second, len(suffix))
        with torch.no_grad():
            logits = model(input_ids=input_ids, pixel_values_videos=torch.from_numpy(pixel_values),
                           video_grid_thw=torch.tensor([grid]),
                           second_per_grid_ts=torch.tensor([pre.seconds_per_t]),
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
                r = c.score(v, prompt=PROMPT, dimensions=list(ref))
                assert set(r.scores) == set(ref)
                for name, (score, probs) in ref.items():
                    got = r.scores[name]
                    assert got.score == pytest.approx(score, abs=SCORE_TOL), (v.name, name)
                    np.testing.assert_allclose(list(got.levels.values()), probs, atol=PROB_TOL)
