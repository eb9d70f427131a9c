"""A real server on loopback, a real gRPC client, real video files."""

from __future__ import annotations

import asyncio
import threading
import urllib.request

import av
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vidjudge.client import NO_RETRY, AsyncJudgeClient, JudgeClient, build_request
from vidjudge.errors import DeadlineExceeded, InvalidRequest, InvalidVideo, ModelNotFound, Overloaded, Unavailable
from vidjudge.export.samples import write_audio_only, write_video
from vidjudge.server.app import ServerThread

from servers import BATCH_TOL, make_config

CODECS = [("libx264", "mp4"), ("libx265", "mkv"), ("libvpx-vp9", "webm"), ("mpeg4", "mov"), ("libx264", "mkv")]
AV1 = next((c for c in ("libsvtav1", "libaom-av1", "librav1e") if c in av.codecs_available), None)
if AV1:
    CODECS.append((AV1, "mkv"))


def check_result(r, dims=("visual_quality",)):
    assert set(dims) <= set(r.scores)
    for s in r.scores.values():
        assert s.ok, s.error
        if s.head == "level_token":
            assert s.scale_min <= s.score <= s.scale_max
            assert list(s.levels) == ["excellent", "good", "fair", "poor", "bad"]
            assert sum(s.levels.values()) == pytest.approx(1.0, abs=1e-6)
        else:  # regression: the tiny random MLP's output, x100 (not clipped to the nominal scale)
            assert s.head == "regression" and np.isfinite(s.score) and s.score >= 0
    assert r.timings["total_s"] > 0 and r.timings["decode_s"] > 0 and r.timings["encode_s"] > 0
    assert r.timings["llm_s"] > 0


