"""Every head served over gRPC (transformers backend) against a torch computation from the untouched HF model.

Reference: the original Qwen2_5_VLForConditionalGeneration with its own vision tower on the frames'
patches and the original mRoPE positions (as in test_parity.py); from its final-norm hidden state at the
last prompt position, the regression head is the bundle's MLP in torch (x output_scale) and the yes/no
head is the softmax over the LM head's rows of "yes" and "no". The vLLM backend is held to the same
numbers in test_vllm_parity.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vidjudge.client import JudgeClient
from vidjudge.errors import InvalidRequest
from vidjudge.server.app import ServerThread
from vidjudge.server.bundle import load_bundle
from vidjudge.server.decode import decode_video
from vidjudge.server.scorer.positions import mrope_positions
from vidjudge.server.types import DecodeLimits, VideoSource

from servers import make_config

SCORE_TOL = 1e-4  # regression on 0..100: float32 through two different stacks
PROB_TOL = 1e-5
QUESTION = "Is there a bright square in the video?"


def hf_last_hidden(bundle, model, video_path, question: str, answer_prefix: str) -> torch.Tensor:
    """Final-norm hidden state at the last prompt position, from the untouched HF model end to end."""
    fam = bundle.family
    pre = fam.preprocess(decode_video(VideoSource(path=video_path), fam.decode_request(), DecodeLimits(),
                                      hwaccel="none"))
    prefix, suffix = fam.prompt_ids(question, answer_prefix)
    ids = torch.tensor([[*prefix, *[fam.video_token_id] * fam.num_tokens, *suffix]])
    pos = mrope_positions(len(prefix), fam.grid, fam.config.merge_size, pre.seconds_per_t,
                          fam.config.tokens_per_second, len(suffix))
    with torch.no_grad():
        out = model.model(input_ids=ids, pixel_values_videos=torch.from_numpy(pre.inputs["vision"]),
                          video_grid_thw=torch.tensor([fam.grid]), second_per_grid_ts=torch.tensor([pre.seconds_per_t]),
                          position_ids=torch.from_numpy(pos)[:, None, :])
    return out.last_hidden_state[0, -1].double()


def torch_mlp(path, h: torch.Tensor) -> float:
    from safetensors.torch import load_file

    w = load_file(str(path))
    for i in range(1, len(w) // 2 + 1):
        h = torch.relu(h @ w[f"fc{i}.weight"].double().T + w[f"fc{i}.bias"].double())  # ReLU after every layer
    return float(h.reshape(-1)[0])


@pytest.fixture(scope="module")
def references(tiny_bundle, video_dir):
    from transformers import Qwen2_5_VLForConditionalGeneration

    bundle = load_bundle(tiny_bundle)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(bundle.llm_path, dtype=torch.float32).eval()
    reg, qa = bundle.dimensions["quality_regression"], bundle.dimensions["qa"]
    out = {}
    for name in ("gradient.mp4", "noise.mp4"):
        v = video_dir / name
        h = hf_last_hidden(bundle, model, v, reg.render_question(""), reg.answer_prefix)
        mos = torch_mlp(bundle.root / bundle.manifest.heads[reg.weights].file, h) * reg.output_scale
        h = hf_last_hidden(bundle, model, v, qa.render_question("", {"question": QUESTION}), qa.answer_prefix)
        rows = model.lm_head.weight.detach()[list(qa.level_token_ids)].double()
        p = torch.softmax(rows @ h, -1).numpy()
        out[name] = {"mos": mos, "p": p}
    return out


@pytest.fixture(scope="module")
def server(tiny_bundle_all_heads, video_dir):
    with ServerThread(make_config(tiny_bundle_all_heads, video_dir)) as s:
        yield s


def test_regression_and_yes_no_match_the_untouched_hf_model(server, video_dir, references):
    mos = [references[n]["mos"] for n in references]
    assert abs(mos[0] - mos[1]) > 100 * SCORE_TOL, mos  # the videos differ, or this test could not tell
    worst = {"mos": 0.0, "p": 0.0}
    with JudgeClient(server.address) as c:
        for name, ref in references.items():
            r = c.score(video_dir / name, dimensions=["quality_regression", "qa"],
                        inputs={"qa": {"question": QUESTION}})
            reg, qa = r.scores["quality_regression"], r.scores["qa"]
            worst["mos"] = max(worst["mos"], abs(reg.score - ref["mos"]))
            worst["p"] = max(worst["p"], float(np.abs(np.subtract(list(qa.levels.values()), ref["p"])).max()))
            assert (reg.head, reg.scale_min, reg.scale_max) == ("regression", 0.0, 100.0)
            assert reg.score == pytest.approx(ref["mos"], abs=SCORE_TOL), name
            assert qa.head == "yes_no" and list(qa.levels) == ["yes", "no"]
            np.testing.assert_allclose(list(qa.levels.values()), ref["p"], atol=PROB_TOL)
            assert qa.score == pytest.approx(ref["p"][0], abs=PROB_TOL)
            want = "yes" if ref["p"][0] >= ref["p"][1] else "no"
            assert qa.answer == want and qa.answer_probability == pytest.approx(ref["p"].max(), abs=PROB_TOL)
    print(f"\nserved vs untouched HF: regression max |diff| {worst['mos']:.2e} (0-100), yes/no {worst['p']:.2e}")


def test_a_lora_adapter_is_applied_exactly_as_peft_applies_it(server, tiny_bundle_all_heads, video_dir):
    """visual_quality_sharp names the bundle's LoRA adapter: its level probabilities equal the untouched
    HF model wrapped by PEFT with that adapter, and differ from the base model's."""
    from peft import PeftModel
    from transformers import Qwen2_5_VLForConditionalGeneration

    bundle = load_bundle(tiny_bundle_all_heads)
    d = bundle.dimensions["visual_quality_sharp"]
    base = Qwen2_5_VLForConditionalGeneration.from_pretrained(bundle.llm_path, dtype=torch.float32).eval()
    model = PeftModel.from_pretrained(base, str(bundle.adapter_path("sharp"))).eval()
    video = video_dir / "gradient.mp4"
    h = hf_last_hidden(bundle, model.base_model.model, video, d.render_question(""), d.answer_prefix)
    lp = torch.log_softmax(model.base_model.model.lm_head(h.float()).double(), -1)[list(d.level_token_ids)]
    want_score, want_p = d.score(lp.detach().numpy())
    with JudgeClient(server.address) as c:
        r = c.score(video, dimensions=["visual_quality", "visual_quality_sharp"])
    got = r.scores["visual_quality_sharp"]
    np.testing.assert_allclose(list(got.levels.values()), want_p, atol=PROB_TOL)
    assert got.score == pytest.approx(want_score, abs=1e-4)
    assert abs(got.score - r.scores["visual_quality"].score) > 1e-3  # the adapter changes the answer


