"""The `vidjudge` command as a user runs it: real subprocesses, real server, real files."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from vidjudge.client import JudgeClient

VIDJUDGE = [sys.executable, "-m", "vidjudge.cli"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def run(*args, timeout=240, **kw):
    return subprocess.run([*VIDJUDGE, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV,
                          **kw)


def test_help_explains_the_commands():
    r = run("--help")
    assert r.returncode == 0
    for cmd in ("serve", "export", "score", "models", "demo"):
        assert cmd in r.stdout
    r = run("serve", "--help-config")
    assert r.returncode == 0 and "[admission]" in r.stdout and "max_in_flight = 64" in r.stdout


def test_score_prints_json_lines_and_exits_nonzero_naming_each_failure(server, video_dir, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    missing = tmp_path / "missing.mp4"
    r = run("score", video_dir / "gradient.mp4", bad, missing, "--server", server.address, "--json",
            "--prompt", "a gradient")
    assert r.returncode == 1, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [Path(x["file"]).name for x in lines] == ["gradient.mp4", "bad.mp4", "missing.mp4"]
    assert set(lines[0]["scores"]) == {"visual_quality", "text_alignment", "quality_regression"}
    assert lines[0]["scores"]["quality_regression"]["head"] == "regression"
    assert lines[1]["error"]["code"] == "INVALID_ARGUMENT" and lines[1]["error"]["reason"] == "not_a_video"
    assert lines[2]["error"]["reason"] == "file_not_found"
    assert "2 of 3 file(s) failed" in r.stderr
    ok = run("score", video_dir / "gradient.mp4", "--server", server.address)
    assert ok.returncode == 0 and "visual_quality" in ok.stdout


def test_models_lists_dimensions(server):
    r = run("models", "--server", server.address)
    assert r.returncode == 0
    assert "tiny-qwen2_5_vl (default)" in r.stdout and "text_alignment" in r.stdout and "needs prompt" in r.stdout
    assert "qa [0-1] yes_no yes/no (needs input qa.question)" in r.stdout, r.stdout
    assert "quality_regression [0-100] regression" in r.stdout and "frames: 8 frames of 112x112" in r.stdout


def test_score_passes_per_dimension_inputs(server, video_dir):
    r = run("score", video_dir / "gradient.mp4", "--server", server.address, "--json", "-d", "qa",
            "-i", "qa.question=Is the picture a gradient?")
    assert r.returncode == 0, r.stderr
    qa = json.loads(r.stdout)["scores"]["qa"]
    assert qa["head"] == "yes_no" and qa["answer"] in ("yes", "no") and 0.5 <= qa["answer_probability"] <= 1
    r = run("score", video_dir / "gradient.mp4", "--server", server.address, "-i", "question=no dimension")
    assert r.returncode == 2 and "DIMENSION.FIELD=VALUE" in r.stderr


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_then_sigterm_drains_in_flight_work(tiny_bundle, video_dir, tmp_path):
    from vidjudge.export.samples import write_video

    # One keyframe then 400 P-frames: sampling 8 frames must decode most of them (slow on purpose).
    slow = write_video(tmp_path / "slow.mp4", width=640, height=360, num_frames=300, fps=25, gop_size=300,
                       pattern="gradient")
    metrics_port = free_port()
    proc = subprocess.Popen([*VIDJUDGE, "serve", str(tiny_bundle), "--port", "0", "--metrics-port", str(metrics_port),
                             "--set", "server.drain_s=30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        line = ""
        for line in proc.stdout:
            if "serving on" in line:
                break
        m = re.search(r"serving on (\S+):(\d+)", line)
        assert m, f"no address printed: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        address = f"127.0.0.1:{m.group(2)}"
        results = {}

        def call():
            with JudgeClient(address) as c:
                results["r"] = c.score(slow)

        with JudgeClient(address) as c:
            c.wait_ready(30)
            c.score(video_dir / "gradient.mp4")
        t = threading.Thread(target=call)
        t.start()
        # SIGTERM only once the server has admitted the slow request (its own gauge says so).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
            if "vidjudge_in_flight 1.0" in body:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the slow request was never admitted")
        proc.send_signal(signal.SIGTERM)
        t.join(60)
        assert proc.wait(60) == 0
        assert 1.0 <= results["r"].scores["visual_quality"].score <= 5.0
        assert "draining" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_refuses_a_broken_bundle_with_a_clear_message(tmp_path):
    r = run("serve", tmp_path, "--port", "0")
    assert r.returncode == 2
    assert "manifest.json is missing" in r.stderr


@pytest.mark.slow
def test_demo_scores_the_sample_videos(tmp_path):
    r = run("demo", "--home", tmp_path, "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == 4 and all("scores" in x for x in lines)
    assert "scored 4/4 videos" in r.stderr
    assert (tmp_path / "bundles" / "default" / "manifest.json").is_file()
    # The default judge is trained: the clean clip scores above each of its degraded copies.
    score = {Path(x["file"]).name: x["scores"]["visual_quality"]["score"] for x in lines}
    assert set(score) == {"clean.mp4", "noise3.mp4", "blur3.mp4", "blocky3.mp4"}
    assert all(score["clean.mp4"] > v for k, v in score.items() if k != "clean.mp4"), score
    assert "clean.mp4 ranks above its degraded copies" in r.stderr


def test_export_trt_without_tensorrt_says_so_and_leaves_the_bundle_alone(tiny_bundle):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed: the engine build itself is for a GPU test")
    manifest = (tiny_bundle / "manifest.json").read_bytes()
    r = run("export", "trt", tiny_bundle)
    assert r.returncode == 2
    assert "tensorrt is not installed" in r.stderr
    assert (tiny_bundle / "manifest.json").read_bytes() == manifest
    assert not (tiny_bundle / "encoder" / "vision.plan").exists()
