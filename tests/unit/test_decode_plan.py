"""What the decoder decodes: each wanted frame from the keyframe before it, never a frame twice,
nothing past the last wanted frame; output as if every frame were decoded.

Plan logic on hand-made packet indexes (B-frame reordering, open GOPs), then frame
counts on real files: `VideoInfo.frames_decoded` is every frame FFmpeg handed back.
"""

from __future__ import annotations

import av
import numpy as np
import pytest

from vidjudge.export.samples import counter_index, write_video
from vidjudge.server.decode import Resize, SegmentCentres, UniformIndices, decode_video
from vidjudge.server.decode.packets import PacketIndex, _order_frames
from vidjudge.server.decode.plan import make_plan, run_start
from vidjudge.server.decode.sampling import nearest_indices, segment_centres
from vidjudge.server.types import DecodeLimits, DecodeRequest, VideoSource, ViewSpec

LIMITS = DecodeLimits()


def _index(pts: list[int], keys: list[int]) -> PacketIndex:
    """A packet index as the demuxer would give it: packets in decode order with these pts."""
    index = PacketIndex(packets=[None] * len(pts), pts=list(pts), durations=[1] * len(pts), keyframes=list(keys),
                        discard=[False] * len(pts), first_error=None)
    _order_frames(index)
    return index


# Decode order of an x264 GOP with b-pyramid: I0 P4 B2 b1 b3 P8 B6 b5 b7 | I9 ...
BPYRAMID = [0, 4, 2, 1, 3, 8, 6, 5, 7, 9, 13, 11, 10, 12]


def test_presentation_order_comes_from_sorted_pts():
    index = _index(BPYRAMID, [0, 9])
    assert index.num_frames == 14
    assert index.frame_pts.tolist() == list(range(14))
    assert [BPYRAMID[i] for i in index.frame_packet.tolist()] == list(range(14))


def test_runs_start_at_the_keyframe_before_and_end_at_the_wanted_packet():
    index = _index(BPYRAMID, [0, 9])
    # Frame 3 sits in packet 4 of the first GOP; frame 11 in packet 11 of the second.
    plan = make_plan(index, {3, 11})
    assert plan.runs == ((0, 4), (9, 11))
    assert plan.wanted_packets == {4, 11}
    # Frames in one GOP share a run; runs never overlap, so no packet is decoded twice.
    assert make_plan(index, {1, 7}).runs == ((0, 8),)
    assert make_plan(index, {12, 2}).runs == ((0, 2), (9, 13))
    # Without seeking: every packet up to the last wanted one.
    assert make_plan(index, {3, 11}, seek=False).runs == ((0, 11),)


def test_touching_runs_merge_instead_of_jumping():
    index = _index([0, 1, 2, 3, 4, 5], [0, 3])
    assert make_plan(index, {2, 3}).runs == ((0, 3),)
    assert make_plan(index, {1, 4}).runs == ((0, 1), (3, 4))


def test_open_gop_leading_frames_start_from_the_previous_keyframe():
    # An open GOP (HEVC CRA): frames 7 and 8 are stored after the keyframe shown at 9 and refer
    # to frames before it; starting at that keyframe would not decode them.
    pts = [0, 3, 1, 2, 6, 4, 5, 9, 7, 8, 12, 10, 11]
    index = _index(pts, [0, 7])
    assert run_start(index, 8, 7) == 0  # frame 7 (packet 8) needs the first GOP decoded
    assert run_start(index, 10, 12) == 7
    assert make_plan(index, {8}).runs == ((0, 9),)


def test_no_keyframe_before_starts_at_the_first_packet():
    index = _index([5, 6, 7, 8, 9], [3])
    assert make_plan(index, {1, 4}).runs == ((0, 1), (3, 4))


def test_duplicate_or_missing_pts_leave_the_order_unknown():
    assert _index([0, 1, 1, 2], [0]).frame_pts is None
    index = PacketIndex(packets=[None] * 3, pts=[0, None, 2], durations=[1] * 3, keyframes=[0],
                        discard=[False] * 3, first_error=None)
    _order_frames(index)
    assert index.frame_pts is None and index.num_frames == 3


# ----------------------------------------------------------------------------- real files


def _packets(path) -> tuple[list[int], list[bool]]:
    with av.open(str(path)) as c:
        got = [(p.pts, p.is_keyframe) for p in c.demux(video=0) if p.size]
    return [p for p, _ in got], [k for _, k in got]


def _independent_cost(path, wanted: set[int]) -> tuple[int, int]:
    """(packets a decoder needs, packets up to the last wanted one), computed here from the demuxer:
    each wanted frame needs the packets from the last keyframe at or before it (in file order, shown
    no later than it) to its own packet."""
    pts, keys = _packets(path)
    order = sorted(pts)
    needed: set[int] = set()
    last = 0
    for k in wanted:
        at = pts.index(order[k])
        start = max((i for i in range(at + 1) if keys[i] and pts[i] <= order[k]), default=0)
        needed.update(range(start, at + 1))
        last = max(last, at + 1)
    return len(needed), last


