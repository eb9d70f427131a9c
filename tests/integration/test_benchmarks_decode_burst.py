"""`python -m vidjudge.benchmarks.stages decode` and `python -m vidjudge.benchmarks.burst` run end to
end and account for what they measure (smoke tests: never on speed), plus the "scene" pattern the
decode benchmark's generated clips use: deterministic, textured and moving.
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
        same_output = mine["pyav decode-all, same frames to RGB"]
        assert same_output["vs_pyav_same_output"] == 1.0
        assert same_output["frames_decoded"] == same_output["frames_in_clip"]
        ours = mine["vidjudge sampled, upright RGB"]
        assert ours["vs_pyav_decode_all"] > 0 and ours["frames_decoded"] <= ours["frames_in_clip"]
        assert ours["vs_pyav_same_output"] > 0
        if doc["results"]["decode"]["ffmpeg"]:
            assert ours["vs_ffmpeg"] > 0


def test_burst_answers_every_call_on_both_servers_and_the_floor_refuses_all(tiny_bundle, tmp_path):
    video = write_video(tmp_path / "clip.mp4", width=160, height=120, num_frames=8, fps=8, pattern="scene")
    out = tmp_path / "burst.json"
    run = subprocess.run([sys.executable, "-m", "vidjudge.benchmarks.burst", "--bundle", str(tiny_bundle),
                          "--limit", "2", "--calls", "16", "--clients", "2", "--channels", "1", "--repeats", "1",
                          "--modes", "baseline,edge,floor", "--videos", str(video), "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    doc = json.loads(out.read_text())
    runs = doc["results"]["runs"]
    assert sorted(r["mode"] for r in runs) == ["baseline", "edge", "floor"]
    for r in runs:
        if r["mode"] == "floor":  # no vidjudge: gRPC refusing every call, the least any server can do
            assert r["calls"] == 16 and r["resource_exhausted"] == 16, r
            continue
        assert r["calls"] == 16 and r["ok"] + r["resource_exhausted"] == 16 and r["other"] == 0, r
        assert r["ok"] >= 2 and r["resource_exhausted"] >= 1
        assert r["in_flight_after"] == 0
    assert "p99 baseline/edge" in run.stdout and "p99 edge/floor" in run.stdout


def test_equal_output_baseline_gives_the_sampled_decodes_frames(tmp_path):
    """The "decode-all, same frames to RGB" baseline is a fair one: byte for byte vidjudge's output."""
    from vidjudge.benchmarks.stages import _pyav_decode_all_keep
    from vidjudge.server.decode import Native, SegmentCentres, decode_video
    from vidjudge.server.types import DecodeLimits, DecodeRequest, VideoSource, ViewSpec

    clip = write_video(tmp_path / "c.mp4", width=160, height=96, num_frames=30, fps=10, pattern="scene",
                       options={"preset": "medium"})
    request = DecodeRequest(views=(ViewSpec("frames", SegmentCentres(8), Native()),))
    view = decode_video(VideoSource(path=clip), request, DecodeLimits(), hwaccel="none", threads=1).views["frames"]
    baseline = _pyav_decode_all_keep(clip, 1, frozenset(int(i) for i in view.indices))
    assert baseline.shape == view.frames.shape
    assert np.array_equal(baseline, view.frames)