def test_generate_returns_the_text_and_a_score_or_a_typed_error_for_that_dimension_only(server, video_dir):
    with JudgeClient(server.address) as c:
        r = c.score(video_dir / "gradient.mp4", dimensions=["rated", "visual_quality"])
    rated = r.scores["rated"]
    assert rated.head == "generate" and rated.rationale  # a random model says something
    if rated.error is not None:  # no parsable score line (likely for random weights): typed, no default score
        assert rated.error.reason == "unparsable_output" and math.isnan(rated.score)
    else:
        assert 1.0 <= rated.score <= 5.0
    assert r.scores["visual_quality"].ok and 1.0 <= r.scores["visual_quality"].score <= 5.0


def test_inputs_are_checked_and_named(server, video_dir):
    with JudgeClient(server.address) as c:
        with pytest.raises(InvalidRequest) as e:
            c.score(video_dir / "gradient.mp4", dimensions=["qa"])
        assert e.value.reason == "missing_input" and "qa: question" in e.value.message
        with pytest.raises(InvalidRequest) as e:
            c.score(video_dir / "gradient.mp4", dimensions=["visual_quality"], inputs={"nope": {"question": "?"}})
        assert e.value.reason == "unknown_dimension"
        with pytest.raises(InvalidRequest) as e:
            c.score(video_dir / "gradient.mp4", inputs={"visual_quality": {"question": "?"}})
        assert e.value.reason == "unexpected_input"
        # Without dimensions named, a dimension whose input is missing is simply not scored...
        r = c.score(video_dir / "gradient.mp4")
        assert "qa" not in r.scores and "quality_regression" in r.scores
        # ... and with its input it is.
        r = c.score(video_dir / "gradient.mp4", inputs={"qa": {"question": QUESTION}})
        assert r.scores["qa"].answer in ("yes", "no")
        models = c.list_models()
    dims = {d.name: d for d in models[0].dimensions}
    assert dims["qa"].inputs == ("question",) and dims["qa"].head == "yes_no"
    assert {d.head for d in dims.values()} == {"level_token", "regression", "yes_no", "generate"}
    assert dims["visual_quality_sharp"].adapter == "sharp" and models[0].adapters == ("sharp",)
    assert [v.name for v in models[0].views] == ["frames"] and models[0].encoder_backends == {"vision": "onnxruntime-cpu"}
