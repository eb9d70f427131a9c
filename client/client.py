"""Synchronous client.

    from vidjudge.client import JudgeClient
    with JudgeClient("127.0.0.1:50051") as c:
        r = c.score("clip.mp4", prompt="a cat surfing", dimensions=["visual_quality", "text_alignment"])
        print(r.scores["visual_quality"].score)

Calls carry a deadline (`timeout`) and retry with backoff on UNAVAILABLE and
RESOURCE_EXHAUSTED; any other failure raises the typed error (vidjudge.errors).
"""

from __future__ import annotations

import threading
import time
from typing import Iterable, Iterator, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vidjudge.client.request import Inputs, VideoInput, build_group_request, build_request, error_from_rpc
from vidjudge.client.retry import Attempts, RetryPolicy
from vidjudge.client.types import GroupItem, ModelInfo, ScoreResult, StreamResult
from vidjudge.errors import Unavailable
from vidjudge.v1 import judge_pb2 as pb
from vidjudge.v1 import judge_pb2_grpc as pb_grpc

DEFAULT_MAX_MESSAGE_MB = 80


def channel_options(max_message_mb: int) -> list[tuple[str, int]]:
    n = max_message_mb * 1024 * 1024
    return [("grpc.max_send_message_length", n), ("grpc.max_receive_message_length", n)]


class JudgeClient:
    def __init__(self, target: str = "127.0.0.1:50051", *, timeout: float | None = 120.0,
                 retry: RetryPolicy = RetryPolicy(), max_message_mb: int = DEFAULT_MAX_MESSAGE_MB):
        self.target = target
        self.timeout = timeout
        self.retry = retry
        self._channel = grpc.insecure_channel(target, options=channel_options(max_message_mb))
        self._stub = pb_grpc.JudgeStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def _call(self, method, request, timeout: float | None):
        attempts = Attempts(self.retry, self.timeout if timeout is None else timeout, self.target)
        while True:
            try:
                return method(request, timeout=attempts.time_left())
            except grpc.RpcError as e:
                time.sleep(attempts.pause_after(e))

    def score(self, video: VideoInput, *, prompt: str = "", dimensions: Sequence[str] = (), model: str = "",
              server_path: bool = False, inputs: Inputs | None = None, timeout: float | None = None) -> ScoreResult:
        """`inputs`: per-dimension inputs, e.g. {"qa": {"question": "Is there a dog?"}}."""
        req = build_request(video, prompt=prompt, dimensions=dimensions, model=model, server_path=server_path,
                            inputs=inputs)
        return ScoreResult.from_pb(self._call(self._stub.Score, req, timeout))

    def score_stream(self, requests: Iterable[tuple[str, pb.ScoreRequest]], *, window: int = 32,
                     timeout: float | None = None) -> Iterator[StreamResult]:
        """Send (id, ScoreRequest) pairs on one stream, at most `window` unanswered; yield answers as they come.

        Items refused with RESOURCE_EXHAUSTED come back as errors (no retry inside a stream): lower
        `window` below the server's admission.max_in_flight to avoid them.
        """
        slots = threading.Semaphore(window)
        stop = threading.Event()

        def send():
            for rid, req in requests:
                while not slots.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                yield pb.ScoreStreamRequest(id=rid, request=req)

        call = self._stub.ScoreStream(send(), timeout=self.timeout if timeout is None else timeout)
        try:
            for resp in call:
                slots.release()
                yield StreamResult.from_pb(resp)
        except grpc.RpcError as e:
            raise error_from_rpc(e) from None
        finally:
            stop.set()
            call.cancel()

    def score_group(self, videos: Sequence[tuple[str, str, VideoInput]], *, prompt: str = "",
                    dimensions: Sequence[str] = (), model: str = "", server_path: bool = False,
                    inputs: Inputs | None = None, timeout: float | None = None) -> list[GroupItem]:
        """Judge several videos of one prompt together: (id, generator, video) triples; one GroupItem each."""
        req = build_group_request(videos, prompt=prompt, dimensions=dimensions, model=model,
                                  server_path=server_path, inputs=inputs)
        resp = self._call(self._stub.ScoreGroup, req, timeout)
        return [GroupItem.from_pb(r) for r in resp.results]

    def list_models(self, timeout: float | None = None) -> list[ModelInfo]:
        resp = self._call(self._stub.ListModels, pb.ListModelsRequest(), timeout)
        return [ModelInfo.from_pb(m) for m in resp.models]

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the server's health check says SERVING."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                r = self._health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise Unavailable(f"{self.target} did not become ready within {timeout}s")
            time.sleep(0.1)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "JudgeClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