def test_health_reflection_and_list_models(server):
    with grpc.insecure_channel(server.address) as ch:
        h = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="vidjudge.v1.Judge"))
        assert h.status == health_pb2.HealthCheckResponse.SERVING
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        resp = next(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        names = {s.name for s in resp.list_services_response.service}
        assert {"vidjudge.v1.Judge", "grpc.health.v1.Health"} <= names
    with JudgeClient(server.address) as c:
        (m,) = c.list_models()
        assert m.name == "tiny-qwen2_5_vl" and m.is_default and m.num_frames == 8
        assert {d.name: d.requires_prompt for d in m.dimensions} == {
            "visual_quality": False, "text_alignment": True, "quality_regression": False, "qa": False}


@pytest.mark.parametrize("codec, container", CODECS)
def test_scores_videos_in_many_codecs_and_containers(server, tmp_path, codec, container):
    path = write_video(tmp_path / f"v.{container}", codec=codec, width=128, height=96, num_frames=12, fps=12,
                       pattern="checker")
    with JudgeClient(server.address) as c:
        r = c.score(path, prompt="a moving checkerboard", dimensions=["visual_quality", "text_alignment"])
    check_result(r, ("visual_quality", "text_alignment"))
    assert r.video["width"] == 128 and r.video["height"] == 96


def test_inline_and_path_give_the_same_scores_and_are_deterministic(server, video_dir):
    v = video_dir / "gradient.mp4"
    with JudgeClient(server.address) as c:
        a = c.score(v)
        b = c.score(str(v), server_path=True)
        n = c.score(video_dir / "noise.mp4")
    # No prompt (and no QA question): only the dimensions that need neither.
    assert set(a.scores) == {"visual_quality", "quality_regression"}
    assert a.scores["visual_quality"].score == pytest.approx(b.scores["visual_quality"].score, abs=BATCH_TOL)
    assert a.scores["visual_quality"].score != pytest.approx(n.scores["visual_quality"].score, abs=1e-6)


def bad_inputs(tmp_path, video_dir):
    good = (video_dir / "gradient.mp4").read_bytes()
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(good)
    audio = write_audio_only(tmp_path / "audio.m4a")
    rng = np.random.default_rng(0)
    return [
        ("zero bytes", dict(video=b""), InvalidVideo, "empty_input"),
        ("random bytes", dict(video=rng.bytes(50_000)), InvalidVideo, "not_a_video"),
        ("truncated mp4 (moov at the end, cut)", dict(video=good[: len(good) // 3]), InvalidVideo, None),
        ("audio only", dict(video=audio.read_bytes()), InvalidVideo, "no_video_stream"),
        ("path outside allowed dirs", dict(video=str(outside), server_path=True), InvalidRequest,
         "path_not_allowed"),
        ("unknown dimension", dict(video=good, dimensions=["smell"]), InvalidRequest, "unknown_dimension"),
        ("prompt missing", dict(video=good, dimensions=["text_alignment"]), InvalidRequest, "missing_prompt"),
        ("unknown model", dict(video=good, model="gpt-9"), ModelNotFound, "model_not_found"),
    ]


def test_bad_inputs_get_clear_errors_and_the_server_keeps_serving(server, tmp_path, video_dir):
    with JudgeClient(server.address, retry=NO_RETRY) as c:
        for label, kwargs, exc, reason in bad_inputs(tmp_path, video_dir):
            video = kwargs.pop("video")
            with pytest.raises(exc) as e:
                c.score(video, **kwargs)
            assert e.value.message, label
            if reason:
                assert e.value.reason == reason, (label, e.value)
            check_result(c.score(video_dir / "gradient.mp4"))  # still serving


def test_absurd_resolution_is_refused_before_decoding(tiny_bundle, tmp_path):
    # A real 1920x1080 stream against a server whose ceiling is 640x480 pixels.
    big = write_video(tmp_path / "big.mp4", width=1920, height=1080, num_frames=2, fps=2)
    with ServerThread(make_config(tiny_bundle, tmp_path, **{"limits.max_pixels": 640 * 480})) as s:
        with JudgeClient(s.address, retry=NO_RETRY) as c:
            with pytest.raises(InvalidVideo, match="1920") as e:
                c.score(big)
            assert e.value.reason == "resolution_too_large"
            check_result(c.score(write_video(tmp_path / "ok.mp4", width=64, height=48, num_frames=4)))


def test_many_concurrent_requests_are_all_answered_and_batched(tiny_bundle, video_dir, tmp_path):
    """24 concurrent requests over 12 distinct videos (two each: identical videos share one decode and
    encode, so the encoder batches distinct videos); a server whose encoder waits long enough to batch."""
    distinct = [write_video(tmp_path / f"v{i}.mp4", width=96, height=64, num_frames=8, fps=8,
                            pattern=("gradient", "noise", "checker", "bars")[i % 4], seed=i) for i in range(12)]
    paths = distinct * 2

    cfg = make_config(tiny_bundle, tmp_path, **{"encoder.max_wait_ms": 300})
    with ServerThread(cfg) as s:
        async def run():
            async with AsyncJudgeClient(s.address) as c:
                return await asyncio.gather(*(c.score(p) for p in paths))

        results = asyncio.run(run())
        reg = s.server.pipeline.metrics.registry
        sizes = reg.get_sample_value("vidjudge_batch_size_sum", {"stage": "encode"})
        count = reg.get_sample_value("vidjudge_batch_size_count", {"stage": "encode"})
    assert len(results) == 24
    for r in results:
        check_result(r)
    # Identical inputs give the same scores whatever batch they landed in, up to float summation order
    # (batch composition moves them by ~1e-6; rounding to 6 decimals failed on some CPUs).
    for a, b in zip(results[:12], results[12:]):
        assert abs(a.scores["visual_quality"].score - b.scores["visual_quality"].score) <= BATCH_TOL
    assert sizes / count > 1.0, "concurrent requests were never encoded together"


def test_score_stream_answers_every_item_and_survives_bad_ones(server, video_dir):
    good = (video_dir / "gradient.mp4").read_bytes()
    reqs = [(f"ok-{i}", build_request(good)) for i in range(6)]
    reqs.insert(2, ("broken", build_request(b"not a video at all" * 100)))
    reqs.insert(5, ("nodim", build_request(good, dimensions=["nope"])))
    with JudgeClient(server.address) as c:
        answers = {a.id: a for a in c.score_stream(reqs, window=4)}
    assert set(answers) == {rid for rid, _ in reqs}
    assert not answers["broken"].ok and answers["broken"].error.reason == "not_a_video"
    assert isinstance(answers["nodim"].error, InvalidRequest)
    for i in range(6):
        check_result(answers[f"ok-{i}"].result)


def test_deadline_exceeded(server, video_dir):
    with JudgeClient(server.address, retry=NO_RETRY) as c:
        with pytest.raises(DeadlineExceeded):
            c.score(video_dir / "gradient.mp4", timeout=0.001)
        check_result(c.score(video_dir / "gradient.mp4"))


def test_full_server_answers_resource_exhausted_at_once(tiny_bundle, video_dir):
    cfg = make_config(tiny_bundle, video_dir, **{"admission.max_in_flight": 1})
    with ServerThread(cfg) as s:
        async def run():
            async with AsyncJudgeClient(s.address, retry=NO_RETRY) as c:
                return await asyncio.gather(*(c.score(video_dir / "gradient.mp4") for _ in range(6)),
                                            return_exceptions=True)

        out = asyncio.run(run())
        rejected = [r for r in out if isinstance(r, Overloaded)]
        ok = [r for r in out if not isinstance(r, Exception)]
        assert rejected and ok and len(rejected) + len(ok) == 6, out
        assert rejected[0].reason == "too_many_requests"
        # The default client retries with backoff and gets through.
        with JudgeClient(s.address) as c:
            check_result(c.score(video_dir / "gradient.mp4"))
        assert s.server.pipeline.metrics.registry.get_sample_value(
            "vidjudge_requests_total", {"method": "Score", "code": "RESOURCE_EXHAUSTED"}) == len(rejected)
        assert s.server.pipeline.metrics.registry.get_sample_value(
            "vidjudge_rejections_total", {"reason": "too_many_requests"}) == len(rejected)


def test_metrics_endpoint_serves_prometheus_text(tiny_bundle, video_dir):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with ServerThread(make_config(tiny_bundle, video_dir, **{"server.metrics_port": port})) as s:
        with JudgeClient(s.address) as c:
            c.score(video_dir / "gradient.mp4")
        body = urllib.request.urlopen(f"http://127.0.0.1:{s.server.metrics_port}/metrics", timeout=5).read().decode()
    assert 'vidjudge_requests_total{code="OK",method="Score"} 1.0' in body
    assert 'vidjudge_stage_seconds_count{stage="decode"} 1.0' in body
    assert "vidjudge_videos_scored_total" in body
    assert "vidjudge_in_flight 0.0" in body  # read live at scrape time: the request is done
    for stage in ("decode", "encode", "llm"):
        assert f'vidjudge_queue_depth{{stage="{stage}"}} 0.0' in body


def test_drain_finishes_in_flight_work_then_refuses(tiny_bundle, video_dir):
    s = ServerThread(make_config(tiny_bundle, video_dir)).start()
    results = {}

    def call():
        with JudgeClient(s.address, retry=NO_RETRY) as c:
            results["r"] = c.score(video_dir / "noise.mp4")

    t = threading.Thread(target=call)
    t.start()
    while s.server.pipeline.admission.in_flight == 0 and t.is_alive():
        pass
    s.stop(grace=30)
    t.join(30)
    check_result(results["r"])  # admitted before SIGTERM-equivalent: answered
    with JudgeClient(s.address, retry=NO_RETRY, timeout=5) as c:
        with pytest.raises((Unavailable, DeadlineExceeded)):
            c.score(video_dir / "noise.mp4")


UNUSUAL = {
    "10-bit HEVC": dict(codec="libx265", pix_fmt="yuv420p10le", width=128, height=96, num_frames=12),
    "rotated 90": dict(codec="libx264", rotation_deg=90, width=96, height=128, num_frames=12),
    "odd tiny size 17x9": dict(codec="libx264", width=17, height=9, num_frames=12, pix_fmt="yuv444p"),
    "3 frames only": dict(codec="libx264", width=64, height=48, num_frames=3),
    "variable frame rate": dict(codec="libx264", width=64, height=48, num_frames=10,
                                timestamps_s=[0, 0.04, 0.08, 0.5, 0.52, 1.3, 1.31, 1.32, 2.0, 2.9]),
    "with audio": dict(codec="libx264", width=64, height=48, num_frames=12, with_audio=True),
}


@pytest.mark.parametrize("label", list(UNUSUAL))
def test_unusual_videos_get_a_score(server, tmp_path, label):
    kw = UNUSUAL[label]
    path = write_video(tmp_path / ("v.mkv" if "HEVC" in label else "v.mp4"), fps=12, pattern="gradient", **kw)
    with JudgeClient(server.address) as c:
        r = c.score(path)
    check_result(r)
    if "rotated" in label:
        assert r.video["rotation"] in (90, -90, 270)
        assert (r.video["width"], r.video["height"]) == (96, 128)  # upright size


def test_cancelled_call_frees_its_place(server, tmp_path):
    slow = write_video(tmp_path / "slow.mp4", width=640, height=360, num_frames=300, fps=25, gop_size=300,
                       pattern="gradient")
    pipeline = server.server.pipeline
    metric = pipeline.metrics.registry.get_sample_value
    before = metric("vidjudge_requests_total", {"method": "Score", "code": "CANCELLED"}) or 0.0

    async def run():
        async with AsyncJudgeClient(server.address, retry=NO_RETRY) as c:
            task = asyncio.create_task(c.score(slow))
            for _ in range(500):
                if pipeline.admission.in_flight:
                    break
                await asyncio.sleep(0.01)
            assert pipeline.admission.in_flight == 1, "the request was never admitted"
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for _ in range(500):
                if not pipeline.admission.in_flight:
                    break
                await asyncio.sleep(0.01)

    asyncio.run(run())
    assert pipeline.admission.in_flight == 0
    assert metric("vidjudge_requests_total", {"method": "Score", "code": "CANCELLED"}) == before + 1


def test_queue_time_is_separated_from_decode_time(tiny_bundle, video_dir):
    """One decode worker, several requests at once: the later ones wait for it, and say so."""
    with ServerThread(make_config(tiny_bundle, video_dir, **{"decode.workers": 1})) as s:
        async def run():
            async with AsyncJudgeClient(s.address) as c:
                return await asyncio.gather(*(c.score(video_dir / "noise.mp4") for _ in range(4)))

        results = asyncio.run(run())
    for r in results:
        assert 0 < r.timings["decode_s"] < r.timings["total_s"]
    assert max(r.timings["queue_s"] for r in results) > min(r.timings["decode_s"] for r in results) / 2
