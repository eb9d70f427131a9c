"""`vidjudge eval` and `leaderboard` on synthetic data whose truth is known, through the real files:
results written by the rescore dataset writer, labels in each layout people have."""

from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from vidjudge.client.analysis.evaluate import evaluate, match
from vidjudge.client.analysis.labels import read_labels
from vidjudge.client.analysis.results import ResultsError, read_results
from vidjudge.cli import build_app

app = build_app()
from vidjudge.client.rescore.dataset import OutputDir
from vidjudge.client.rescore.rows import run_fields, to_table

RHO = 0.7
# Population values of each coefficient for a bivariate normal with correlation RHO.
TRUTH = {"plcc": RHO, "srcc": 6 / math.pi * math.asin(RHO / 2), "krcc": 2 / math.pi * math.asin(RHO)}
N, GENERATORS = 1200, 8


def synthetic(seed: int = 1):
    """N videos: judge score and human MOS bivariate normal with correlation RHO (on other scales:
    the coefficients do not care). The generator is the octile of score + MOS, a function of the pair
    that leaves its distribution alone, so the generators' means rise together (model level ~1)."""
    rng = np.random.default_rng(seed)
    xy = rng.multivariate_normal([0, 0], [[1, RHO], [RHO, 1]], size=N)
    s = xy.sum(axis=1)
    gen = np.searchsorted(np.quantile(s, np.linspace(0, 1, GENERATORS + 1)[1:-1]), s)
    return pd.DataFrame({"id": [f"clips/g{g}/v{i}.mp4" for i, g in enumerate(gen)], "generator": [f"g{g}" for g in gen],
                         "score": 3 + xy[:, 0] * 0.5, "mos": 50 + xy[:, 1] * 10})


def write_results(d, df, judge_sha="ab" * 32, bundle="tiny"):
    out = OutputDir(d)
    out.open()
    run = run_fields(video_sha256=None, video_bytes=None, deduplicated=False, bundle=bundle, bundle_sha256=judge_sha,
                     mode="bundle", run_id="r1", version="0")
    rows = [{"id": r.id, "dimension": "visual_quality", "path": "/data/" + r.id, "generator": r.generator,
             "score": float(r.score), "status": "OK", **run} for r in df.itertuples()]
    rows.append({"id": "broken", "dimension": "visual_quality", "generator": "g0", "status": "INVALID_ARGUMENT",
                 "reason": "undecodable", **run})
    out.commit(to_table(rows), "r1")
    out.close()


