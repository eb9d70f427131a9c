"""The gRPC edge: protobuf <-> pipeline types, and errors -> status codes, here only."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc

from vidjudge.errors import KIND_METADATA_KEY, REASON_METADATA_KEY, InternalError, VidjudgeError
from vidjudge.server.pipeline import GroupRequestData, GroupVideoData, Pipeline, ScoreRequestData, ScoreResult
from vidjudge.server.types import DimensionScore
from vidjudge.v1 import judge_pb2 as pb
from vidjudge.v1 import judge_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


def as_error(exc: BaseException) -> VidjudgeError:
    if isinstance(exc, VidjudgeError):
        return exc
    log.exception("unexpected error while scoring", exc_info=exc)
    return InternalError(f"internal error: {type(exc).__name__}: {exc}")


def request_from_pb(msg: pb.ScoreRequest, deadline: float | None) -> ScoreRequestData:
    which = msg.video.WhichOneof("source")
    return ScoreRequestData(
        model=msg.model,
        data=msg.video.data if which == "data" else None,
        path=msg.video.path if which == "path" else None,
        prompt=msg.prompt,
        dimensions=tuple(msg.dimensions),
        deadline=deadline,
        inputs=_inputs_from_pb(msg.inputs),
    )


def _inputs_from_pb(inputs) -> dict[str, dict[str, str]]:
    # Only the fields a request set: an absent question stays absent (the dimension then lacks it).
    return {dim: {f.name: v for f, v in inp.ListFields()} for dim, inp in inputs.items()}


def dimension_to_pb(s: DimensionScore) -> pb.DimensionResult:
    return pb.DimensionResult(
        dimension=s.dimension, score=s.score, scale_min=s.scale_min, scale_max=s.scale_max, head=s.head,
        levels=[pb.LevelProbability(level=w, probability=p) for w, p in zip(s.levels, s.probabilities)],
        answer=s.answer, answer_probability=s.answer_probability, rationale=s.rationale,
        error=error_to_pb(s.error) if s.error is not None else None,
    )


def result_to_pb(r: ScoreResult) -> pb.ScoreResponse:
    t, v = r.timings, r.video
    return pb.ScoreResponse(
        model=r.model,
        results=[dimension_to_pb(s) for s in r.scores],
        timings=pb.StageTimings(queue_s=t.queue_s, decode_s=t.decode_s, preprocess_s=t.preprocess_s,
                                encode_s=t.encode_s, llm_s=t.llm_s, total_s=t.total_s),
        video=pb.VideoInfo(width=v.width, height=v.height, duration_s=v.duration_s, avg_fps=v.avg_fps,
                           codec=v.codec, rotation=v.rotation, frames_decoded=v.frames_decoded, decoder=v.decoder),
    )


def error_to_pb(e: VidjudgeError) -> pb.Error:
    return pb.Error(code=e.code.value[0], reason=e.reason, message=e.message, kind=type(e).__name__)


async def _abort(context: grpc.aio.ServicerContext, err: VidjudgeError) -> None:
    """End the call with the error's status, its reason and its class name in the trailing metadata."""
    await context.abort(err.code, err.message, trailing_metadata=((REASON_METADATA_KEY, err.reason),
                                                                  (KIND_METADATA_KEY, type(err).__name__)))


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    left = context.time_remaining()
    return None if left is None else time.monotonic() + left


