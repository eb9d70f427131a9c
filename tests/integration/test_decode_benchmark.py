"""`python -m vidjudge.benchmarks.stages decode` runs end to end and reports both baselines.

A smoke test on two tiny clips (never on speed), plus the "scene" pattern the benchmark's
generated clips use: deterministic, textured and moving.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from vidjudge.export.samples import render_frame, write_video


def test_scene_pattern_is_deterministic_textured_and_moving():
    a = render_frame("scene", 160, 90, 3, 24, seed=1)
    assert a.shape == (90, 160, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, render_frame("scene", 160, 90, 3, 24, seed=1))
    assert a.std() > 20 and len(np.unique(a.reshape(-1, 3), axis=0)) > 1000  # texture, not flat colour
    b = render_frame("scene", 160, 90, 12, 24, seed=1)
    assert np.abs(a.astype(int) - b).mean() > 10  # it moves


def test_stages_decode_reports_every_method_and_both_ratios(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "a.mp4", width=128, height=72, num_frames=24, fps=12, pattern="scene",
                options={"preset": "medium"})
    write_video(videos / "b.webm", codec="libvpx-vp9", width=96, height=64, num_frames=12, fps=8, pattern="scene")
    out = tmp_path / "decode.json"
    run = subprocess.run([sys.executable, "-m", "vidjudge.benchmarks.stages", "decode", "--videos", str(videos),
                          "--rounds", "1", "--min-time", "0", "--frame-size", "56x56", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "summary" in run.stdout
    doc = json.loads(out.read_text())
    rows = doc["results"]["decode"]["rows"]
    clips = {r["clip"] for r in rows}
    assert clips == {"a.mp4", "b.webm"}
    for clip in clips:
        mine = {r["method"]: r for r in rows if r["clip"] == clip}
        assert mine["pyav decode-all, no conversion"]["vs_pyav_decode_all"] == 1.0
        ours = mine["vidjudge sampled, upright RGB"]
        assert ours["vs_pyav_decode_all"] > 0 and ours["frames_decoded"] <= ours["frames_in_clip"]
        if doc["results"]["decode"]["ffmpeg"]:
            assert ours["vs_ffmpeg"] > 0