def _request(n=8) -> DecodeRequest:
    return DecodeRequest(views=(ViewSpec("v", SegmentCentres(n), Resize(16, 80)),))


@pytest.fixture(scope="module")
def long_gop(tmp_path_factory):
    """x264 with B-frames (b-pyramid) and a single keyframe for 240 frames: nothing to jump to."""
    return write_video(tmp_path_factory.mktemp("plan") / "long_gop.mp4", width=160, height=32, num_frames=240,
                       fps=24, pattern="counter", options={"preset": "medium", "x264-params": "keyint=300:scenecut=0"})


@pytest.fixture(scope="module")
def short_gops(tmp_path_factory):
    """x264 with B-frames and a keyframe every 20 frames: the decoder jumps between groups."""
    return write_video(tmp_path_factory.mktemp("plan") / "short_gops.mp4", width=160, height=32, num_frames=240,
                       fps=24, pattern="counter", options={"preset": "medium", "x264-params": "keyint=20:scenecut=0"})


def _wanted(path, n=8) -> set[int]:
    pts, _ = _packets(path)
    return set(nearest_indices(np.arange(len(pts)) / 24, segment_centres(len(pts) / 24, n)).tolist())


@pytest.mark.parametrize("clip", ["long_gop", "short_gops"])
def test_every_needed_frame_is_decoded_once_and_nothing_after_the_last(request, clip):
    path = request.getfixturevalue(clip)
    assert sum(_packets(path)[1]) == (1 if clip == "long_gop" else 12)
    wanted = _wanted(path)
    needed, up_to_last = _independent_cost(path, wanted)
    out = decode_video(VideoSource(path=path), _request(), LIMITS, "none", skip_nonref=False)
    assert [counter_index(f) for f in out.views["v"].frames] == sorted(wanted)
    assert out.info.frames_decoded == needed
    assert out.info.frames_decoded <= up_to_last <= 240
    if clip == "short_gops":
        assert needed < up_to_last / 2  # the groups between targets were jumped over


def test_many_targets_in_one_group_decode_it_once(long_gop):
    # 64 targets in a 240-frame single-GOP file: a decoder that seeks back to the keyframe for
    # each target would decode the start of the file over and over.
    out = decode_video(VideoSource(path=long_gop), _request(64), LIMITS, "none", skip_nonref=False)
    _, up_to_last = _independent_cost(long_gop, _wanted(long_gop, 64))
    assert out.info.frames_decoded == up_to_last


def test_frame_numbers_and_times_share_one_pass(short_gops):
    request = DecodeRequest(views=(ViewSpec("t", SegmentCentres(8), Resize(16, 80)),
                                   ViewSpec("i", UniformIndices(8), Resize(16, 80))))
    out = decode_video(VideoSource(path=short_gops), request, LIMITS, "none", skip_nonref=False)
    wanted = set(out.views["t"].indices.tolist()) | set(out.views["i"].indices.tolist())
    needed, _ = _independent_cost(short_gops, wanted)
    assert out.info.frames_decoded == needed


def test_open_gop_leading_frames_of_a_real_hevc_file(tmp_path, caplog):
    # x265 defaults to open GOPs: the second keyframe (a CRA) is stored before frames shown just
    # before it, which refer to the group before. Wanting them must decode from the first keyframe.
    from dataclasses import dataclass

    from vidjudge.server.decode import Native
    from vidjudge.server.types import FrameTargets

    path = write_video(tmp_path / "open_gop.mp4", codec="libx265", width=128, height=72, num_frames=96, fps=24,
                       pattern="checker", options={"preset": "medium",
                                                   "x265-params": "log-level=error:bframes=4:keyint=48"})
    pts, keys = _packets(path)
    order = sorted(pts)
    second = [i for i, k in enumerate(keys) if k][1]
    leading = [order.index(p) for p in pts[second + 1:second + 8] if p < pts[second]]
    assert leading  # the file really has leading frames after its second keyframe
    with av.open(str(path)) as c:
        every = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]

    @dataclass(frozen=True)
    class These:
        frames: tuple[int, ...]

        def targets(self, facts):
            return FrameTargets(indices=self.frames)

    wanted = tuple(sorted(leading)) + (order.index(pts[second]), 90)
    caplog.set_level("INFO", logger="vidjudge.server.decode")
    for skip in (True, False):
        out = decode_video(VideoSource(path=path), DecodeRequest(views=(ViewSpec("v", These(wanted), Native()),)),
                           LIMITS, "none", skip_nonref=skip)
        for k, i in enumerate(wanted):
            np.testing.assert_array_equal(out.views["v"].frames[k], every[i])
        assert out.info.frames_decoded < len(every)
    assert "did not decode" not in caplog.text
