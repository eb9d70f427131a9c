"""decode_video on real files: codecs, containers, timing, rotation, sizes and bad inputs.

Every file is written here with PyAV (vidjudge.export.samples); content is checked,
not just shapes: "brightness" clips encode the frame index as a grey level,
"counter" clips as binary columns, "orientation" clips show which way is up.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np
import pytest
from PIL import Image

from vidjudge.errors import InvalidRequest, InvalidVideo
from vidjudge.export.samples import (
    brightness_level,
    counter_index,
    render_frame,
    write_audio_only,
    write_video,
)
from vidjudge.server.decode import Resize, SegmentCentres, decode_video
from vidjudge.server.decode.pyav_decoder import cuda_unavailable_reason
from vidjudge.server.decode.sampling import nearest_indices, segment_centres
from vidjudge.server.types import DecodeLimits, DecodeRequest, FrameTargets, VideoSource, ViewSpec

from videos import audio_only, huge_dimensions, random_bytes, truncated_copy, vfr_video, zero_bytes

LIMITS = DecodeLimits()


@dataclass(frozen=True)
class FrameSpec:
    """The one view most tests ask for: `num_frames` at segment centres, resized to height x width."""

    num_frames: int
    height: int
    width: int

    @property
    def request(self) -> DecodeRequest:
        return DecodeRequest(views=(ViewSpec("frames", SegmentCentres(self.num_frames),
                                             Resize(self.height, self.width)),))


@dataclass
class OneView:
    frames: np.ndarray
    timestamps_s: np.ndarray
    indices: np.ndarray | None
    info: object


SPEC = FrameSpec(num_frames=8, height=48, width=64)


def _has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
        return True
    except Exception:  # noqa: BLE001
        return False


AV1_ENCODER = next((c for c in ("libsvtav1", "libaom-av1", "librav1e") if _has_encoder(c)), None)


def _decode(path, spec=SPEC, limits=LIMITS, **kw):
    return _one(decode_video(VideoSource(path=path), spec.request, limits, **kw))


def _one(out) -> OneView:
    v = out.views["frames"]
    return OneView(v.frames, v.timestamps_s, v.indices, out.info)


def _expected_indices(frame_times, duration, n):
    return nearest_indices(frame_times, segment_centres(duration, n))


# ----------------------------------------------------------------------------- codecs and containers

CODEC_CASES = [
    # id, codec, suffix, pix_fmt, codec name reported
    ("h264-mp4", "libx264", ".mp4", "yuv420p", "h264"),
    ("h264-mov", "libx264", ".mov", "yuv420p", "h264"),
    ("h264-mkv", "libx264", ".mkv", "yuv420p", "h264"),
    ("hevc-mp4", "libx265", ".mp4", "yuv420p", "hevc"),
    ("hevc10-mkv", "libx265", ".mkv", "yuv420p10le", "hevc"),
    ("vp9-webm", "libvpx-vp9", ".webm", "yuv420p", "vp9"),
    ("av1-mkv", AV1_ENCODER, ".mkv", "yuv420p", "av1"),
    ("av1-10bit-mp4", AV1_ENCODER, ".mp4", "yuv420p10le", "av1"),
    ("mpeg4-mov", "mpeg4", ".mov", "yuv420p", "mpeg4"),
    ("mpeg4-mkv", "mpeg4", ".mkv", "yuv420p", "mpeg4"),
]


@pytest.mark.parametrize("codec,suffix,pix_fmt,codec_name", [c[1:] for c in CODEC_CASES],
                         ids=[c[0] for c in CODEC_CASES])
def test_codecs_and_containers_sample_by_time(tmp_path, codec, suffix, pix_fmt, codec_name):
    if codec is None:
        pytest.skip("this PyAV build has no AV1 encoder (libsvtav1, libaom-av1, librav1e)")
    n_frames, fps = 24, 8
    path = write_video(tmp_path / f"clip{suffix}", codec=codec, pix_fmt=pix_fmt, width=96, height=64,
                       num_frames=n_frames, fps=fps, pattern="brightness")
    out = _decode(path)

    assert out.frames.shape == (8, 48, 64, 3) and out.frames.dtype == np.uint8
    assert out.timestamps_s.shape == (8,) and out.timestamps_s.dtype == np.float64
    info = out.info
    assert (info.width, info.height, info.codec, info.rotation) == (96, 64, codec_name, 0)
    assert info.duration_s == pytest.approx(3.0, abs=0.05)
    assert info.avg_fps == pytest.approx(8.0, abs=0.1)
    assert info.decoder in ("software", "nvdec")
    assert 8 <= info.frames_decoded <= n_frames

    # The frame nearest each segment centre, by time...
    times = np.arange(n_frames) / fps
    want = _expected_indices(times, 3.0, 8)
    np.testing.assert_allclose(out.timestamps_s, times[want], atol=1e-6)
    # ...and its content is that frame: brightness rises with time as encoded.
    means = out.frames.reshape(8, -1).mean(axis=1)
    levels = np.array([brightness_level(i, n_frames) for i in want])
    assert np.abs(means - levels).max() < 4, (means, levels)
    assert np.all(np.diff(means) > 0)


def test_inline_bytes_decode_like_the_file(tmp_path):
    path = write_video(tmp_path / "clip.webm", codec="libvpx-vp9", width=64, height=48, num_frames=12,
                       pattern="gradient", with_audio=True)
    from_path = _decode(path)
    from_bytes = _one(decode_video(VideoSource(data=path.read_bytes()), SPEC.request, LIMITS))
    np.testing.assert_array_equal(from_path.frames, from_bytes.frames)
    np.testing.assert_array_equal(from_path.timestamps_s, from_bytes.timestamps_s)


def test_output_matches_pyav_rgb_and_pil_bicubic_resize(tmp_path):
    path = write_video(tmp_path / "clip.mp4", width=80, height=60, num_frames=8, pattern="gradient")
    with av.open(str(path)) as c:
        direct = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    # Same size as the source: no resize, bit-identical to PyAV's RGB.
    same = _decode(path, FrameSpec(8, 60, 80))
    for k in range(8):
        np.testing.assert_array_equal(same.frames[k], direct[k])
    # Resized: bit-identical to PIL bicubic (what Hugging Face's Qwen image processor uses).
    small = _decode(path, FrameSpec(8, 28, 35))
    for k in range(8):
        ref = np.asarray(Image.fromarray(direct[k]).resize((35, 28), Image.BICUBIC))
        np.testing.assert_array_equal(small.frames[k], ref)


def test_hwaccel_modes_agree_and_fall_back_to_software(tmp_path):
    path = write_video(tmp_path / "clip.mp4", width=64, height=48, num_frames=8, pattern="gradient")
    soft = _decode(path, hwaccel="none")
    assert soft.info.decoder == "software"
    auto = _decode(path, hwaccel="auto")
    cuda = _decode(path, hwaccel="cuda")
    if cuda_unavailable_reason() is not None:  # no usable GPU here: software, tried once per process
        assert auto.info.decoder == cuda.info.decoder == "software"
        np.testing.assert_array_equal(auto.frames, soft.frames)
    with pytest.raises(ValueError):
        _decode(path, hwaccel="vulkan")


# ----------------------------------------------------------------------------- timing


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_variable_frame_rate_samples_by_presentation_time(tmp_path, suffix):
    # Bursts and gaps: by frame index the middle samples would fall in the first burst.
    times = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 1.9, 2.0, 3.1, 3.5, 3.55, 3.6, 3.65, 3.7]
    path = vfr_video(tmp_path / f"vfr{suffix}", times)
    out = _decode(path, FrameSpec(8, 16, 80))
    assert times[-1] <= out.info.duration_s <= times[-1] + 1.0
    want = _expected_indices(times, out.info.duration_s, 8)
    assert [counter_index(f) for f in out.frames] == want.tolist()
    np.testing.assert_allclose(out.timestamps_s, np.array(times)[want], atol=1e-3)
    by_index = np.floor((np.arange(8) + 0.5) * len(times) / 8).astype(int)
    assert want.tolist() != by_index.tolist()


def test_fewer_frames_than_asked_repeats_nearest(tmp_path):
    path = write_video(tmp_path / "short.mp4", width=160, height=32, num_frames=3, fps=4, pattern="counter")
    out = _decode(path, FrameSpec(8, 16, 80))
    assert out.frames.shape[0] == 8
    got = [counter_index(f) for f in out.frames]
    assert got == _expected_indices(np.arange(3) / 4, 0.75, 8).tolist()
    assert sorted(set(got)) == [0, 1, 2]
    assert out.info.frames_decoded == 3


def test_single_frame_video(tmp_path):
    path = write_video(tmp_path / "one.mkv", width=64, height=48, num_frames=1, pattern="brightness")
    out = _decode(path)
    assert out.frames.shape == (8, 48, 64, 3)
    assert np.all(out.timestamps_s == 0.0)
    assert np.all(out.frames == out.frames[0])


@pytest.mark.parametrize("suffix,codec", [(".mp4", "libx264"), (".mkv", "libx265"), (".webm", "libvpx-vp9")])
def test_seeking_gives_the_same_frames_as_decoding_through(tmp_path, suffix, codec):
    n, fps = 400, 20  # 20 s, a keyframe every 0.5 s
    path = write_video(tmp_path / f"long{suffix}", codec=codec, width=160, height=32, num_frames=n, fps=fps,
                       gop_size=10, pattern="counter")
    spec = FrameSpec(8, 16, 80)
    seek = _decode(path, spec)
    through = _decode(path, spec, seek=False, skip_nonref=False)
    np.testing.assert_array_equal(seek.frames, through.frames)
    np.testing.assert_array_equal(seek.timestamps_s, through.timestamps_s)
    want = _expected_indices(np.arange(n) / fps, n / fps, 8)
    assert [counter_index(f) for f in seek.frames] == want.tolist()
    # Seeking skips most of the file; decoding through decodes every packet up to the last target's.
    assert seek.info.frames_decoded < through.info.frames_decoded / 3
    assert through.info.frames_decoded == _packets_through(path, want[-1])


def _packets_through(path, frame: int) -> int:
    """Packets in file (decode) order up to the one holding presentation frame `frame`."""
    with av.open(str(path)) as c:
        pts = [p.pts for p in c.demux(video=0) if p.size]
    return pts.index(sorted(pts)[frame]) + 1


@pytest.mark.parametrize("kind", ["live-webm", "raw-h264", "raw-hevc"])
def test_duration_missing_from_header_comes_from_packets(tmp_path, kind):
    if kind == "live-webm":  # what browsers' MediaRecorder writes: no duration, no cues
        path = write_video(tmp_path / "live.webm", codec="libvpx-vp9", width=160, height=32, num_frames=24,
                           fps=8, pattern="counter", container_options={"live": "1"})
    elif kind == "raw-h264":  # an elementary stream: no container, no timestamps
        path = write_video(tmp_path / "clip.h264", container="h264", width=160, height=32, num_frames=24, fps=8,
                           pattern="counter")
    else:
        path = write_video(tmp_path / "clip.hevc", codec="libx265", container="hevc", width=160, height=32,
                           num_frames=24, fps=8, pattern="counter")
    with av.open(str(path)) as c:
        assert c.duration is None and c.streams.video[0].duration is None
    out = _decode(path, FrameSpec(8, 16, 80))
    assert out.info.duration_s == pytest.approx(3.0, abs=0.01)
    want = _expected_indices(np.arange(24) / 8, 3.0, 8)
    assert [counter_index(f) for f in out.frames] == want.tolist()
    np.testing.assert_allclose(out.timestamps_s, want / 8, atol=1e-3)


@pytest.mark.parametrize("container,codec", [("h264", "libx264"), ("hevc", "libx265"), ("m4v", "mpeg4")])
def test_long_raw_stream_without_timestamps_is_not_seeked_blindly(tmp_path, container, codec):
    # Raw elementary streams carry no timestamps: frame times are counted, which a
    # seek would break. The first target is far from the start (a seek candidate).
    path = write_video(tmp_path / f"long.{container}", container=container, codec=codec, width=160, height=32,
                       num_frames=100, fps=8, gop_size=8, pattern="counter")
    out = _decode(path, FrameSpec(3, 16, 80))
    assert out.info.duration_s == pytest.approx(12.5, abs=0.01)
    assert [counter_index(f) for f in out.frames] == [17, 50, 83]
    np.testing.assert_allclose(out.timestamps_s, np.array([17, 50, 83]) / 8, atol=1e-3)


# ----------------------------------------------------------------------------- rotation, sizes, bit depth


def _is_upright(img: np.ndarray) -> bool:
    """The orientation pattern: red band on top, blue below, white square top-left."""
    h, w = img.shape[:2]
    top, bottom = img[: h // 6].astype(float), img[h // 2:].astype(float)
    top_red = top[..., 0].mean() > 150 and top[..., 2].mean() < 100
    bottom_blue = bottom[..., 2].mean() > 150 and bottom[..., 0].mean() < 60
    white_tl = img[: max(1, h // 12), : max(1, w // 12)].mean() > 200
    return bool(top_red and bottom_blue and white_tl)


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_rotation_metadata_is_applied(tmp_path, rotation, suffix):
    path = write_video(tmp_path / f"rot{rotation}{suffix}", width=64, height=48, num_frames=4,
                       pattern="orientation", rotation_deg=rotation)
    with av.open(str(path)) as c:
        stored = next(c.decode(video=0))
        assert (stored.width, stored.height) == ((48, 64) if rotation in (90, 270) else (64, 48))
        assert _is_upright(stored.to_ndarray(format="rgb24")) == (rotation == 0)  # control
    out = _decode(path, FrameSpec(4, 48, 64))
    assert out.info.rotation == rotation
    assert (out.info.width, out.info.height) == (64, 48)  # upright (displayed) size
    for frame in out.frames:
        assert _is_upright(frame)


@pytest.mark.parametrize("codec,suffix,w,h,pix_fmt", [
    ("mpeg4", ".mkv", 17, 9, "yuv420p"),
    ("libvpx-vp9", ".webm", 17, 9, "yuv420p"),
    ("libx264", ".mp4", 17, 9, "yuv444p"),
    ("libx264", ".mkv", 2, 2, "yuv444p"),
])
@pytest.mark.parametrize("spec", [FrameSpec(4, 9, 17), FrameSpec(3, 2, 2), FrameSpec(2, 31, 7)],
                         ids=["17x9", "2x2", "7x31"])
def test_odd_and_tiny_sizes(tmp_path, codec, suffix, w, h, pix_fmt, spec):
    path = write_video(tmp_path / f"tiny{suffix}", codec=codec, width=w, height=h, pix_fmt=pix_fmt,
                       num_frames=6, pattern="brightness")
    out = _decode(path, spec)
    assert out.frames.shape == (spec.num_frames, spec.height, spec.width, 3)
    assert (out.info.width, out.info.height) == (w, h)
    means = out.frames.reshape(spec.num_frames, -1).mean(axis=1)
    assert np.all(np.diff(means) >= 0) and means[-1] > means[0]


def test_ten_bit_keeps_range_and_colour(tmp_path):
    path = write_video(tmp_path / "hdr.mkv", codec="libx265", pix_fmt="yuv420p10le", width=64, height=48,
                       num_frames=4, pattern="orientation")
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
    out = _decode(path, FrameSpec(2, 48, 64))
    assert all(_is_upright(f) for f in out.frames)
    ref = render_frame("orientation", 64, 48, 0, 4)
    assert np.abs(out.frames[0].astype(int) - ref).mean() < 6


# ----------------------------------------------------------------------------- bad inputs


def test_empty_input(tmp_path):
    with pytest.raises(InvalidVideo) as e:
        decode_video(VideoSource(data=b""), SPEC.request, LIMITS)
    assert e.value.reason == "empty_input"
    with pytest.raises(InvalidVideo) as e:
        _decode(zero_bytes(tmp_path / "empty.mp4"))
    assert e.value.reason == "empty_input"


def test_too_large(tmp_path):
    path = write_video(tmp_path / "clip.mp4", width=64, height=48, num_frames=8)
    with pytest.raises(InvalidVideo, match="byte limit") as e:
        _decode(path, limits=DecodeLimits(max_bytes=path.stat().st_size - 1))
    assert e.value.reason == "too_large"


def test_missing_file(tmp_path):
    with pytest.raises(InvalidRequest) as e:
        _decode(tmp_path / "nope.mp4")
    assert e.value.reason == "file_not_found"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_bytes_are_not_a_video(tmp_path, seed):
    with pytest.raises(InvalidVideo) as e:
        _decode(random_bytes(tmp_path / "noise.mp4", seed=seed))
    assert e.value.reason == "not_a_video"


def test_text_is_not_a_video():
    with pytest.raises(InvalidVideo) as e:
        decode_video(VideoSource(data=b"<html>not a video</html>\n" * 100), SPEC.request, LIMITS)
    assert e.value.reason == "not_a_video"


def test_truncated_mp4_without_its_index_is_refused(tmp_path):
    # mp4 writes its index (moov) last by default: the first half has no index at all.
    full = write_video(tmp_path / "full.mp4", width=64, height=48, num_frames=24, pattern="noise")
    with pytest.raises(InvalidVideo) as e:
        _decode(truncated_copy(full, tmp_path / "half.mp4"))
    assert e.value.reason == "not_a_video"
    assert "truncated" in e.value.message


def _source_index(frame: np.ndarray, n: int, w: int, h: int) -> int:
    """Which seeded noise frame a decoded frame is (best correlation)."""
    f = frame.astype(float).ravel() - frame.mean()
    scores = []
    for i in range(n):
        ref = render_frame("noise", w, h, i, n).astype(float).ravel()
        scores.append(np.dot(f, ref - ref.mean()))
    return int(np.argmax(scores))


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_truncated_but_readable_start_is_decoded_partially(tmp_path, suffix):
    # Streamable layouts (mp4 with faststart, Matroska) keep the index or clusters up
    # front: a file cut in half still decodes its first half. Targets past the cut
    # take the last decoded frame (the nearest one), so the video is still judged.
    n, fps = 24, 8
    full = write_video(tmp_path / f"full{suffix}", width=64, height=48, num_frames=n, fps=fps, pattern="noise",
                       faststart=(suffix == ".mp4"), options={"crf": "30"})
    half = truncated_copy(full, tmp_path / f"half{suffix}")
    out = _decode(half, FrameSpec(8, 48, 64))
    assert 0 < out.info.frames_decoded < n
    assert out.info.duration_s == pytest.approx(3.0, abs=0.05)  # the header still says 3 s
    got = [_source_index(f, n, 64, 48) for f in out.frames]
    np.testing.assert_allclose(np.array(got) / fps, out.timestamps_s, atol=1e-6)
    assert got == sorted(got)
    last = max(got)
    assert last < n - 1 and got[-1] == last and got.count(last) >= 2  # repeated past the cut


def test_truncated_long_file_seeking_past_the_cut_falls_back_to_the_last_frame(tmp_path):
    # The header promises 10 s; half the data is there. Targets are 1.25 s apart, so
    # the decoder seeks, finds nothing past the cut, and decodes what exists instead.
    n, fps, w, h = 160, 16, 48, 32
    full = write_video(tmp_path / "long.mp4", width=w, height=h, num_frames=n, fps=fps, gop_size=8,
                       pattern="noise", faststart=True, options={"crf": "30"})
    half = truncated_copy(full, tmp_path / "half.mp4")
    out = _decode(half, FrameSpec(8, h, w))
    assert out.info.duration_s == pytest.approx(10.0, abs=0.1)
    got = [_source_index(f, n, w, h) for f in out.frames]
    np.testing.assert_allclose(np.array(got) / fps, out.timestamps_s, atol=1e-6)
    last = max(got)
    assert n // 4 < last < n - 1
    assert got == sorted(got) and got[-1] == last and got.count(last) >= 2
    want_before_cut = _expected_indices(np.arange(n) / fps, n / fps, 8)
    assert [g for g in got if g < last] == [int(x) for x in want_before_cut if x < last]


def test_audio_only_has_no_video_stream(tmp_path):
    for name in ("tone.m4a", "tone.webm", "tone.wav"):
        path = audio_only(tmp_path / name)
        with pytest.raises(InvalidVideo, match="only audio") as e:
            _decode(path)
        assert e.value.reason == "no_video_stream"


def test_resolution_limit_checked_before_decoding(tmp_path):
    path = write_video(tmp_path / "clip.mp4", width=64, height=48, num_frames=4)
    with pytest.raises(InvalidVideo, match=r"64x48 \(3072 pixels\).*3000") as e:
        _decode(path, limits=DecodeLimits(max_pixels=3000))
    assert e.value.reason == "resolution_too_large"
    _decode(path, limits=DecodeLimits(max_pixels=3072))  # exactly at the limit is fine


def test_genuinely_huge_frames_are_refused(tmp_path):
    path = huge_dimensions(tmp_path / "huge.mkv")
    with pytest.raises(InvalidVideo, match="4112x4112") as e:
        _decode(path)
    assert e.value.reason == "resolution_too_large"


def test_too_long(tmp_path):
    path = write_video(tmp_path / "clip.mkv", width=64, height=48, num_frames=24, fps=8)
    with pytest.raises(InvalidVideo, match="3.0 s") as e:
        _decode(path, limits=DecodeLimits(max_duration_s=2.0))
    assert e.value.reason == "too_long"


def test_frame_budget(tmp_path):
    path = write_video(tmp_path / "long.mp4", width=160, height=32, num_frames=200, fps=20, gop_size=10,
                       pattern="counter")
    spec = FrameSpec(8, 16, 80)
    # Seeking needs few frames; decoding everything would need 200.
    ok = _decode(path, spec, limits=DecodeLimits(max_frames=120))
    assert ok.info.frames_decoded <= 120
    with pytest.raises(InvalidVideo) as e:
        _decode(path, spec, limits=DecodeLimits(max_frames=120), seek=False, skip_nonref=False)
    assert e.value.reason == "too_many_frames"
    with pytest.raises(InvalidVideo) as e:
        _decode(path, spec, limits=DecodeLimits(max_frames=5))
    assert e.value.reason == "too_many_frames"


def test_garbage_packets_in_a_valid_container_are_undecodable(tmp_path):
    path = write_video(tmp_path / "clip.mkv", width=64, height=48, num_frames=8, pattern="gradient")
    data = bytearray(path.read_bytes())
    with av.open(str(path)) as c:
        spans = [(p.pos, p.size) for p in c.demux(video=0) if p.size]
    rng = np.random.default_rng(0)
    for pos, size in spans:
        data[pos:pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    with pytest.raises(InvalidVideo, match="h264") as e:
        decode_video(VideoSource(data=bytes(data)), SPEC.request, LIMITS)
    assert e.value.reason == "undecodable"


@dataclass(frozen=True)
class _NoFrames:
    def targets(self, facts):
        return FrameTargets(indices=())


def test_bad_views_are_refused(tmp_path):
    with pytest.raises(ValueError):
        SegmentCentres(0)
    with pytest.raises(ValueError):
        Resize(0, 64)
    with pytest.raises(ValueError):
        DecodeRequest(views=())
    path = write_video(tmp_path / "clip.mp4", width=64, height=48, num_frames=4)
    with pytest.raises(InvalidRequest) as e:
        decode_video(VideoSource(path=path), DecodeRequest(views=(ViewSpec("none", _NoFrames(), Resize(8, 8)),)),
                     LIMITS)
    assert e.value.reason == "invalid_request"


def test_write_audio_only_has_audio(tmp_path):
    path = write_audio_only(tmp_path / "a.m4a", duration_s=0.5)
    with av.open(str(path)) as c:
        assert len(c.streams.audio) == 1 and not c.streams.video


def test_with_audio_track_still_decodes_video(tmp_path):
    path = write_video(tmp_path / "av.mp4", width=64, height=48, num_frames=12, pattern="brightness",
                       with_audio=True)
    with av.open(io.BytesIO(path.read_bytes())) as c:
        assert len(c.streams.audio) == 1
    out = _decode(path)
    assert np.all(np.diff(out.frames.reshape(8, -1).mean(axis=1)) > 0)
