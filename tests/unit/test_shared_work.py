"""SharedWork: one piece of work per key while it runs; each waiter has its own deadline and cancellation."""

import asyncio

import pytest

from vidjudge.server.shared import SharedWork, content_key
from vidjudge.server.types import VideoSource


def _timeout(seconds):
    return lambda work, progress: asyncio.wait_for(work, seconds)


def test_concurrent_waiters_share_one_run_and_late_ones_start_anew():
    async def main():
        shared, started = SharedWork(), []

        async def work(progress):
            started.append(1)
            await asyncio.sleep(0.05)
            return len(started)

        first = await asyncio.gather(*(shared.run("k", work, _timeout(5)) for _ in range(5)))
        again = await shared.run("k", work, _timeout(5))  # finished work is forgotten: not a cache
        return first, again, shared.joined, len(shared)

    first, again, joined, left = asyncio.run(main())
    assert first == [1] * 5 and again == 2 and joined == 4 and left == 0


def test_a_waiter_leaving_does_not_stop_the_work_for_the_others():
    async def main():
        shared, finished = SharedWork(), asyncio.Event()

        async def work(progress):
            await asyncio.sleep(0.2)
            finished.set()
            return "done"

        impatient = asyncio.create_task(shared.run("k", work, _timeout(0.02)))  # its own deadline
        patient = asyncio.create_task(shared.run("k", work, _timeout(5)))
        cancelled = asyncio.create_task(shared.run("k", work, _timeout(5)))
        await asyncio.sleep(0.05)
        cancelled.cancel()  # the client went away
        results = await asyncio.gather(impatient, patient, cancelled, return_exceptions=True)
        return results, finished.is_set()

    (impatient, patient, cancelled), finished = asyncio.run(main())
    assert isinstance(impatient, asyncio.TimeoutError) and isinstance(cancelled, asyncio.CancelledError)
    assert patient == "done" and finished


def test_the_work_stops_when_no_waiter_is_left_and_failures_reach_every_waiter():
    async def main():
        shared, state = SharedWork(), {}

        async def slow(progress):
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                state["cancelled"] = True
                raise

        waiters = [asyncio.create_task(shared.run("k", slow, _timeout(0.05))) for _ in range(3)]
        await asyncio.gather(*waiters, return_exceptions=True)
        await asyncio.sleep(0)

        async def broken(progress):
            await asyncio.sleep(0.01)
            raise ValueError("not a video")

        errors = await asyncio.gather(*(shared.run("b", broken, _timeout(5)) for _ in range(3)),
                                      return_exceptions=True)
        return state, errors, len(shared)

    state, errors, left = asyncio.run(main())
    assert state == {"cancelled": True} and left == 0
    assert all(isinstance(e, ValueError) and str(e) == "not a video" for e in errors)


def test_content_keys(tmp_path):
    a, b = b"video bytes" * 10, b"other bytes" * 10
    assert content_key(VideoSource(data=a)) == content_key(VideoSource(data=bytes(a)))
    assert content_key(VideoSource(data=a)) != content_key(VideoSource(data=b))
    p = tmp_path / "v.mp4"
    p.write_bytes(a)
    k = content_key(VideoSource(path=p))
    assert k == content_key(VideoSource(path=p))
    p.write_bytes(b + b"!")  # rewritten: size (and mtime) change the key
    assert content_key(VideoSource(path=p)) != k


def test_every_waiter_sees_where_the_shared_work_is():
    async def main():
        shared, seen = SharedWork(), []

        async def work(progress):
            progress.stage = "decode"
            await asyncio.sleep(0.02)
            progress.stage = "encode"
            await asyncio.sleep(0.2)

        def wait(work, progress):
            async def waiting():
                try:
                    return await asyncio.wait_for(work, 0.1)
                except asyncio.TimeoutError:
                    seen.append(str(progress))
                    raise
            return waiting()

        await asyncio.gather(shared.run("k", work, wait), shared.run("k", work, wait), return_exceptions=True)
        return seen

    assert asyncio.run(main()) == ["encode", "encode"]  # the joiner too, not only the one that started it