def test_eval_recovers_a_known_correlation_within_its_interval(tmp_path):
    df = synthetic()
    write_results(tmp_path / "results", df)
    # Labels name videos by a path suffix of the result's path (as Video-Bench's do); one is a broken video.
    labels = pd.DataFrame({"id": list(df["id"]) + ["broken", "nowhere.mp4"], "dimension": "visual_quality",
                           "mos": list(df["mos"]) + [10.0, 20.0]})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    r = CliRunner().invoke(app, ["eval", str(tmp_path / "results"), str(tmp_path / "labels.csv"), "-o",
                                 str(tmp_path / "report"), "--bootstrap", "400", "--json"])
    assert r.exit_code == 0, r.output
    (dim,) = json.loads(r.stdout)["dimensions"]
    assert (dim["labels"], dim["matched"], dim["failed"]) == (N + 2, N + 1, 1)
    for metric, truth in TRUTH.items():
        e = dim["instance"][metric]
        assert e["n"] == N
        assert e["low"] <= truth <= e["high"], (metric, e, truth)
        assert e["high"] - e["low"] < 0.12  # an interval that says something
    # Model level: the generators' means rise together.
    assert dim["model"]["srcc"]["n"] == GENERATORS and dim["model"]["srcc"]["value"] > 0.9
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| visual_quality | 1200 |" in report and "ranking_visual_quality.png" in report
    for png in ("scatter_visual_quality.png", "ranking_visual_quality.png"):
        assert (tmp_path / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_qa_accuracy_with_its_interval(tmp_path):
    rng = np.random.default_rng(3)
    n = 400
    truth = rng.random(n) < 0.5
    correct = rng.random(n) < 0.8
    pred = np.where(correct, truth, ~truth)
    results = pd.DataFrame({"id": [f"v{i}" for i in range(n)], "dimension": "love_qa", "score": 0.0, "status": "OK",
                            "reason": None, "answer": ["Yes." if p else "No, it does not." for p in pred],
                            "generator": "g", "prompt": None, "path": None, "bundle": "b", "bundle_sha256": "ab"})
    # LOVE QA lines: no mos, the answer in the last gpt turn.
    lines = [json.dumps({"video": f"v{i}", "conversations": [{"from": "human", "value": "<video>Is there a cat?"},
                                                              {"from": "gpt", "value": "Yes" if t else "No"}]})
             for i, t in enumerate(truth)]
    (tmp_path / "qa.jsonl").write_text("\n".join(lines) + "\n")
    labels = read_labels(tmp_path / "qa.jsonl", dimension="love_qa")
    (rep,) = evaluate(results, labels, n_resamples=400)
    assert rep.accuracy.value == pytest.approx(correct.mean())
    assert rep.accuracy.low < 0.8 < rep.accuracy.high and rep.accuracy.n == n
    assert rep.instance == {}  # QA labels carry no MOS


def test_love_and_videobench_labels_and_path_matching(tmp_path):
    (tmp_path / "perception.jsonl").write_text(
        json.dumps({"video": "Videos300/Allegro/10001.mp4", "mos": 61.5,
                    "conversations": [{"from": "human", "value": "<video>How is the quality of the video?"},
                                      {"from": "gpt", "value": "The quality of the video is good."}]}) + "\n")
    love = read_labels(tmp_path / "perception.jsonl", dimension="visual_quality")
    assert love.to_dict("records")[0] | {"generator": None} == {
        "key": "Videos300/Allegro/10001.mp4", "dimension": "visual_quality", "mos": 61.5, "answer": None,
        "generator": None}
    anno = tmp_path / "human_anno"
    anno.mkdir()
    (anno / "color.json").write_text(json.dumps([{
        "prompt_en": "A red bicycle",
        "videos": {"kling": "color/kling/A red bicycle_0.mp4", "pika": "color/pika/A red bicycle_0.mp4"},
        "human_anno": {"kling": [3, 3, 3, 2], "pika": [1, 2, 1, 2]}}]))
    (anno / "video-text consistency.json").write_text(json.dumps([{
        "prompt_en": "x", "videos": {"kling": "overall/kling/x_0.mp4"}, "human_anno": {"kling": [4, 4, 5, 5]}}]))
    vb = read_labels(anno).sort_values(["dimension", "generator"]).to_dict("records")
    assert [(r["dimension"], r["generator"], r["mos"]) for r in vb] == [
        ("color", "kling", 2.75), ("color", "pika", 1.5), ("overall_consistency", "kling", 4.5)]
    results = pd.DataFrame({"id": ["a", "b", "c"], "path": ["/data/vb/color/kling/A red bicycle_0.mp4",
                                                            "/data/vb/color/pika/A red bicycle_0.mp4",
                                                            "/elsewhere/kling/A red bicycle_0.mp4"]})
    keys = match(results, pd.DataFrame({"key": ["color/kling/A red bicycle_0.mp4", "kling/A red bicycle_0.mp4",
                                                "b"]}))
    # Exact ids match; a suffix naming one video matches; one naming two (ambiguous) matches nothing.
    assert keys == {"color/kling/A red bicycle_0.mp4": "a", "b": "b"}


def test_leaderboard_ranks_generators_with_intervals(tmp_path):
    df = synthetic()
    write_results(tmp_path / "results", df)
    r = CliRunner().invoke(app, ["leaderboard", str(tmp_path / "results"), "-o", str(tmp_path / "lb"),
                                 "--bootstrap", "200", "--json"])
    assert r.exit_code == 0, r.output
    board = pd.DataFrame(json.loads(r.stdout))
    assert list(board["rank"]) == list(range(1, GENERATORS + 1))
    expected = df.groupby("generator")["score"].mean().sort_values(ascending=False)
    assert list(board["generator"]) == list(expected.index)
    assert np.allclose(board["mean"], expected.values, atol=1e-9)
    assert (board["ci_low"] < board["mean"]).all() and (board["mean"] < board["ci_high"]).all()
    assert board["n"].sum() == N  # the failed row is not scored
    csv = pd.read_csv(tmp_path / "lb" / "leaderboard.csv")
    assert list(csv.columns) == ["dimension", "rank", "generator", "n", "mean", "ci_low", "ci_high"]
    assert "| 1 | " in (tmp_path / "lb" / "leaderboard.md").read_text()


def test_results_of_two_judges_need_a_choice(tmp_path):
    df = synthetic().head(10)
    write_results(tmp_path / "results", df, judge_sha="ab" * 32, bundle="old")
    out = OutputDir(tmp_path / "results")
    out.open()
    run = run_fields(video_sha256=None, video_bytes=None, deduplicated=False, bundle="new", bundle_sha256="cd" * 32,
                     mode="bundle", run_id="r2", version="0")
    out.commit(to_table([{"id": "x", "dimension": "visual_quality", "score": 1.0, "status": "OK", **run}]), "r2")
    out.close()
    with pytest.raises(ResultsError, match="choose one with --bundle"):
        read_results(tmp_path / "results")
    assert set(read_results(tmp_path / "results", "new")["id"]) == {"x"}
    assert len(read_results(tmp_path / "results", "abab")) == 11


def test_analysis_is_not_imported_by_the_thin_client():
    import subprocess

    code = ("import sys, vidjudge.client; bad = [m for m in ('pyarrow', 'ray', 'scipy', 'pandas', 'matplotlib', "
            "'vidjudge.client.rescore.run', 'vidjudge.server') if m in sys.modules]; print(bad)")
    # VIDJUDGE_TORCHVISION_STUB=0: the dev venv's opt-in .pth (make test) imports vidjudge.server otherwise.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, VIDJUDGE_TORCHVISION_STUB="0"))
    assert out.stdout.strip() == "[]"
