"""Admission at the gRPC edge: refusals before the request is read, the slot released exactly once.

First against a real grpc.aio server whose Score handler is a stand-in that holds its
slot until told to finish (so the test decides who is in flight), then against the real
vidjudge server with a burst of 10x its admission limit. No timings are asserted.
"""

from __future__ import annotations

import asyncio
import threading

import grpc
import pytest

from servers import make_config
from vidjudge.errors import REASON_METADATA_KEY
from vidjudge.export.samples import write_video
from vidjudge.server.admission import Admission
from vidjudge.server.edge_admission import SCORE_METHOD, EdgeAdmission, holds_slot
from vidjudge.server.metrics import Metrics
from vidjudge.v1 import judge_pb2 as pb


class StandIn:
    """A Score handler that counts parses, records whether the edge held its slot, and waits."""

    def __init__(self):
        self.parsed = 0
        self.held = []
        self.release = asyncio.Event()
        self.started = 0

    def parse(self, raw: bytes) -> pb.ScoreRequest:
        self.parsed += 1
        return pb.ScoreRequest.FromString(raw)

    async def score(self, request, context):
        self.started += 1
        self.held.append(holds_slot())
        await self.release.wait()
        return pb.ScoreResponse(model=request.model)


async def _serve(admission: Admission, stand_in: StandIn, metrics: Metrics):
    server = grpc.aio.server(interceptors=[EdgeAdmission(admission, metrics)])
    handler = grpc.unary_unary_rpc_method_handler(stand_in.score, request_deserializer=stand_in.parse,
                                                  response_serializer=pb.ScoreResponse.SerializeToString)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("vidjudge.v1.Judge", {"Score": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def _request(size: int) -> bytes:
    return pb.ScoreRequest(model="m", video=pb.Video(data=b"\0" * size)).SerializeToString()


async def _call(channel, payload: bytes, timeout=30.0):
    call = channel.unary_unary(SCORE_METHOD, request_serializer=None, response_deserializer=pb.ScoreResponse.FromString)
    try:
        await call(payload, timeout=timeout)
        return "OK", ""
    except grpc.aio.AioRpcError as e:
        reason = dict(e.trailing_metadata() or ()).get(REASON_METADATA_KEY, "")
        return e.code().name, reason


async def _until(cond, timeout=20.0):
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < end, "timed out"
        await asyncio.sleep(0.01)


def test_refused_calls_are_never_parsed_and_every_slot_comes_back():
    async def run():
        admission, stand_in, metrics = Admission(3, 64 * 1024 * 1024), StandIn(), Metrics()
        server, port = await _serve(admission, stand_in, metrics)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            first = [asyncio.create_task(_call(ch, _request(200_000))) for _ in range(3)]
            await _until(lambda: stand_in.started == 3)
            assert admission.in_flight == 3 and admission.bytes >= 3 * 200_000
            # Full: 27 more are refused, none of them parsed.
            refused = await asyncio.gather(*(_call(ch, _request(200_000)) for _ in range(27)))
            assert refused == [("RESOURCE_EXHAUSTED", "too_many_requests")] * 27
            assert stand_in.parsed == 3
            stand_in.release.set()
            assert await asyncio.gather(*first) == [("OK", "")] * 3
        await _until(lambda: admission.in_flight == 0)
        assert admission.bytes == 0 and stand_in.held == [True] * 3
        assert metrics.registry.get_sample_value("vidjudge_rejections_total", {"reason": "too_many_requests"}) == 27
        assert metrics.registry.get_sample_value(
            "vidjudge_requests_total", {"method": "Score", "code": "RESOURCE_EXHAUSTED"}) == 27
        await server.stop(None)

    asyncio.run(run())


def test_slot_comes_back_once_when_the_client_cancels_or_the_deadline_passes():
    async def run():
        admission, stand_in = Admission(2, 64 * 1024 * 1024), StandIn()
        server, port = await _serve(admission, stand_in, Metrics())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            cancelled = asyncio.create_task(_call(ch, _request(1000)))
            expiring = asyncio.create_task(_call(ch, _request(1000), timeout=0.5))
            await _until(lambda: stand_in.started == 2)
            cancelled.cancel()
            assert (await expiring)[0] == "DEADLINE_EXCEEDED"
            await _until(lambda: admission.in_flight == 0)
            # Released once each: a second release would have driven the counts below zero.
            assert admission.in_flight == 0 and admission.bytes == 0
            stand_in.release.set()
            assert await _call(ch, _request(1000)) == ("OK", "")
        await _until(lambda: admission.in_flight == 0)
        assert admission.bytes == 0
        await server.stop(None)

    asyncio.run(run())


def test_payload_over_the_byte_bound_is_refused_after_reading_not_parsing():
    async def run():
        admission, stand_in = Admission(8, 100_000), StandIn()
        server, port = await _serve(admission, stand_in, Metrics())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            assert await _call(ch, _request(150_000)) == ("RESOURCE_EXHAUSTED", "too_many_bytes")
            stand_in.release.set()
            assert await _call(ch, _request(50_000)) == ("OK", "")
        assert stand_in.parsed == 1
        await _until(lambda: admission.in_flight == 0)
        assert admission.bytes == 0
        await server.stop(None)

    asyncio.run(run())


def test_draining_server_refuses_with_unavailable():
    async def run():
        admission, stand_in = Admission(8, 1 << 20), StandIn()
        admission.draining = True
        server, port = await _serve(admission, stand_in, Metrics())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            assert await _call(ch, _request(10)) == ("UNAVAILABLE", "draining")
        assert stand_in.parsed == 0 and admission.in_flight == 0
        await server.stop(None)

    asyncio.run(run())


# ----------------------------------------------------------------------------- the real server


@pytest.fixture(scope="module")
def burst_video(tmp_path_factory):
    path = write_video(tmp_path_factory.mktemp("burst") / "clip.mp4", width=320, height=240, num_frames=10, fps=10,
                       pattern="noise", options={"crf": "30"})
    assert 50_000 < path.stat().st_size < 400_000
    return path


def test_burst_of_ten_times_the_limit_is_answered_ok_or_resource_exhausted(tiny_bundle, video_dir, burst_video):
    from vidjudge.server.app import ServerThread

    limit = 4
    cfg = make_config(tiny_bundle, video_dir, **{"admission.max_in_flight": limit})
    data = burst_video.read_bytes()
    payload = pb.ScoreRequest(video=pb.Video(data=data)).SerializeToString()
    with ServerThread(cfg) as s:
        results: list = []

        def fire():
            async def run():
                async with grpc.aio.insecure_channel(s.address) as ch:
                    return await asyncio.gather(*(_call(ch, payload, timeout=120) for _ in range(10 * limit)))

            results.extend(asyncio.run(run()))

        t = threading.Thread(target=fire)
        t.start()
        t.join(300)
        assert not t.is_alive()
        codes = [c for c, _ in results]
        assert len(codes) == 10 * limit  # every call answered
        assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
        assert "OK" in codes and "RESOURCE_EXHAUSTED" in codes
        admission = s.server.pipeline.admission
        end = threading.Event()
        for _ in range(200):
            if admission.in_flight == 0:
                break
            end.wait(0.05)
        assert admission.in_flight == 0 and admission.bytes == 0
        refused = codes.count("RESOURCE_EXHAUSTED")
        assert s.server.pipeline.metrics.registry.get_sample_value(
            "vidjudge_requests_total", {"method": "Score", "code": "RESOURCE_EXHAUSTED"}) == refused
