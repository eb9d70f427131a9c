"""Views against a plain reference: decode every frame with PyAV, then pick.

The decoder reads a packet index, decodes only what the targets need and skips
non-reference frames; none of that may change a single output byte. Every test here
compares with the obvious algorithm on the same file: decode all frames in
presentation order, take the nearest by time (segment centres) or the k-th (frame
numbers), convert with PyAV's RGB and resize with PIL bicubic.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np
import pytest
from PIL import Image

from vidjudge.export.samples import counter_index, write_video
from vidjudge.server.decode import Native, Resize, SegmentCentres, UniformIndices, decode_video
from vidjudge.server.decode import frames as frames_module
from vidjudge.server.decode.sampling import nearest_indices, segment_centres, uniform_indices
from vidjudge.server.types import DecodeLimits, DecodeRequest, FrameTargets, VideoSource, ViewSpec

from videos import vfr_video

LIMITS = DecodeLimits()


@pytest.fixture(autouse=True)
def no_recovery(caplog):
    """Healthy files decode as planned: the damaged-file path (decode again from the start) would
    hide a wrong plan behind right frames."""
    caplog.set_level("INFO", logger="vidjudge.server.decode")
    yield
    assert not [r for r in caplog.get_records("call") if "did not decode" in r.getMessage()]


@dataclass
class Reference:
    times: np.ndarray  # seconds from the stream's start, presentation order
    rgb: list[np.ndarray]  # every frame, presentation order
    duration: float


def reference(path) -> Reference:
    """Every frame of the file, decoded in one plain pass (what decord / a naive loader sees)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        tb = s.time_base
        got = [(float(f.pts * tb), f.to_ndarray(format="rgb24")) for f in c.decode(s)]
        start = float(s.start_time * tb) if s.start_time is not None else 0.0
        duration = float(s.duration * tb) if s.duration else (c.duration / av.time_base if c.duration else None)
    return Reference(np.array([t for t, _ in got]) - start, [a for _, a in got], duration)


def bicubic(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.BICUBIC))


def one_view(sampler, transform) -> DecodeRequest:
    return DecodeRequest(views=(ViewSpec("v", sampler, transform),))


