"""asyncio client: the same calls as JudgeClient, awaitable.

    async with AsyncJudgeClient("127.0.0.1:50051") as c:
        results = await asyncio.gather(*(c.score(p) for p in paths))
"""

from __future__ import annotations

import asyncio
from typing import Sequence

import grpc

from vidjudge.client.client import DEFAULT_MAX_MESSAGE_MB, channel_options
from vidjudge.client.request import Inputs, VideoInput, build_group_request, build_request
from vidjudge.client.retry import Attempts, RetryPolicy
from vidjudge.client.types import GroupItem, ModelInfo, ScoreResult
from vidjudge.v1 import judge_pb2 as pb
from vidjudge.v1 import judge_pb2_grpc as pb_grpc


class AsyncJudgeClient:
    def __init__(self, target: str = "127.0.0.1:50051", *, timeout: float | None = 120.0,
                 retry: RetryPolicy = RetryPolicy(), max_message_mb: int = DEFAULT_MAX_MESSAGE_MB):
        self.target = target
        self.timeout = timeout
        self.retry = retry
        self._channel = grpc.aio.insecure_channel(target, options=channel_options(max_message_mb))
        self._stub = pb_grpc.JudgeStub(self._channel)

    async def _call(self, method, request, timeout: float | None):
        attempts = Attempts(self.retry, self.timeout if timeout is None else timeout, self.target)
        while True:
            try:
                return await method(request, timeout=attempts.time_left())
            except grpc.aio.AioRpcError as e:
                await asyncio.sleep(attempts.pause_after(e))

    async def score(self, video: VideoInput, *, prompt: str = "", dimensions: Sequence[str] = (), model: str = "",
                    server_path: bool = False, inputs: Inputs | None = None, timeout: float | None = None) -> ScoreResult:
        """`inputs`: per-dimension inputs, e.g. {"qa": {"question": "Is there a dog?"}}."""
        req = build_request(video, prompt=prompt, dimensions=dimensions, model=model, server_path=server_path,
                            inputs=inputs)
        return ScoreResult.from_pb(await self._call(self._stub.Score, req, timeout))

    async def score_request(self, req: pb.ScoreRequest, timeout: float | None = None) -> ScoreResult:
        return ScoreResult.from_pb(await self._call(self._stub.Score, req, timeout))

    async def score_group(self, videos: Sequence[tuple[str, str, VideoInput]], *, prompt: str = "",
                    dimensions: Sequence[str] = (), model: str = "", server_path: bool = False,
                    inputs: Inputs | None = None, timeout: float | None = None) -> list[GroupItem]:
        """Judge several videos of one prompt together: (id, generator, video) triples; one GroupItem each."""
        req = build_group_request(videos, prompt=prompt, dimensions=dimensions, model=model,
                                  server_path=server_path, inputs=inputs)
        resp = await self._call(self._stub.ScoreGroup, req, timeout)
        return [GroupItem.from_pb(r) for r in resp.results]

    async def list_models(self, timeout: float | None = None) -> list[ModelInfo]:
        resp = await self._call(self._stub.ListModels, pb.ListModelsRequest(), timeout)
        return [ModelInfo.from_pb(m) for m in resp.models]

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "AsyncJudgeClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
