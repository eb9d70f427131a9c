"""The scoring pipeline: admission -> decode -> preprocess -> encode -> score -> result.

Stages are plain synchronous objects (decode pool, batchers, backends); this
module strings them together with asyncio at the top so one event loop can hold
thousands of requests while the work runs in processes and threads. A request
for several dimensions decodes and encodes once, then fans out to the scorer.
Deadlines travel with every item: expired work is dropped before decode and
before each backend; a cancelled call cancels its pending futures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidjudge.errors import DeadlineExceeded, InvalidRequest, ModelNotFound
from vidjudge.server.admission import Admission
from vidjudge.server.batching import Batcher, BatchWorker
from vidjudge.server.bundle import Bundle
from vidjudge.server.config import Config
from vidjudge.server.dimensions import Dimension
from vidjudge.server.edge_admission import holds_slot
from vidjudge.server.media import video_source
from vidjudge.server.metrics import Metrics
from vidjudge.server.preprocess import PatchSpec, preprocess
from vidjudge.server.scorer.base import ScoreJob
from vidjudge.server.seam_shim import EncodedVideo, PreprocessedVideo
from vidjudge.server.types import DimensionScore, StageTimings, VideoInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreRequestData:
    """A request as the pipeline sees it (built from protobuf at the gRPC edge)."""

    model: str = ""
    data: bytes | None = None
    path: str | None = None
    prompt: str = ""
    dimensions: tuple[str, ...] = ()
    deadline: float | None = None  # time.monotonic() seconds


@dataclass
class ScoreResult:
    model: str
    scores: list[DimensionScore]
    timings: StageTimings
    video: VideoInfo


class ModelRunner:
    """One loaded bundle: its encoder and scorer, each behind a batching thread."""

    def __init__(self, bundle: Bundle, encoder, scorer, config: Config, metrics: Metrics):
        self.bundle = bundle
        self.encoder = encoder
        self.scorer = scorer
        p = bundle.manifest.preprocess
        self.patch_spec = PatchSpec(patch_size=p.patch_size, temporal_patch_size=p.temporal_patch_size,
                                    merge_size=p.merge_size, mean=tuple(p.mean), std=tuple(p.std))
        cap = config.admission.max_in_flight
        enc, sc = config.encoder, config.scorer
        self.encode_worker = BatchWorker(
            Batcher(enc.max_batch, enc.max_wait_ms / 1000, capacity=max(cap, enc.max_batch), name="encode"),
            self._encode_batch, metrics.batch_observer("encode"))
        # Each request may fan out to every dimension of the bundle.
        sc_cap = max(cap * max(1, len(bundle.dimensions)), sc.max_batch)
        # An engine that batches continuously across requests (vLLM) is awaited directly: no batcher of ours.
        self.continuous = hasattr(scorer, "score_async")
        if self.continuous:
            # The stand-in reports the engine's unfinished requests as the llm queue depth.
            self.score_worker = scorer.engine_queue()
        else:
            self.score_worker = BatchWorker(
                Batcher(sc.max_batch, sc.max_wait_ms / 1000, capacity=sc_cap, name="llm"),
                self.scorer.score, metrics.batch_observer("llm"))

    def _encode_batch(self, items: list[PreprocessedVideo]) -> list[EncodedVideo]:
        pixels = np.stack([it.pixel_values for it in items])
        embeds = self.encoder.encode(pixels)
        return [EncodedVideo(embeds[i], it.grid_thw, it.second_per_grid_t) for i, it in enumerate(items)]

    def close(self) -> None:
        self.encode_worker.close()
        self.score_worker.close()
        self.encoder.close()
        self.scorer.close()


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded("the deadline passed before the request finished")
    return left


async def _wait(work, deadline: float | None, stage: str):
    """Await a stage's work (a concurrent Future or an awaitable) within the deadline; on timeout or
    cancellation the work is cancelled too (a cancelled vLLM scoring task aborts its engine request)."""
    aw = asyncio.wrap_future(work) if isinstance(work, Future) else asyncio.ensure_future(work)
    try:
        return await asyncio.wait_for(aw, timeout=_remaining(deadline))
    except asyncio.TimeoutError:
        raise DeadlineExceeded(f"the deadline passed during the {stage} stage") from None
    finally:
        # Expired before waiting, timed out or cancelled: cancel the work (a wrapped concurrent
        # Future passes the cancel on, freeing its queued item). No-op once it finished.
        if not aw.done():
            aw.cancel()


class Pipeline:
    def __init__(self, config: Config, runners: dict[str, ModelRunner], decode_pool, metrics: Metrics):
        if not runners:
            raise ValueError("no models loaded")
        self.config = config
        self.runners = runners
        self.default_model = next(iter(runners))
        self.decode_pool = decode_pool
        self.metrics = metrics
        self.admission = Admission(config.admission.max_in_flight, config.admission.max_in_flight_mb * 1024 * 1024)
        self._allowed = [Path(p).resolve() for p in config.limits.allowed_dirs]
        self._limits = config.limits.decode_limits()
        # Preprocessing is NumPy work that releases the GIL; keep it off the event loop.
        self._cpu = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vidjudge-preprocess")
        self._bind_gauges()

    # -- validation (cheap, before admission) ---------------------------------------------
    def resolve(self, req: ScoreRequestData) -> tuple[ModelRunner, list[Dimension]]:
        name = req.model or self.default_model
        runner = self.runners.get(name)
        if runner is None:
            raise ModelNotFound(f"no model named '{name}' (loaded: {', '.join(self.runners)})")
        dims = runner.bundle.dimensions
        if req.dimensions:
            unknown = [d for d in req.dimensions if d not in dims]
            if unknown:
                raise InvalidRequest(f"unknown dimension(s) {', '.join(unknown)} for model '{name}' "
                                     f"(available: {', '.join(dims)})", reason="unknown_dimension")
            chosen = [dims[d] for d in dict.fromkeys(req.dimensions)]
            missing = [d.name for d in chosen if d.requires_prompt and not req.prompt]
            if missing:
                raise InvalidRequest(f"dimension(s) {', '.join(missing)} need the generation prompt "
                                     "(set ScoreRequest.prompt)", reason="missing_prompt")
        else:
            # No dimensions named: every dimension this request can be scored on.
            chosen = [d for d in dims.values() if req.prompt or not d.requires_prompt]
            if not chosen:
                raise InvalidRequest(f"every dimension of model '{name}' needs the generation prompt "
                                     "(set ScoreRequest.prompt)", reason="missing_prompt")
        if len(req.prompt) > self.config.limits.max_prompt_chars:
            raise InvalidRequest(f"prompt is {len(req.prompt)} characters, over the server's "
                                 f"{self.config.limits.max_prompt_chars}-character limit", reason="prompt_too_long")
        return runner, chosen

    # -- the request path -------------------------------------------------------------------
    async def score(self, req: ScoreRequestData) -> ScoreResult:
        runner, dims = self.resolve(req)
        nbytes = len(req.data) if req.data is not None else 0
        t0 = time.perf_counter()
        # A Score call the gRPC edge admitted holds its slot already (server/edge_admission.py).
        with contextlib.nullcontext() if holds_slot() else self.admission.slot(nbytes):
            result = await self._score(runner, dims, req, t0)
        self.metrics.videos.labels(result.model).inc()
        return result

    async def _score(self, runner: ModelRunner, dims: list[Dimension], req: ScoreRequestData, t0: float):
        timings = StageTimings()
        loop = asyncio.get_running_loop()
        source = video_source(req.data, req.path, self._allowed, self._limits.max_bytes)

        # 1. Decode in a worker process (queue time = waiting for a free worker).
        _remaining(req.deadline)
        t = time.perf_counter()
        fut = self.decode_pool.submit(source, runner.bundle.frame_spec.decode_request)
        decoded = await _wait(fut, req.deadline, "decode")
        total_decode = time.perf_counter() - t
        # The worker times the decode itself; the rest was waiting for a free worker.
        timings.decode_s = decoded.decode_s or total_decode
        timings.queue_s = max(0.0, total_decode - timings.decode_s)

        # 2. Preprocess (normalise + patchify) off the event loop.
        t = time.perf_counter()
        pre = await loop.run_in_executor(self._cpu, preprocess, decoded, runner.patch_spec)
        timings.preprocess_s = time.perf_counter() - t

        # 3. Encode, batched with other requests' videos.
        t = time.perf_counter()
        encoded = await _wait(runner.encode_worker.submit(pre, req.deadline), req.deadline, "encode")
        timings.encode_s = time.perf_counter() - t

        # 4. Score every dimension, batched with other requests' prompts.
        t = time.perf_counter()
        bundle = runner.bundle
        jobs = [ScoreJob(bundle.prompt_ids(d, req.prompt), encoded, d.level_token_ids) for d in dims]
        if runner.continuous:
            # The engine batches across requests itself.
            rid = f"vj-{uuid.uuid4().hex}"
            logprobs = await _wait(asyncio.gather(
                *(runner.scorer.score_async(j, f"{rid}-{d.name}") for j, d in zip(jobs, dims))), req.deadline, "llm")
        else:
            futs = [runner.score_worker.submit(j, req.deadline) for j in jobs]
            try:
                logprobs = await asyncio.gather(*(_wait(f, req.deadline, "llm") for f in futs))
            except BaseException:
                for f in futs:
                    f.cancel()
                raise
        timings.llm_s = time.perf_counter() - t

        scores = []
        for d, lp in zip(dims, logprobs):
            value, probs = d.score(lp)
            scores.append(DimensionScore(d.name, value, d.scale_min, d.scale_max, levels=list(d.levels),
                                         probabilities=[float(p) for p in probs]))
        timings.total_s = time.perf_counter() - t0
        m = self.metrics.stage_seconds
        for stage in ("queue", "decode", "preprocess", "encode", "llm"):
            m.labels(stage).observe(getattr(timings, f"{stage}_s"))
        self.metrics.request_seconds.observe(timings.total_s)
        return ScoreResult(bundle.name, scores, timings, decoded.info)

    def _bind_gauges(self) -> None:
        """Gauges read the live values when scraped: exact, and nothing to keep in sync by hand."""
        m, runners = self.metrics, list(self.runners.values())
        m.in_flight.set_function(lambda: self.admission.in_flight)
        m.decoder_restarts.set_function(lambda: getattr(self.decode_pool, "restarts", 0))
        m.queue_depth.labels("decode").set_function(lambda: getattr(self.decode_pool, "pending", 0))
        m.queue_depth.labels("encode").set_function(lambda: sum(r.encode_worker.depth() for r in runners))
        m.queue_depth.labels("llm").set_function(lambda: sum(r.score_worker.depth() for r in runners))
        for name, r in self.runners.items():
            stats = getattr(r.scorer, "stats", None)  # vLLM's EngineStats
            for key, gauge in m.engine.items():
                if stats is not None:
                    gauge.labels(name).set_function(lambda stats=stats, key=key: getattr(stats, key))

    def close(self) -> None:
        for r in self.runners.values():
            r.close()
        self.decode_pool.close()
        self._cpu.shutdown(wait=False)