# Real files the decoder must treat differently: B-frames with b-pyramid (references among
# the B-frames), several GOPs (jumps), HEVC, VP9, Matroska (no frame count in its header),
# variable frame rate.
FILES = {
    "x264-bframes-mp4": dict(codec="libx264", suffix=".mp4", options={"preset": "medium"}),
    "x264-gop12-mkv": dict(codec="libx264", suffix=".mkv", gop_size=12),
    "hevc-mp4": dict(codec="libx265", suffix=".mp4", options={"preset": "medium", "x265-params": "log-level=error"}),
    "vp9-webm": dict(codec="libvpx-vp9", suffix=".webm", gop_size=20),
    "vp9-live-webm": dict(codec="libvpx-vp9", suffix=".webm", container_options={"live": "1"}),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("views")
    out = {}
    for name, kw in FILES.items():
        kw = dict(kw)
        suffix = kw.pop("suffix")
        out[name] = write_video(d / f"{name}{suffix}", width=96, height=64, num_frames=61, fps=12,
                                pattern="checker", **kw)
    # Variable frame rate: bursts and gaps, so time and frame number disagree.
    times = [0.0, 0.04, 0.08, 0.12, 0.5, 0.52, 1.3, 1.31, 1.32, 2.0, 2.05, 2.9, 3.3, 3.35, 3.4, 3.45, 3.9]
    out["vfr-mkv"] = vfr_video(d / "vfr.mkv", times, codec="libx264", options={"preset": "medium"})
    out["vfr-mp4"] = vfr_video(d / "vfr.mp4", times, codec="libx264", options={"preset": "medium"})
    return out


@pytest.mark.parametrize("name", [*FILES, "vfr-mkv", "vfr-mp4"])
def test_segment_centres_with_resize_match_decode_all_then_pick(files, name):
    path = files[name]
    ref = reference(path)
    for n, (h, w) in [(8, (48, 64)), (3, (64, 96)), (16, (28, 35))]:
        out = decode_video(VideoSource(path=path), one_view(SegmentCentres(n), Resize(h, w)), LIMITS, "none")
        view = out.views["v"]
        duration = ref.duration if ref.duration is not None else out.info.duration_s
        want = nearest_indices(ref.times, segment_centres(duration, n))
        assert view.indices.tolist() == want.tolist()
        np.testing.assert_array_equal(view.timestamps_s, ref.times[want])
        np.testing.assert_array_equal(view.frames, np.stack([bicubic(ref.rgb[i], h, w) for i in want]))


@pytest.mark.parametrize("name", [*FILES, "vfr-mkv", "vfr-mp4"])
def test_frame_numbers_are_presentation_order_like_a_decode_all(files, name):
    path = files[name]
    ref = reference(path)
    out = decode_video(VideoSource(path=path), one_view(UniformIndices(8), Native()), LIMITS, "none")
    view = out.views["v"]
    want = uniform_indices(len(ref.rgb), 8)  # the frame count is the real one, header or not
    assert view.indices.tolist() == list(want)
    np.testing.assert_array_equal(view.timestamps_s, ref.times[list(want)])
    for k, i in enumerate(want):
        np.testing.assert_array_equal(view.frames[k], ref.rgb[i])


def test_frame_count_is_right_where_the_header_has_none(files):
    with av.open(str(files["vp9-live-webm"])) as c:
        assert c.streams.video[0].frames == 0 and c.duration is None
    seen = {}

    @dataclass(frozen=True)
    class Spy:
        def targets(self, facts):
            seen["facts"] = facts
            return FrameTargets(indices=(facts.num_frames - 1,))

    out = decode_video(VideoSource(path=files["vp9-live-webm"]), one_view(Spy(), Native()), LIMITS, "none")
    assert seen["facts"].num_frames == 61
    assert seen["facts"].duration_s == pytest.approx(61 / 12, abs=1e-3)
    assert out.views["v"].indices.tolist() == [60]


def test_raw_stream_numbers_frames_in_output_order(tmp_path):
    # No timestamps at all: frames are numbered as they come out of the decoder.
    path = write_video(tmp_path / "clip.h264", container="h264", width=160, height=32, num_frames=40, fps=8,
                       pattern="counter", options={"preset": "medium"})
    out = decode_video(VideoSource(path=path), one_view(UniformIndices(5), Resize(16, 80)), LIMITS, "none")
    want = list(uniform_indices(40, 5))
    assert [counter_index(f) for f in out.views["v"].frames] == want
    assert out.views["v"].indices.tolist() == want
    np.testing.assert_allclose(out.views["v"].timestamps_s, np.array(want) / 8, atol=1e-9)


def test_frame_numbers_past_the_end_take_the_last_frame(files):
    @dataclass(frozen=True)
    class Past:
        def targets(self, facts):
            return FrameTargets(indices=(0, facts.num_frames + 5))

    out = decode_video(VideoSource(path=files["x264-bframes-mp4"]), one_view(Past(), Resize(16, 16)), LIMITS, "none")
    assert out.views["v"].indices.tolist() == [0, 60]


def test_views_share_frames_decoded_and_converted_once(files, monkeypatch):
    path = files["x264-bframes-mp4"]
    calls = []
    real = frames_module.Converter.__call__

    def counting(self, frame):
        calls.append(frame.pts)
        return real(self, frame)

    monkeypatch.setattr(frames_module.Converter, "__call__", counting)
    request = DecodeRequest(views=(
        ViewSpec("small", SegmentCentres(8), Resize(32, 48)),
        ViewSpec("native", SegmentCentres(8), Native()),
        ViewSpec("numbers", UniformIndices(4), Resize(16, 16)),
    ))
    both = decode_video(VideoSource(path=path), request, LIMITS, "none")
    union = set(both.views["small"].indices.tolist()) | set(both.views["numbers"].indices.tolist())
    assert sorted(calls) == sorted(set(calls)) and len(calls) == len(union)  # one conversion per distinct frame
    # Each view is what it would be alone, and the frames went through the decoder once.
    decoded_alone = 0
    for view in request.views:
        alone = decode_video(VideoSource(path=path), DecodeRequest(views=(view,)), LIMITS, "none")
        np.testing.assert_array_equal(both.views[view.name].frames, alone.views[view.name].frames)
        np.testing.assert_array_equal(both.views[view.name].timestamps_s, alone.views[view.name].timestamps_s)
        decoded_alone = max(decoded_alone, alone.info.frames_decoded)
    assert decoded_alone <= both.info.frames_decoded < 2 * decoded_alone


def test_a_transform_that_depends_on_the_position_sees_each_slot(tmp_path):
    path = write_video(tmp_path / "short.mp4", width=64, height=48, num_frames=3, fps=4, pattern="brightness")

    @dataclass(frozen=True)
    class Stamp:
        def __call__(self, rgb, k):
            return np.full((2, 2), k, np.int64)

    out = decode_video(VideoSource(path=path), one_view(SegmentCentres(6), Stamp()), LIMITS, "none")
    assert out.views["v"].frames[:, 0, 0].tolist() == [0, 1, 2, 3, 4, 5]
    assert len(set(out.views["v"].indices.tolist())) == 3  # repeats of three frames, one output per slot


def test_one_pixel_converter_per_decode(files, monkeypatch):
    # An swscale context costs 2-6 ms to build: one per video, whatever the views and frames.
    made = []
    real = frames_module.VideoReformatter

    def counting():
        made.append(1)
        return real()

    monkeypatch.setattr(frames_module, "VideoReformatter", counting)
    request = DecodeRequest(views=(ViewSpec("a", SegmentCentres(8), Resize(32, 48)),
                                   ViewSpec("b", UniformIndices(16), Native())))
    out = decode_video(VideoSource(path=files["x264-gop12-mkv"]), request, LIMITS, "none")
    assert len(set(out.views["a"].indices.tolist()) | set(out.views["b"].indices.tolist())) > 16
    assert len(made) == 1