class JudgeService(pb_grpc.JudgeServicer):
    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    def _count(self, method: str, code: grpc.StatusCode, err: VidjudgeError | None = None,
               result: ScoreResult | None = None) -> None:
        """Count the outcome and log one line: failures at INFO (with the reason), successes at DEBUG."""
        self.pipeline.metrics.requests.labels(method, code.name).inc()
        if code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE):
            self.pipeline.metrics.rejections.labels(err.reason if err else code.name.lower()).inc()
        if err is not None:
            log.info("%s %s reason=%s: %s", method, code.name, err.reason, err.message)
        elif result is not None and log.isEnabledFor(logging.DEBUG):
            scores = " ".join(f"{s.dimension}={s.score:.3f}" if s.error is None else f"{s.dimension}=({s.error.reason})"
                              for s in result.scores)
            log.debug("%s OK model=%s %s total=%.0fms decode=%.0fms", method, result.model, scores,
                      result.timings.total_s * 1000, result.timings.decode_s * 1000)

    async def _answer(self, method: str, context: grpc.aio.ServicerContext, call, to_pb):
        """Run a unary call's work; count and log its outcome; every failure becomes a typed status."""
        try:
            result = await call()
        except asyncio.CancelledError:
            self._count(method, grpc.StatusCode.CANCELLED)
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a typed status
            err = as_error(exc)
        else:
            self._count(method, grpc.StatusCode.OK, result=result if isinstance(result, ScoreResult) else None)
            return to_pb(result)
        self._count(method, err.code, err)
        await _abort(context, err)

    async def Score(self, request: pb.ScoreRequest, context: grpc.aio.ServicerContext) -> pb.ScoreResponse:
        req = request_from_pb(request, _deadline(context))
        return await self._answer("Score", context, lambda: self.pipeline.score(req), result_to_pb)

    async def ScoreStream(self, request_iterator, context: grpc.aio.ServicerContext):
        out: asyncio.Queue = asyncio.Queue()
        done = object()
        tasks: set[asyncio.Task] = set()

        async def one(item: pb.ScoreStreamRequest) -> None:
            try:
                result = await self.pipeline.score(request_from_pb(item.request, _deadline(context)))
                resp = pb.ScoreStreamResponse(id=item.id, response=result_to_pb(result))
                self._count("ScoreStream", grpc.StatusCode.OK, result=result)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a bad item answers for itself; the stream goes on
                err = as_error(exc)
                self._count("ScoreStream", err.code, err)
                resp = pb.ScoreStreamResponse(id=item.id, error=error_to_pb(err))
            await out.put(resp)

        async def read() -> None:
            async for item in request_iterator:
                task = asyncio.create_task(one(item))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            while tasks:
                await asyncio.gather(*list(tasks), return_exceptions=True)
            await out.put(done)

        reader = asyncio.create_task(read())
        try:
            while True:
                getter = asyncio.create_task(out.get())
                finished, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in finished:
                    getter.cancel()
                    reader.result()  # the request stream broke: re-raise its error
                    continue
                item = getter.result()
                if item is done:
                    return
                yield item
        finally:
            # Client gone or call cancelled: stop reading and drop the work in flight.
            reader.cancel()
            for t in list(tasks):
                t.cancel()

    async def ScoreGroup(self, request: pb.ScoreGroupRequest, context: grpc.aio.ServicerContext) -> pb.ScoreGroupResponse:
        def video(v: pb.GroupVideo) -> GroupVideoData:
            which = v.video.WhichOneof("source")
            return GroupVideoData(v.id, v.generator, v.video.data if which == "data" else None,
                                  v.video.path if which == "path" else None)

        req = GroupRequestData(videos=tuple(video(v) for v in request.videos), model=request.model,
                               prompt=request.prompt, dimensions=tuple(request.dimensions),
                               deadline=_deadline(context), inputs=_inputs_from_pb(request.inputs))

        def to_pb(answer) -> pb.ScoreGroupResponse:
            model, results = answer
            return pb.ScoreGroupResponse(model=model, results=[
                pb.GroupVideoResult(id=r.id, generator=r.generator, response=result_to_pb(r.result))
                if r.result is not None else
                pb.GroupVideoResult(id=r.id, generator=r.generator, error=error_to_pb(as_error(r.error)))
                for r in results])

        return await self._answer("ScoreGroup", context, lambda: self.pipeline.score_group(req), to_pb)

    async def ListModels(self, request: pb.ListModelsRequest, context) -> pb.ListModelsResponse:
        models = []
        for name, runner in self.pipeline.runners.items():
            b = runner.bundle
            views = [pb.FrameSampling(name=v.name, num_frames=v.num_frames, height=v.height, width=v.width,
                                      strategy=v.strategy) for v in b.family.views()]
            encoders = {n: e.name for n, e in runner.encoders.items()}
            models.append(pb.ModelInfo(
                name=name, family=b.manifest.family, is_default=name == self.pipeline.default_model,
                encoder_backend=next(iter(encoders.values())), encoder_backends=encoders,
                scorer_backend=runner.llm.name, sampling=views[0], views=views, adapters=list(b.manifest.adapters),
                bundle_sha256=b.sha256,
                dimensions=[pb.DimensionInfo(
                    name=d.name, description=d.description, head=d.head, scale_min=d.scale_min,
                    scale_max=d.scale_max, levels=list(d.level_names), requires_prompt=d.requires_prompt,
                    inputs=list(d.inputs), adapter=d.adapter or "",
                ) for d in b.dimensions.values()],
            ))
        return pb.ListModelsResponse(models=models)
