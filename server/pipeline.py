"""The scoring pipeline: admission -> decode -> preprocess -> encode -> LLM -> heads -> result.

Stages are plain synchronous objects (decode pool, batchers, backends); this
module strings them together with asyncio at the top so one event loop can hold
thousands of requests while the work runs in processes and threads. What is
model-specific comes from the bundle's family (views, preprocessing, encoders,
prompt layout) and each dimension's head (which LLM operation, how to read it);
nothing here branches on a model or a head. A request for several dimensions
decodes and encodes once, then fans out to the language model.
Deadlines travel with every item: expired work is dropped before decode and
before each backend; a cancelled call cancels its pending work.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from vidjudge.errors import DeadlineExceeded, InvalidRequest, ModelNotFound, VidjudgeError
from vidjudge.server.admission import Admission
from vidjudge.server.batching import Batcher, BatchWorker
from vidjudge.server.bundle import Bundle
from vidjudge.server.config import Config
from vidjudge.server.edge_admission import holds_slot
from vidjudge.server.media import video_source
from vidjudge.server.judging import Judge, Member
from vidjudge.server.metrics import Metrics
from vidjudge.server.priority import lower_this_thread
from vidjudge.server.shared import Progress, SharedWork, content_key
from vidjudge.server.types import DimensionScore, EncodedVideo, StageTimings, VideoInfo

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
    inputs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # dimension -> {"question": ...}


@dataclass
class ScoreResult:
    model: str
    scores: list[DimensionScore]
    timings: StageTimings
    video: VideoInfo


@dataclass(frozen=True)
class GroupVideoData:
    """One video of a group: the caller's id for it, the model that generated it, its bytes or path."""

    id: str
    generator: str = ""
    data: bytes | None = None
    path: str | None = None


@dataclass(frozen=True)
class GroupRequestData:
    """Several videos generated for one prompt, judged together (references, group heads)."""

    videos: tuple[GroupVideoData, ...]
    model: str = ""
    prompt: str = ""
    dimensions: tuple[str, ...] = ()
    deadline: float | None = None
    inputs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass
class GroupVideoResult:
    id: str
    generator: str
    result: ScoreResult | None = None
    error: Exception | None = None  # a VidjudgeError: this video alone failed (e.g. it is not a video)


def _as_dtype(x: Any, dtype) -> Any:
    """Embeddings in the language model's dtype: NumPy stays NumPy in float32; anything else is a tensor."""
    import torch

    if isinstance(x, np.ndarray):
        if dtype == torch.float32:
            return x
        x = torch.from_numpy(np.ascontiguousarray(x))
    return x.to(dtype)


class ModelRunner:
    """One loaded bundle: a batching encoder per family encoder, and the LLM backend."""

    def __init__(self, bundle: Bundle, encoders: dict, llm, config: Config, metrics: Metrics):
        self.bundle = bundle
        self.family = bundle.family
        self.encoders = encoders  # name -> VisualEncoder
        self.llm = llm
        self.decode_request = self.family.decode_request()
        cap = config.admission.max_in_flight
        enc = config.encoder
        # Room for every admitted video's inputs (an image encoder gets one per frame).
        per_video = {spec.name: spec.items_per_video for spec in self.family.encoders()}
        self.encode_workers = {
            name: BatchWorker(Batcher(enc.max_batch, enc.max_wait_ms / 1000,
                                      capacity=max(cap * per_video.get(name, 1), enc.max_batch),
                                      name=f"encode-{name}" if len(encoders) > 1 else "encode"),
                              lambda items, e=e: self._encode_batch(e, items), metrics.batch_observer("encode"))
            for name, e in encoders.items()
        }

    def encoders_for(self, dims) -> tuple[str, ...]:
        """The encoders a request for `dims` runs, in this runner's order (a stable key for shared work)."""
        wanted = set(self.family.encoders_for(dims))
        return tuple(n for n in self.encode_workers if n in wanted)

    def _encode_batch(self, encoder, items: list[np.ndarray]) -> list[Any]:
        out = encoder.encode(np.stack(items))
        return [_as_dtype(out[i], self.llm.dtype) for i in range(len(items))]

    def close(self) -> None:
        for w in self.encode_workers.values():
            w.close()
        for e in self.encoders.values():
            e.close()
        self.llm.close()


