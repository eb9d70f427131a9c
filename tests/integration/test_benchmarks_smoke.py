"""The benchmarks run end to end on the tiny bundle and account for every request they send.

Smoke tests only: a handful of requests per benchmark, checks on the JSON they write and on
request accounting (OK + errors == sent). Never on speed: timings on a shared machine say
nothing about correctness.
"""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import pytest

from vidjudge.export.samples import write_video

MODULES = ["loadgen", "naive", "compare", "stages", "fullsize_bundle"]
# As tests/servers.py: the transformers scorer, not a vLLM engine per started server (seconds each).
REFERENCE_SCORER = ["--set", "scorer.backend=transformers"]


@pytest.fixture(scope="module")
def bench_videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench-videos")
    write_video(d / "gradient.mp4", codec="libx264", width=160, height=120, num_frames=16, fps=8, pattern="gradient")
    write_video(d / "checker.mp4", codec="libx264", width=128, height=96, num_frames=12, fps=12, pattern="checker")
    return d


def _accounted(counts: dict) -> int:
    return counts["ok"] + counts["resource_exhausted"] + counts["deadline_exceeded"] + counts["other_errors"]


def _check_level(level: dict, percentiles=("p50", "p95", "p99")) -> None:
    for key in ("videos_per_s", "window_s", "ok", "resource_exhausted", "deadline_exceeded", "other_errors",
                "other_by_code", "latency_ms", "server_timings_ms", "all"):
        assert key in level, key
    assert set(percentiles) <= set(level["latency_ms"])
    everything = level["all"]
    assert everything["sent"] > 0
    assert everything["unanswered"] == 0
    assert _accounted(everything) == everything["sent"], everything
    assert _accounted(level) <= everything["sent"]
    assert everything["other_errors"] == 0, everything["other_by_code"]  # good videos, no limits hit
    assert level["videos_per_s"] >= 0


