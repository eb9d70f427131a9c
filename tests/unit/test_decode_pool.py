"""DecodePool: real worker processes that really crash, hang and fail.

`videos.misbehaving_decode` picks its misbehaviour from the file name (crash ->
segfault, abort -> SIGABRT, exit -> os._exit(3), hang, slow, invalid, typeerror).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import time
from concurrent.futures import wait

import numpy as np
import pytest

from vidjudge.errors import InvalidVideo, Unavailable
from vidjudge.export.samples import write_video
from vidjudge.server.decode import DecodePool, Resize, SegmentCentres, decode_video
from vidjudge.server.types import DecodeLimits, DecodeRequest, VideoSource, ViewSpec

from videos import misbehaving_decode, random_bytes

SPEC = DecodeRequest(views=(ViewSpec("frames", SegmentCentres(4), Resize(32, 32)),))
LIMITS = DecodeLimits(timeout_s=30.0)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """ok.mp4 plus copies named after each misbehaviour, made on demand."""
    d = tmp_path_factory.mktemp("pool")
    ok = write_video(d / "ok.mp4", width=64, height=48, num_frames=8, pattern="gradient")

    def clip(name: str):
        path = d / name
        if not path.exists():
            shutil.copy(ok, path)
        return VideoSource(path=path)

    clip.dir = d
    return clip


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for(cond, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_results_match_in_process_decoding(clips):
    src = clips("ok.mp4")
    ref = decode_video(src, SPEC, LIMITS, "none")
    with DecodePool(2, LIMITS) as pool:
        futs = [pool.submit(src, SPEC), pool.submit(VideoSource(data=src.path.read_bytes()), SPEC)]
        for f in futs:
            out = f.result(timeout=60)
            np.testing.assert_array_equal(out.views["frames"].frames, ref.views["frames"].frames)
            np.testing.assert_array_equal(out.views["frames"].timestamps_s, ref.views["frames"].timestamps_s)
            assert out.info == ref.info
        assert pool.restarts == 0


def _calls(clips, name: str) -> list[int]:
    """Process ids of the workers that started decoding `name`, in order (tests/videos.py's marker)."""
    marker = clips.dir / f"{name}.called"
    return [int(x) for x in marker.read_text().split()] if marker.exists() else []


def test_crash_fails_only_its_own_task(clips):
    with DecodePool(2, LIMITS, decode_fn=misbehaving_decode) as pool:
        assert _wait_for(lambda: pool.ready == 2)
        # One worker is mid-decode (10 s) while the other one segfaults, is replaced, and the
        # video segfaults its second worker too.
        slow = pool.submit(clips("slow-10s.mp4"), SPEC)
        crash = pool.submit(clips("crash.mp4"), SPEC)
        ok = [pool.submit(clips("ok.mp4"), SPEC) for _ in range(4)]
        with pytest.raises(InvalidVideo, match="SIGSEGV") as e:
            crash.result(timeout=60)
        assert e.value.reason == "decoder_crashed"
        assert "crash.mp4" in e.value.message and "2 times" in e.value.message
        assert not slow.done()  # the crashes happened while the other task was running...
        for f in [slow] + ok:  # ...and that task, and the ones queued behind, succeed
            assert f.result(timeout=60).views["frames"].frames.shape == (4, 32, 32, 3)
        assert pool.restarts == 2
        assert pool.workers == 2
        assert len(_calls(clips, "crash.mp4")) == 2


def test_a_file_that_crashes_every_worker_is_refused_after_exactly_two(clips):
    with DecodePool(1, LIMITS, decode_fn=misbehaving_decode) as pool:
        first = pool.worker_pids[0]
        with pytest.raises(InvalidVideo, match="SIGSEGV.*SIGSEGV") as e:
            pool.submit(clips("crash-twice.mp4"), SPEC).result(timeout=60)
        assert e.value.reason == "decoder_crashed"
        pids = _calls(clips, "crash-twice.mp4")
        assert len(pids) == 2 and len(set(pids)) == 2 and pids[0] == first  # two workers, each died once
        assert not any(_alive(p) for p in pids)
        assert pool.restarts == 2
        # The pool goes on with a third worker.
        assert pool.submit(clips("ok.mp4"), SPEC).result(timeout=60).views["frames"].frames.shape == (4, 32, 32, 3)
        assert pool.restarts == 2


@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_killed_from_outside_does_not_fail_the_video(clips, workers):
    # SIGKILL (the OOM killer, an operator) while a healthy video decodes: it is decoded again.
    name = f"slow-3s-killed-{workers}.mp4"  # 3 s between the worker taking it and decoding it
    with DecodePool(workers, LIMITS, decode_fn=misbehaving_decode) as pool:
        assert _wait_for(lambda: pool.ready == workers)
        fut = pool.submit(clips(name), SPEC)
        assert _wait_for(lambda: len(_calls(clips, name)) == 1)
        victim = _calls(clips, name)[0]
        os.kill(victim, signal.SIGKILL)
        out = fut.result(timeout=60)
        assert out.views["frames"].frames.shape == (4, 32, 32, 3)
        pids = _calls(clips, name)
        assert len(pids) == 2 and pids[1] != victim and not _alive(victim)
        assert pool.restarts == 1
        assert _wait_for(lambda: pool.ready == workers)


def test_pool_keeps_working_after_several_crashes(clips):
    with DecodePool(1, LIMITS, decode_fn=misbehaving_decode) as pool:
        first_pid = pool.worker_pids[0]
        expect = {"crash-3.mp4": "SIGSEGV", "abort.mp4": "SIGABRT", "exit.mp4": "exit code 3"}
        futs = {name: pool.submit(clips(name), SPEC) for name in expect}
        good = [pool.submit(clips("ok.mp4"), SPEC) for _ in range(2)]
        for name, how in expect.items():
            with pytest.raises(InvalidVideo, match=how) as e:
                futs[name].result(timeout=60)
            assert e.value.reason == "decoder_crashed"
        for f in good:
            assert f.result(timeout=60).views["frames"].frames.shape == (4, 32, 32, 3)
        assert pool.restarts == 6  # each file killed two workers
        assert not _alive(first_pid)
        assert pool.busy == 0 and pool.pending == 0


def test_timeout_kills_the_worker_and_replaces_it(clips):
    with DecodePool(1, DecodeLimits(timeout_s=1.0), decode_fn=misbehaving_decode) as pool:
        hang = pool.submit(clips("hang.mp4"), SPEC)
        assert _wait_for(lambda: pool.busy == 1)
        hung_pid = pool.worker_pids[0]
        t0 = time.monotonic()
        with pytest.raises(InvalidVideo, match="1 s limit") as e:
            hang.result(timeout=60)
        assert e.value.reason == "decode_timeout"
        assert time.monotonic() - t0 < 5
        assert _wait_for(lambda: not _alive(hung_pid))
        assert pool.submit(clips("ok.mp4"), SPEC).result(timeout=60).views["frames"].frames.shape == (4, 32, 32, 3)
        assert pool.restarts == 1


def test_worker_exceptions_come_back_with_type_message_and_reason(clips, tmp_path):
    with DecodePool(1, LIMITS, decode_fn=misbehaving_decode) as pool:
        with pytest.raises(InvalidVideo, match="refused on purpose") as e:
            pool.submit(clips("invalid.mp4"), SPEC).result(timeout=60)
        assert e.value.reason == "custom_reason"
        # A real decoder refusal, from the real decode path.
        with pytest.raises(InvalidVideo) as e:
            pool.submit(VideoSource(path=random_bytes(tmp_path / "noise.mp4")), SPEC).result(timeout=60)
        assert e.value.reason == "not_a_video"
        with pytest.raises(InvalidVideo) as e:
            pool.submit(VideoSource(data=b""), SPEC).result(timeout=60)
        assert e.value.reason == "empty_input"
        # A bug: same type, with the worker's traceback attached as a note.
        with pytest.raises(TypeError, match="a bug in the decoder") as e:
            pool.submit(clips("typeerror.mp4"), SPEC).result(timeout=60)
        assert any("misbehaving_decode" in note for note in getattr(e.value, "__notes__", []))
        assert pool.restarts == 0  # exceptions do not cost a worker


def test_cancelled_before_dispatch_is_never_decoded(clips):
    with DecodePool(1, LIMITS, decode_fn=misbehaving_decode) as pool:
        busy = pool.submit(clips("slow-busy.mp4"), SPEC)
        assert _wait_for(lambda: pool.busy == 1)
        skipped = pool.submit(clips("ok-cancelled.mp4"), SPEC)
        assert pool.pending == 1
        assert skipped.cancel()
        after = pool.submit(clips("ok-after.mp4"), SPEC)
        busy.result(timeout=60)
        after.result(timeout=60)
        assert skipped.cancelled()
        assert (clips.dir / "ok-after.mp4.called").exists()
        assert not (clips.dir / "ok-cancelled.mp4.called").exists()
        assert pool.pending == 0 and pool.busy == 0


def test_close_fails_queued_and_running_tasks_and_leaves_no_process(clips):
    pool = DecodePool(2, DecodeLimits(timeout_s=600), decode_fn=misbehaving_decode)
    hung = [pool.submit(clips(f"hang-{i}.mp4"), SPEC) for i in range(2)]
    assert _wait_for(lambda: pool.busy == 2)
    queued = [pool.submit(clips("ok.mp4"), SPEC) for _ in range(3)]
    assert pool.pending == 3
    pids = pool.worker_pids
    t0 = time.monotonic()
    pool.close(timeout=0.5)
    assert time.monotonic() - t0 < 10
    done, not_done = wait(hung + queued, timeout=5)
    assert not not_done
    for f in hung + queued:
        with pytest.raises(Unavailable) as e:
            f.result()
        assert e.value.reason == "shutting_down"
    assert not any(_alive(p) for p in pids)
    assert not [p for p in multiprocessing.active_children() if p.name == "vidjudge-decode"]
    with pytest.raises(Unavailable):
        pool.submit(clips("ok.mp4"), SPEC)
    pool.close()  # idempotent


def test_close_lets_running_tasks_finish_within_the_grace_period(clips):
    pool = DecodePool(1, LIMITS, decode_fn=misbehaving_decode)
    running = pool.submit(clips("slow-close.mp4"), SPEC)
    assert _wait_for(lambda: pool.busy == 1)
    pids = pool.worker_pids
    pool.close(timeout=30)
    assert running.result(timeout=0).views["frames"].frames.shape == (4, 32, 32, 3)
    assert not any(_alive(p) for p in pids)


def test_workers_are_recycled_after_max_tasks(clips):
    with DecodePool(1, LIMITS, max_tasks_per_worker=2) as pool:
        first = pool.worker_pids[0]
        for _ in range(5):
            pool.submit(clips("ok.mp4"), SPEC).result(timeout=60)
        assert pool.recycled == 2
        assert pool.restarts == 0
        assert pool.worker_pids[0] != first and not _alive(first)


def test_pool_gives_up_when_workers_cannot_start(clips, tmp_path, monkeypatch):
    # A decode_fn whose module vanished: every worker dies while unpickling it, before
    # it is ready. The pool first drops hwaccel (NVDEC crashing at start-up looks the
    # same), then declares itself broken instead of restarting workers forever.
    (tmp_path / "vanishing_decoder.py").write_text(
        "from vidjudge.server.decode import decode_video\n\n\n"
        "def decode(source, request, limits, hwaccel):\n"
        "    return decode_video(source, request, limits, hwaccel)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import vanishing_decoder

    (tmp_path / "vanishing_decoder.py").unlink()
    shutil.rmtree(tmp_path / "__pycache__", ignore_errors=True)
    pool = DecodePool(1, LIMITS, hwaccel="auto", decode_fn=vanishing_decoder.decode)
    try:
        fut = pool.submit(clips("ok.mp4"), SPEC)
        with pytest.raises(Unavailable, match="cannot start") as e:
            fut.result(timeout=120)
        assert e.value.reason == "decoder_unavailable"
        assert pool.hwaccel == "none" and pool.broken
        with pytest.raises(Unavailable):
            pool.submit(clips("ok.mp4"), SPEC)
    finally:
        pool.close()