@dataclass
class _Visual:
    """What one decode + encode gives every request for that video."""

    encoded: EncodedVideo
    info: VideoInfo
    timings: StageTimings  # queue, decode, preprocess, encode


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded("the deadline passed before the request finished")
    return left


async def _wait(work, deadline: float | None, stage):
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
        self._cpu = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vidjudge-preprocess",
                                       initializer=lower_this_thread)
        self._shared = SharedWork()
        self._bind_gauges()

    # -- validation (cheap, before admission) ---------------------------------------------
    def resolve(self, req: ScoreRequestData) -> tuple[ModelRunner, list]:
        name = req.model or self.default_model
        runner = self.runners.get(name)
        if runner is None:
            raise ModelNotFound(f"no model named '{name}' (loaded: {', '.join(self.runners)})")
        limit = self.config.limits.max_prompt_chars
        if len(req.prompt) > limit:
            raise InvalidRequest(f"prompt is {len(req.prompt)} characters, over the server's "
                                 f"{limit}-character limit", reason="prompt_too_long")
        dims = runner.bundle.dimensions
        unknown = [d for d in (*req.dimensions, *req.inputs) if d not in dims]
        if unknown:
            raise InvalidRequest(f"unknown dimension(s) {', '.join(dict.fromkeys(unknown))} for model '{name}' "
                                 f"(available: {', '.join(dims)})", reason="unknown_dimension")
        for d, values in req.inputs.items():
            for key, value in values.items():
                if key not in dims[d].inputs:
                    raise InvalidRequest(f"dimension {d} takes no input '{key}' (it takes: "
                                         f"{', '.join(dims[d].inputs) or 'none'})", reason="unexpected_input")
                if len(value) > limit:
                    raise InvalidRequest(f"input {d}.{key} is {len(value)} characters, over the server's "
                                         f"{limit}-character limit", reason="prompt_too_long")

        def missing(d) -> list[str]:
            need = (["prompt"] if d.requires_prompt and not req.prompt else [])
            return need + [i for i in d.inputs if not req.inputs.get(d.name, {}).get(i)]

        if req.dimensions:
            chosen = [dims[d] for d in dict.fromkeys(req.dimensions)]
            lacking = {d.name: missing(d) for d in chosen if missing(d)}
            if lacking:
                if all(m == ["prompt"] for m in lacking.values()):
                    raise InvalidRequest(f"dimension(s) {', '.join(lacking)} need the generation prompt "
                                         "(set ScoreRequest.prompt)", reason="missing_prompt")
                what = "; ".join(f"{n}: {', '.join(m)}" for n, m in lacking.items())
                raise InvalidRequest(f"dimension(s) lack inputs they need ({what}); set ScoreRequest.prompt "
                                     "and ScoreRequest.inputs[dimension]", reason="missing_input")
        else:
            # No dimensions named: every dimension this request can be scored on.
            chosen = [d for d in dims.values() if not missing(d)]
            if not chosen:
                raise InvalidRequest(f"every dimension of model '{name}' needs inputs this request lacks "
                                     "(the generation prompt, or per-dimension inputs)", reason="missing_prompt")
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

    async def _visual_of(self, runner: ModelRunner, dims: list, data: bytes | None, path: str | None,
                         deadline: float | None) -> "_Visual":
        """Decode, preprocess, encode one video: shared with concurrent requests for the same content. The
        caller waits with its own deadline; the work stops only when no request waits for it. Only the
        encoders these dimensions use run (a family may have one per fine-tune), so they are in the key."""
        source = video_source(data, path, self._allowed, self._limits.max_bytes)
        _remaining(deadline)
        big = source.data is not None and len(source.data) > (1 << 20)
        encoders = runner.encoders_for(dims)
        key = (runner.bundle.name, await asyncio.get_running_loop().run_in_executor(self._cpu, content_key, source)
               if big else content_key(source), encoders)
        return await self._shared.run(key, lambda progress: self._visual(runner, source, progress, encoders),
                                      lambda work, progress: _wait(work, deadline, progress))

    async def _score(self, runner: ModelRunner, dims: list, req: ScoreRequestData, t0: float) -> ScoreResult:
        # 1-3. Decode, preprocess, encode.
        visual = await self._visual_of(runner, dims, req.data, req.path, req.deadline)
        timings = dataclasses.replace(visual.timings)

        # 4. One LLM operation per dimension (batched with other requests'), read by its head.
        t = time.perf_counter()
        rid = f"vj-{uuid.uuid4().hex}"
        scores = await _wait(asyncio.gather(*(self._dimension(runner, d, req, visual.encoded, f"{rid}-{d.name}")
                                              for d in dims)), req.deadline, "llm")
        timings.llm_s = time.perf_counter() - t

        timings.total_s = time.perf_counter() - t0
        m = self.metrics.stage_seconds
        for name in ("queue", "decode", "preprocess", "encode", "llm"):
            m.labels(name).observe(getattr(timings, f"{name}_s"))
        self.metrics.request_seconds.observe(timings.total_s)
        return ScoreResult(runner.bundle.name, list(scores), timings, visual.info)

    async def _visual(self, runner: ModelRunner, source, progress: Progress, names: tuple[str, ...]) -> "_Visual":
        """Decode, preprocess and encode one video (no deadline of its own: its waiters have theirs, and it
        is cancelled when none is left, which drops its queued decode and batch items)."""
        timings = StageTimings()
        family = runner.family
        progress.stage = "decode"
        # 1. Decode the family's views in a worker process (queue time = waiting for a free worker).
        t = time.perf_counter()
        decoded = await _wait(self.decode_pool.submit(source, runner.decode_request), None, "decode")
        total_decode = time.perf_counter() - t
        # The worker times the decode itself; the rest was waiting for a free worker.
        timings.decode_s = decoded.decode_s or total_decode
        timings.queue_s = max(0.0, total_decode - timings.decode_s)

        # 2. Preprocess (the family's resize/normalise/patchify) off the event loop.
        progress.stage = "preprocess"
        t = time.perf_counter()
        pre = await asyncio.get_running_loop().run_in_executor(self._cpu, family.preprocess, decoded)
        timings.preprocess_s = time.perf_counter() - t

        # 3. Encode with each encoder the dimensions need, batched with other requests' videos.
        progress.stage = "encode"
        t = time.perf_counter()
        outs = {}
        for name in names:
            # A list: several items for this encoder (e.g. one image per frame), each batched on its own.
            value = pre.inputs[name]
            items = value if isinstance(value, list) else [value]
            got = await asyncio.gather(*(_wait(runner.encode_workers[name].submit(x), None, "encode") for x in items))
            outs[name] = got if isinstance(value, list) else got[0]
        encoded = family.encoded(pre, outs)
        timings.encode_s = time.perf_counter() - t
        return _Visual(encoded, decoded.info, timings)

    async def _dimension(self, runner: ModelRunner, dim, req: ScoreRequestData, encoded: EncodedVideo,
                         request_id: str) -> DimensionScore:
        judge = Judge(runner.family, runner.llm, req.prompt, dict(req.inputs.get(dim.name, {})),
                      [Member("", "", encoded)], deadline=req.deadline, request_id=request_id)
        return await runner.bundle.heads[dim.name].run(judge)

    # -- groups: several videos of one prompt judged together ----------------------------------------------
    async def score_group(self, req: GroupRequestData) -> tuple[str, list[GroupVideoResult]]:
        """Every video of the group on every dimension. Group heads (one call over all videos) and the
        references of per-video heads see the group's videos that decoded; a video that fails to decode
        gets its own error and the others are judged without it."""
        if not req.videos:
            raise InvalidRequest("the group has no videos", reason="empty_request")
        limit = self.config.limits.max_group_videos
        if len(req.videos) > limit:
            raise InvalidRequest(f"the group has {len(req.videos)} videos, over the server's limit of {limit}",
                                 reason="group_too_large")
        ids = [v.id for v in req.videos]
        if len(set(ids)) != len(ids) or not all(ids):
            raise InvalidRequest("every video of a group needs its own non-empty id", reason="invalid_request")
        runner, dims = self.resolve(ScoreRequestData(model=req.model, prompt=req.prompt,
                                                     dimensions=req.dimensions, inputs=req.inputs))
        nbytes = sum(len(v.data) for v in req.videos if v.data is not None)
        t0 = time.perf_counter()
        with self.admission.slot(nbytes, count=len(req.videos)):
            results = await self._score_group(runner, dims, req, t0)
        for r in results:
            if r.result is not None:
                self.metrics.videos.labels(runner.bundle.name).inc()
        return runner.bundle.name, results

    async def _score_group(self, runner: ModelRunner, dims: list, req: GroupRequestData,
                           t0: float) -> list[GroupVideoResult]:
        # 1-3. Every video's decode + encode, side by side; failures stay with their video.
        visuals = await asyncio.gather(*(self._visual_of(runner, dims, v.data, v.path, req.deadline)
                                         for v in req.videos), return_exceptions=True)
        for v in visuals:
            if isinstance(v, BaseException) and not isinstance(v, VidjudgeError):
                raise v  # deadlines, cancellation, bugs: the whole call
        ok = [i for i, v in enumerate(visuals) if not isinstance(v, BaseException)]
        members = [Member(req.videos[i].id, req.videos[i].generator, visuals[i].encoded) for i in ok]

        # 4. Every (dimension, video) judgement at once, so the LLM backend batches them: a group head once
        #    for all videos, a per-video head once per video with the others as its references.
        t = time.perf_counter()
        rid = f"vj-{uuid.uuid4().hex}"
        jobs, where = [], []
        for d in dims:
            head = runner.bundle.heads[d.name]

            def judge(target: int, d=d) -> Judge:
                return Judge(runner.family, runner.llm, req.prompt, dict(req.inputs.get(d.name, {})), members,
                             target=target, deadline=req.deadline, request_id=f"{rid}-{d.name}-{target}")

            if not members:
                continue
            if head.group:
                jobs.append(head.run_group(judge(0)))
                where.append((d.name, None))
            else:
                for t_ in range(len(members)):
                    jobs.append(head.run(judge(t_)))
                    where.append((d.name, t_))
        outs = await _wait(asyncio.gather(*jobs), req.deadline, "llm")
        llm_s = time.perf_counter() - t
        per_video: dict[int, dict[str, DimensionScore]] = {t_: {} for t_ in range(len(members))}
        for (name, target), out in zip(where, outs):
            if target is None:
                for t_, score in enumerate(out):
                    per_video[t_][name] = score
            else:
                per_video[target][name] = out

        results = []
        for i, v in enumerate(req.videos):
            if i not in ok:
                results.append(GroupVideoResult(v.id, v.generator, error=visuals[i]))
                continue
            t_ = ok.index(i)
            timings = dataclasses.replace(visuals[i].timings, llm_s=llm_s, total_s=time.perf_counter() - t0)
            scores = [per_video[t_][d.name] for d in dims]
            results.append(GroupVideoResult(v.id, v.generator, ScoreResult(runner.bundle.name, scores, timings,
                                                                           visuals[i].info)))
        return results

    def _bind_gauges(self) -> None:
        """Gauges read the live values when scraped: exact, and nothing to keep in sync by hand."""
        m, runners = self.metrics, list(self.runners.values())
        m.in_flight.set_function(lambda: self.admission.in_flight)
        m.shared_joins.set_function(lambda: self._shared.joined)
        m.decoder_restarts.set_function(lambda: getattr(self.decode_pool, "restarts", 0))
        m.queue_depth.labels("decode").set_function(lambda: getattr(self.decode_pool, "pending", 0))
        m.queue_depth.labels("encode").set_function(
            lambda: sum(w.depth() for r in runners for w in r.encode_workers.values()))
        m.queue_depth.labels("llm").set_function(lambda: sum(r.llm.queue_depth() for r in runners))
        for name, r in self.runners.items():
            stats = r.llm.stats  # vLLM's engine counters; None for the transformers backend
            if stats is not None:
                for key, gauge in m.engine.items():
                    gauge.labels(name).set_function(lambda stats=stats, key=key: getattr(stats, key))

    def close(self) -> None:
        for r in self.runners.values():
            r.close()
        self.decode_pool.close()
        self._cpu.shutdown(wait=False)