@pytest.mark.parametrize("module", MODULES)
def test_every_benchmark_has_help(module):
    out = subprocess.run([sys.executable, "-m", f"vidjudge.benchmarks.{module}", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout and len(out.stdout) > 400


def test_loadgen_closed_and_open_loop_account_for_every_request(tiny_bundle, bench_videos, tmp_path):
    from vidjudge.benchmarks import loadgen

    closed, opened = tmp_path / "closed.json", tmp_path / "open.json"
    common = ["--start-server", "--bundle", str(tiny_bundle), "--videos", str(bench_videos), "--warmup", "1",
              "--requests", "3", "--set", "decode.workers=1", *REFERENCE_SCORER]
    assert loadgen.main([*common, "--concurrency-range", "1:3:2", "--out", str(closed)]) == 0
    assert loadgen.main([*common, "--request-rate-range", "20", "--percentile", "90", "--out", str(opened)]) == 0

    doc = json.loads(closed.read_text())
    assert doc["benchmark"] == "loadgen" and "environment" in doc and doc["command"]
    assert [lv["concurrency"] for lv in doc["results"]] == [1, 3]
    for level in doc["results"]:
        _check_level(level)
        assert level["all"]["ok"] >= 3  # count mode: the window held at least 3 completions
        assert level["server"]["llm"]["mean_batch"] >= 1  # server-side stats of the in-process server
    assert doc["config"]["server_config"]["decode"]["workers"] == 1
    assert doc["config"]["overrides"]["scorer.backend"] == "transformers"

    doc = json.loads(opened.read_text())
    (level,) = doc["results"]
    assert level["request_rate"] == 20
    _check_level(level, percentiles=("p90",))
    assert "send_lag_ms" in level


def test_compare_runs_both_paths_on_the_same_work(tiny_bundle, bench_videos, tmp_path):
    from vidjudge.benchmarks import compare

    out = tmp_path / "compare.json"
    assert compare.main(["--bundle", str(tiny_bundle), "--videos", str(bench_videos), "--naive-requests", "2",
                         "--requests", "4", "--concurrency", "4", "--warmup", "1", *REFERENCE_SCORER,
                         "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    res = doc["results"]
    assert res["concurrency"] == 4 and res["ratio_median"] is not None
    (run,) = res["runs"]
    assert run["naive"]["videos"] == 2 and run["naive"]["videos_per_s"] > 0
    assert run["naive"]["forwards_per_video"] == 2  # both built-in dimensions (a prompt is sent)
    _check_level(run["server"])
    assert run["ratio"] == pytest.approx(run["server"]["videos_per_s"] / run["naive"]["videos_per_s"])
    # The decode-bound ceiling: decode workers / mean decode seconds, and the share of it reached.
    decode = run["server"]["server"]["decode"]
    assert run["decode_ceiling_videos_per_s"] == pytest.approx(
        doc["results"]["server_config"]["decode"]["workers"] / decode["mean_s"])
    assert run["of_decode_ceiling"] == pytest.approx(run["server"]["videos_per_s"] / run["decode_ceiling_videos_per_s"])
    assert isinstance(run["shared_joins"], int) and run["shared_joins"] >= 0
    # The naive reference and the server computed the same scores for the same videos.
    assert run["max_score_diff"] is not None and run["max_score_diff"] < 1e-4


def test_fullsize_small_preset_builds_a_bundle_the_server_accepts(tmp_path):
    from vidjudge.benchmarks import fullsize_bundle
    from vidjudge.server.bundle import load_bundle

    out = tmp_path / "small"
    report = tmp_path / "small.json"
    assert fullsize_bundle.main([str(out), "--preset", "small", "--height", "112", "--width", "112",
                                 "--report", str(report)]) == 0
    bundle = load_bundle(out)
    assert json.loads((out / "llm" / "config.json").read_text())["text_config"]["vocab_size"] == 152064
    assert bundle.manifest.views["frames"].num_frames == 8 and bundle.family.grid == (4, 8, 8)
    assert set(bundle.dimensions) == {"visual_quality", "text_alignment"}
    assert not (tmp_path / "small.checkpoint").exists()  # the intermediate checkpoint was removed
    cfg = json.loads((out / "llm" / "config.json").read_text())
    assert cfg["text_config"]["rope_parameters"]["mrope_section"] == [16, 24, 24]
    assert cfg["dtype"] == "bfloat16"
    doc = json.loads(report.read_text())
    assert doc["results"]["parameters"] > 7e7

    # The weights are complete under the names transformers expects (nothing missing or left over).
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    _, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(bundle.llm_path, dtype=torch.bfloat16,
                                                                 output_loading_info=True)
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info


def test_fullsize_7b_dry_run_reports_real_sizes(tmp_path):
    from vidjudge.benchmarks import fullsize_bundle

    report = tmp_path / "7b.json"
    assert fullsize_bundle.main([str(tmp_path / "q7"), "--preset", "7b", "--dry-run", "--report", str(report)]) == 0
    r = json.loads(report.read_text())["results"]
    assert r["parameters"] == 8_292_166_656  # Qwen2.5-VL-7B's parameter count
    assert r["onnx_external_data"] is True  # ~2.7 GB of float32 vision weights: over protobuf's 2 GB
    assert not (tmp_path / "q7").exists()


def test_gpu_check_dry_runs_on_cpu(tmp_path):
    """benchmarks/gpu/check.sh --dry-run: every step of the GPU check runs here on CPU (tiny bundle, seconds),
    so the script is known to work before the minutes on a GPU machine are spent on it."""
    import os
    import subprocess

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable, WORK=str(tmp_path / "work"))
    r = subprocess.run(["bash", str(root / "benchmarks" / "gpu" / "check.sh"), "--dry-run"], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] and set(summary["steps"]) == {"probe", "tests", "bundle", "stages", "compare"}
    failed = {k: v for k, v in summary["steps"].items() if not v["ok"]}
    assert not failed, (failed, {k: (out / f"{k}.log").read_text()[-1500:] for k in failed})
    assert summary["gpu"]["available"] is False and summary["compare"]["ratio_median"] > 0
    stages = json.loads((out / "stages.json").read_text())["results"]
    assert {r["backend"] for r in stages["encoder"]["rows"]} == {"torch-cpu"} and stages["llm"]["rows"]


def test_videobench_benchmark_reports_every_mode(tmp_path):
    from vidjudge.benchmarks import videobench

    out = tmp_path / "vb.json"
    assert videobench.main(["--groups", "1", "--generators", "2", "--concurrency", "1", "--out", str(out)]) == 0
    modes = json.loads(out.read_text())["results"]["modes"]
    assert set(modes) == {"faithful", "fast", "one call at a time"}
    # Faithful: 5 calls per alignment dimension and video, 1 per static, 1 per group for dynamic (+ retries).
    assert modes["faithful"]["llm_calls_per_video"] >= 5 * 5 + 2 + 1
    assert modes["fast"]["llm_calls_per_video"] == 9
    assert modes["one call at a time"]["llm_calls_per_video"] >= 5 * 5 + 2 + 1
