"""A decoder that segfaults, exits or hangs costs one request, never the server or other requests."""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest

from servers import BATCH_TOL, make_config
from videos import misbehaving_decode
from vidjudge.client import NO_RETRY, AsyncJudgeClient, JudgeClient
from vidjudge.errors import InvalidVideo
from vidjudge.server.app import ServerThread, build_pipeline
from vidjudge.server.decode import DecodePool


@pytest.fixture()
def crashy_server(tiny_bundle, video_dir, tmp_path):
    for name in ("crash.mp4", "abort.mp4", "exit.mp4", "hang.mp4"):
        shutil.copy(video_dir / "gradient.mp4", tmp_path / name)
    for i in range(4):
        shutil.copy(video_dir / "noise.mp4", tmp_path / f"ok{i}.mp4")
    cfg = make_config(tiny_bundle, tmp_path, **{"limits.decode_timeout_s": 3.0})
    pool = DecodePool(2, cfg.limits.decode_limits(), hwaccel="none", decode_fn=misbehaving_decode)
    with ServerThread(cfg, build_pipeline(cfg, decode_pool=pool)) as s:
        yield s, tmp_path


def test_crashing_and_hanging_decoders_fail_only_their_request(crashy_server):
    server, d = crashy_server
    names = ["crash.mp4", "ok0.mp4", "abort.mp4", "ok1.mp4", "exit.mp4", "ok2.mp4", "hang.mp4", "ok3.mp4"]

    async def run():
        async with AsyncJudgeClient(server.address, retry=NO_RETRY) as c:
            return await asyncio.gather(*(c.score(str(d / n), server_path=True) for n in names),
                                        return_exceptions=True)

    out = dict(zip(names, asyncio.run(run())))
    for n in ("crash.mp4", "abort.mp4", "exit.mp4"):
        assert isinstance(out[n], InvalidVideo) and out[n].reason == "decoder_crashed", (n, out[n])
    assert isinstance(out["hang.mp4"], InvalidVideo) and out["hang.mp4"].reason == "decode_timeout"
    assert "3" in out["hang.mp4"].message  # names the limit
    for n in ("ok0.mp4", "ok1.mp4", "ok2.mp4", "ok3.mp4"):
        assert not isinstance(out[n], Exception), (n, out[n])
        assert 1.0 <= out[n].scores["visual_quality"].score <= 5.0
    # Workers were replaced (the replacement of the killed one is asynchronous); the server keeps serving.
    pool = server.server.pipeline.decode_pool
    deadline = time.monotonic() + 10
    while pool.restarts < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.restarts >= 4
    with JudgeClient(server.address) as c:
        assert c.score(str(d / "ok0.mp4"), server_path=True).scores["visual_quality"].score == pytest.approx(
            out["ok0.mp4"].scores["visual_quality"].score, abs=BATCH_TOL)


def test_identical_videos_share_one_decode_and_keep_their_own_deadlines(tiny_bundle, video_dir, tmp_path):
    """Eight concurrent requests for one (slow to decode) video: one decode, seven joins; a request whose
    deadline passes leaves without stopping the work for the others; a different video is not shared."""
    from vidjudge.errors import DeadlineExceeded

    slow = tmp_path / "slow_shared.mp4"  # misbehaving_decode sleeps 1 s before decoding "slow" files
    shutil.copy(video_dir / "gradient.mp4", slow)
    other = tmp_path / "slow_other.mp4"
    shutil.copy(video_dir / "noise.mp4", other)
    cfg = make_config(tiny_bundle, tmp_path)
    pool = DecodePool(2, cfg.limits.decode_limits(), hwaccel="none", decode_fn=misbehaving_decode)
    with ServerThread(cfg, build_pipeline(cfg, decode_pool=pool)) as s:
        async def run():
            async with AsyncJudgeClient(s.address, retry=NO_RETRY) as c:
                same = [c.score(str(slow), server_path=True) for _ in range(7)]
                hurried = c.score(str(slow), server_path=True, timeout=0.3)
                return await asyncio.gather(*same, hurried, c.score(str(other), server_path=True),
                                            return_exceptions=True)

        out = asyncio.run(run())
        joins = s.server.pipeline.metrics.registry.get_sample_value("vidjudge_shared_video_joins")
    *same, hurried, different = out
    assert isinstance(hurried, DeadlineExceeded), hurried
    assert all(not isinstance(r, Exception) for r in [*same, different]), out
    scores = [r.scores["visual_quality"].score for r in same]
    assert max(scores) - min(scores) <= BATCH_TOL  # one encode; the LLM batches may still differ
    assert abs(different.scores["visual_quality"].score - scores[0]) > 1e-3
    assert joins == 7  # 8 requests for the same video: one started the work, 7 joined it
