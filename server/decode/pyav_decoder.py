"""Decode the views of one video (`DecodeRequest`), in this process, with PyAV.

Order of work (cheap refusals first, DESIGN.md 4):

1. size: empty -> ``empty_input``; over ``limits.max_bytes`` -> ``too_large``;
2. open the container (``not_a_video`` if FFmpeg cannot), pick the video stream
   (``no_video_stream`` for audio-only files or files whose only picture is cover art);
3. header checks before any packet is read: width x height over ``limits.max_pixels``
   -> ``resolution_too_large``; duration over ``limits.max_duration_s`` -> ``too_long``;
4. read every packet without decoding (`packets.read_packet_index`): the frame count,
   each frame's number in presentation order (pts sorted, as decord numbers frames),
   the keyframes, and the duration when the header has none;
5. ask each view's sampler for its targets (`StreamFacts` -> times or frame numbers) and
   resolve them to frames: by time the nearest frame (ties: the earlier), by number that
   frame (past the end: the last);
6. decode only what those frames need (`plan.make_plan`): from the keyframe before each
   one, jumping forward over what no wanted frame needs, never decoding a frame twice,
   nothing after the last wanted frame, and not decoding non-reference frames nobody
   wants (FFmpeg's ``skip_frame``); never more than ``limits.max_frames`` decoded frames
   (``too_many_frames``);
7. convert each wanted frame once to upright RGB (8- or 10-bit sources; one swscale
   context per video; display matrix applied), then apply each view's transform
   (e.g. `transforms.Resize`, PIL bicubic: Qwen/HF's resize) at each of its slots.

Streams without timestamps (raw .h264/.hevc) are decoded from the start, frames taking
times one frame interval apart and numbers in output order.

Damaged files: a packet the decoder rejects is skipped (up to `MAX_PACKET_ERRORS`)
and demuxing stops at the first unreadable byte. When a planned frame does not come
out, the video is decoded again from the start and every target takes the nearest
frame that did decode; so a truncated file whose start is intact is still judged,
with the targets past the cut taking the last good frame. Only when not a single
frame decodes is the video refused (``undecodable``, naming the codec).

Not crash-proof: FFmpeg can still segfault on hostile input. Run this in
`DecodePool` workers on a server; call it directly only where a crash is acceptable.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from typing import Any

import av
import av.error
import numpy as np

from vidjudge.errors import InvalidRequest, InvalidVideo
from vidjudge.server.decode.frames import (
    MAX_PACKET_ERRORS,
    Converter,
    Feeder,
    SequentialPicker,
    Slot,
    ViewSink,
    check_pixels,
    run_plan,
    run_sequential,
)
from vidjudge.server.decode.packets import PacketIndex, read_packet_index
from vidjudge.server.decode.plan import make_plan
from vidjudge.server.decode.sampling import nearest_indices
from vidjudge.server.types import (
    DecodedVideo,
    DecodeLimits,
    DecodeRequest,
    FrameTargets,
    StreamFacts,
    VideoInfo,
    VideoSource,
    ViewSpec,
)

log = logging.getLogger(__name__)

HWACCEL_MODES = ("auto", "cuda", "none")

# Decoders whose skip_frame=NONREF drops exactly the frames no other frame refers to (H.264:
# nal_ref_idc 0, so b-pyramid B-frames that are references still decode; HEVC: sub-layer
# non-reference NAL types), read per packet, so wanted frames still decode, bit-identical
# (tests/unit/test_decode_skip.py). Not listed: VP8/VP9 ignore NONREF; libdav1d (AV1) reads
# the setting once, when it opens, and would then drop wanted frames too.
SKIP_NONREF_CODECS = frozenset({"h264", "hevc"})

# Why CUDA decoding failed in this process; once set, it is never tried again here.
_cuda_failure: str | None = None


def cuda_unavailable_reason() -> str | None:
    """None while NVDEC has not failed in this process; else why it did (it is not retried)."""
    return _cuda_failure


def _note_cuda_failure(mode: str, err: BaseException) -> None:
    global _cuda_failure
    if _cuda_failure is not None:
        return
    _cuda_failure = f"{type(err).__name__}: {err}"
    level = logging.WARNING if mode == "cuda" else logging.INFO
    log.log(level, "CUDA (NVDEC) decoding unavailable in this process (%s); decoding in software from now on",
            _cuda_failure)


def _cuda_hwaccel():
    """NVDEC settings: the GPU's primary CUDA context (shared, not created per video), with
    FFmpeg falling back to its software decoder for streams NVDEC cannot handle."""
    from av.codec.hwaccel import HWAccel

    return HWAccel(device_type="cuda", allow_software_fallback=True, options={"primary_ctx": "1"})


def _tiny_h264_clip() -> bytes | None:
    """A one-frame 64x64 H.264 mp4 made in memory (None if this PyAV has no H.264 encoder)."""
    buf = io.BytesIO()
    try:
        with av.open(buf, mode="w", format="mp4") as out:
            s = out.add_stream("libx264", rate=1)
            s.width = s.height = 64
            s.pix_fmt = "yuv420p"
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            for p in s.encode(frame):
                out.mux(p)
            for p in s.encode(None):
                out.mux(p)
    except Exception:  # noqa: BLE001
        return None
    return buf.getvalue()


def probe_hwaccel(hwaccel: str = "auto") -> bool:
    """Try NVDEC once on a tiny clip; True if frames came back from the GPU decoder.

    Worker processes call this at start-up, so that an NVDEC initialisation crash
    (PyAV issue 2411) kills a worker before it takes a request, not while it holds one.
    A failure is remembered like any other (`cuda_unavailable_reason`).
    """
    if hwaccel == "none":
        return False
    if _cuda_failure is not None:
        return False
    try:
        from av.codec.hwaccel import hwdevices_available

        if "cuda" not in hwdevices_available():
            raise RuntimeError("this FFmpeg build has no CUDA device support")
        clip = _tiny_h264_clip()
        if clip is None:
            return False  # nothing to probe with; the first real decode decides
        with av.open(io.BytesIO(clip), mode="r", hwaccel=_cuda_hwaccel()) as c:
            s = c.streams.video[0]
            frames = list(c.decode(s))
            if not frames:
                raise RuntimeError("the CUDA decoder returned no frame")
            if not getattr(s.codec_context, "is_hwaccel", False):
                raise RuntimeError("the decoder did not use CUDA")
    except Exception as e:  # noqa: BLE001
        _note_cuda_failure(hwaccel, e)
        return False
    return True


def _source_name(source: VideoSource) -> str:
    if source.path is not None:
        return str(source.path.name)
    return f"<inline video, {len(source.data or b'')} bytes>"


def _open_container(source: VideoSource, hw: Any | None):
    file: Any = io.BytesIO(source.data) if source.data is not None else str(source.path)
    kwargs: dict[str, Any] = {"mode": "r", "metadata_errors": "replace"}
    if hw is not None:
        kwargs["hwaccel"] = hw
    return av.open(file, **kwargs)


def _open_software(source: VideoSource, name: str):
    try:
        return _open_container(source, None)
    except av.error.FileNotFoundError:
        raise InvalidRequest(f"no such file: {name}", reason="file_not_found") from None
    except (av.error.FFmpegError, ValueError, UnicodeDecodeError) as e:
        detail = getattr(e, "strerror", None) or str(e)
        raise InvalidVideo(
            f"{name} is not a video FFmpeg can open (it is not a media container, or it is truncated "
            f"or corrupt before the index): {detail}",
            reason="not_a_video",
        ) from None


def _open(source: VideoSource, hwaccel: str, name: str) -> tuple[Any, bool]:
    """Open the container; with hwaccel auto/cuda try NVDEC first. Returns (container, tried_hw)."""
    if hwaccel in ("auto", "cuda") and _cuda_failure is None:
        try:
            return _open_container(source, _cuda_hwaccel()), True
        except Exception as e:  # noqa: BLE001 - any failure here means "no usable CUDA"
            hw_error = e
        container = _open_software(source, name)
        # Software could open what the CUDA attempt could not: the GPU was at fault.
        _note_cuda_failure(hwaccel, hw_error)
        return container, False
    return _open_software(source, name), False


def _pick_video_stream(container, name: str):
    attached = av.stream.Disposition.attached_pic
    videos = [s for s in container.streams.video if not (int(s.disposition) & int(attached))]
    if videos:
        defaults = [s for s in videos if int(s.disposition) & int(av.stream.Disposition.default)]
        return (defaults or videos)[0]
    n_audio = len(container.streams.audio)
    if container.streams.video:
        what = "only a still cover picture (attached image)"
        if n_audio:
            what += f" and {n_audio} audio stream(s)"
        raise InvalidVideo(f"{name} has no video stream: it has {what}", reason="no_video_stream")
    if n_audio:
        raise InvalidVideo(
            f"{name} has only audio ({n_audio} audio stream(s)) and no video stream", reason="no_video_stream"
        )
    raise InvalidVideo(f"{name} has no video stream", reason="no_video_stream")


def _codec_name(stream) -> str:
    try:
        codec = stream.codec_context.codec
        return codec.canonical_name or codec.name
    except Exception:  # noqa: BLE001
        return "unknown"


def _stream_start_s(container, stream) -> float:
    if stream.start_time is not None and stream.time_base is not None:
        return float(stream.start_time * stream.time_base)
    if container.start_time is not None:
        return container.start_time / av.time_base
    return 0.0


def _metadata_duration_s(container, stream) -> float | None:
    if stream.duration and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


@dataclass(frozen=True)
class _Options:
    threads: int
    seek: bool
    skip_nonref: bool


def decode_video(
    source: VideoSource,
    request: DecodeRequest,
    limits: DecodeLimits,
    hwaccel: str = "auto",
    *,
    threads: int = 1,
    seek: bool = True,
    skip_nonref: bool = True,
) -> DecodedVideo:
    """Decode every view of `request` in one pass over the file.

    hwaccel: "auto"/"cuda" try NVDEC (falling back to software, remembered per process),
    "none" decodes in software. threads: FFmpeg decoder threads (1: one core per decode;
    0 = FFmpeg decides, i.e. every core). seek: jump to the keyframe before the next wanted
    frame when it lies ahead (False: decode every packet up to the last wanted frame).
    skip_nonref: do not decode non-reference frames nobody wants (codecs in `SKIP_NONREF_CODECS`).
    seek and skip_nonref change the cost, never the frames (tests hold them to that).
    Raises InvalidVideo (see the module docstring for reasons) or InvalidRequest
    (``file_not_found``, ``invalid_request``).
    """
    if not isinstance(request, DecodeRequest):
        raise TypeError(f"request must be a DecodeRequest, got {type(request).__name__}")
    if hwaccel not in HWACCEL_MODES:
        raise ValueError(f"hwaccel must be one of {HWACCEL_MODES}, got {hwaccel!r}")
    opts = _Options(threads=threads, seek=seek, skip_nonref=skip_nonref)
    name = _source_name(source)
    try:
        size = source.size
    except OSError:
        raise InvalidRequest(f"no such file: {name}", reason="file_not_found") from None
    if size == 0:
        raise InvalidVideo(f"{name} is empty (0 bytes)", reason="empty_input")
    if size > limits.max_bytes:
        raise InvalidVideo(f"{name} is {size} bytes, over the server's {limits.max_bytes}-byte limit",
                           reason="too_large")

    container, tried_hw = _open(source, hwaccel, name)
    try:
        with container:
            return _decode_open(container, tried_hw, request, limits, name, opts)
    except InvalidVideo as e:
        if not (tried_hw and e.reason == "undecodable"):
            raise
        err: BaseException = e
    except (av.error.FFmpegError, ValueError) as e:
        if not tried_hw:
            raise _unexpected(name, e) from None
        err = e
    # The CUDA path failed outright: try software once before blaming the file.
    try:
        with _open_software(source, name) as container:
            result = _decode_open(container, False, request, limits, name, opts)
    except (av.error.FFmpegError, ValueError) as e:
        raise _unexpected(name, e) from None
    _note_cuda_failure(hwaccel, err)
    return result


def _unexpected(name: str, e: BaseException) -> InvalidVideo:
    """An FFmpeg error outside the paths handled above (conversion): blame the file."""
    detail = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return InvalidVideo(f"decoding {name} failed: {detail}", reason="undecodable")


def _decode_open(container, tried_hw: bool, request: DecodeRequest, limits: DecodeLimits, name: str,
                 opts: _Options) -> DecodedVideo:
    # 1. Header facts and the refusals they allow, before any packet is read.
    stream = _prepare_stream(container, limits, name, opts.threads)
    codec = _codec_name(stream)
    start_s = _stream_start_s(container, stream)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    avg_fps = float(rate) if rate else 0.0
    step_s = 1.0 / avg_fps if avg_fps > 0 else 1.0 / 25
    duration = _metadata_duration_s(container, stream)
    _check_duration(duration, limits, name)
    # 2. Every packet, not decoded: frame count, presentation order, keyframes (and a duration
    #    for headers without one: live WebM, raw elementary streams).
    index = read_packet_index(container, stream, name)
    if duration is None:
        duration = index.duration_s(stream.time_base, step_s)
        if duration is None:
            raise _undecodable(name, codec, "the stream has no packets")
        if duration > 0:
            avg_fps = len(index.packets) / duration
        _check_duration(duration, limits, name)
    facts = StreamFacts(num_frames=index.num_frames, duration_s=float(duration), fps=float(avg_fps))
    targets = [_targets_of(view, facts) for view in request.views]
    # 3. Decode what the views need.
    clip = _Clip(stream, index, name, codec, start_s, step_s)
    feeder = Feeder(stream, limits, name)
    converter = Converter()
    sink = _decode_views(clip, feeder, converter, request, targets, opts)
    first_error = feeder.first_error or index.first_error
    if sink is None:
        raise _undecodable(name, codec, first_error)
    if first_error:
        log.info("%s: decode stopped early or skipped packets (%s); sampled from %d decoded frames",
                 name, first_error, feeder.frames_decoded)
    return DecodedVideo(views=sink.result(),
                        info=_video_info(stream, converter, tried_hw, duration, avg_fps, codec, feeder))


def _targets_of(view: ViewSpec, facts: StreamFacts) -> FrameTargets:
    targets = view.sampler.targets(facts)
    if len(targets) == 0:
        raise InvalidRequest(f"view {view.name!r} asks for no frames", reason="invalid_request")
    if targets.indices is not None and min(targets.indices) < 0:
        raise InvalidRequest(f"view {view.name!r} asks for a negative frame number", reason="invalid_request")
    return targets


@dataclass
class _Clip:
    """One open video stream with its packets indexed: what choosing and decoding frames needs."""

    stream: Any
    index: PacketIndex
    name: str
    codec: str
    start_s: float  # the stream's first presentation time (targets count from it)
    step_s: float  # nominal frame interval (frames without timestamps)
    times: np.ndarray | None = field(init=False, default=None)  # every frame's time (stream clock), where known

    def __post_init__(self) -> None:
        if self.index.has_timestamps and self.stream.time_base is not None:
            self.times = _frame_times(self.index.frame_pts, self.stream.time_base)

    def time_of_pts(self, pts: int) -> float:
        return float(pts * self.stream.time_base)


def _frame_times(pts: np.ndarray, tb) -> np.ndarray:
    """Seconds of each pts, each exactly float(pts * tb): integer products below 2**53 divided once
    are correctly rounded, like the Fraction, and cost nothing for 100k frames."""
    num, den = tb.numerator, tb.denominator
    if pts.size and max(abs(int(pts[0])), abs(int(pts[-1]))) * num < 2**53 and den < 2**53:
        return (pts.astype(np.float64) * num) / den
    return np.array([float(int(p) * tb) for p in pts.tolist()], np.float64)


def _decode_views(clip: _Clip, feeder: Feeder, converter: Converter, request: DecodeRequest,
                  targets: list[FrameTargets], opts: _Options) -> ViewSink | None:
    """The planned decode when every frame has a timestamp; a plain one from the start otherwise,
    or when a planned frame did not come out (damaged data). None if no frame decoded at all."""
    lengths = [len(t) for t in targets]
    if clip.times is not None:
        sink = ViewSink(request, lengths, clip.start_s, converter)
        if _planned(clip, feeder, sink, targets, opts):
            return sink
        feeder.restart()
    sink = ViewSink(request, lengths, clip.start_s, converter)
    run_sequential(feeder, clip.index, _picker(clip, sink, targets))
    return sink if sink.complete else None


def _planned(clip: _Clip, feeder: Feeder, sink: ViewSink, targets: list[FrameTargets], opts: _Options) -> bool:
    """Decode only the packets the wanted frames need; False if one of them did not come out."""
    # 1. Each target -> a frame number: nearest by time (ties: the earlier), or the number asked
    #    (past the end: the last frame); each frame -> the view slots that take it.
    wanted: dict[int, list[Slot]] = {}
    last = int(clip.times.size) - 1
    for v, t in enumerate(targets):
        if t.times_s is not None:
            frames = nearest_indices(clip.times, clip.start_s + np.asarray(t.times_s, np.float64)).tolist()
        else:
            frames = [min(int(i), last) for i in t.indices]
        for k, frame in enumerate(frames):
            wanted.setdefault(frame, []).append((v, k))
    # 2. Decode the planned runs of packets.
    plan = make_plan(clip.index, wanted.keys(), seek=opts.seek)
    skip = opts.skip_nonref and clip.codec in SKIP_NONREF_CODECS
    missing = run_plan(feeder, clip.index, plan, wanted, sink, clip.time_of_pts, skip_nonref=skip)
    if missing:
        log.info("%s: %d wanted frame(s) did not decode (%s); choosing the nearest frames that do",
                 clip.name, len(missing), feeder.first_error or clip.index.first_error or "no error reported")
    return not missing


def _picker(clip: _Clip, sink: ViewSink, targets: list[FrameTargets]) -> SequentialPicker:
    """Targets for a decode from the first packet: times as they are; frame numbers as the time of
    that frame where frames have timestamps (the nearest decodable one then takes it), else as the
    n-th frame out of the decoder."""
    time_targets: list[tuple[float, Slot]] = []
    ordinal_targets: dict[int, list[Slot]] = {}
    for v, t in enumerate(targets):
        for k in range(len(t)):
            if t.times_s is not None:
                time_targets.append((clip.start_s + float(np.float64(t.times_s[k])), (v, k)))
            elif clip.times is not None:
                time_targets.append((float(clip.times[min(t.indices[k], clip.times.size - 1)]), (v, k)))
            else:
                ordinal_targets.setdefault(int(t.indices[k]), []).append((v, k))
    frame_of_pts: dict[int, int] = {}
    if clip.times is not None:
        frame_of_pts = {int(p): k for k, p in enumerate(clip.index.frame_pts.tolist())}
    return SequentialPicker(sink, time_targets, ordinal_targets, time_base=clip.stream.time_base,
                            start_s=clip.start_s, default_step_s=clip.step_s, index_of_pts=frame_of_pts.get)


def _prepare_stream(container, limits: DecodeLimits, name: str, threads: int):
    stream = _pick_video_stream(container, name)
    cc = stream.codec_context
    if cc is None:
        raise InvalidVideo(f"{name}: no decoder for its {_codec_name(stream)} video stream", reason="undecodable")
    if cc.width and cc.height:
        check_pixels(cc.width, cc.height, limits, name)
    try:
        cc.thread_type = "AUTO"
        cc.thread_count = threads
    except Exception:  # noqa: BLE001 - some decoders refuse; their defaults are fine
        pass
    try:
        # Defence in depth: FFmpeg itself refuses frames over the limit (streams whose
        # header has no size, or that change size mid-stream).
        cc.options = {**(cc.options or {}), "max_pixels": str(limits.max_pixels)}
    except Exception:  # noqa: BLE001
        pass
    return stream


def _check_duration(duration: float | None, limits: DecodeLimits, name: str) -> None:
    if duration is not None and duration > limits.max_duration_s:
        raise InvalidVideo(f"{name} lasts {duration:.1f} s, over the server's {limits.max_duration_s:g} s limit",
                           reason="too_long")


def _undecodable(name: str, codec: str, first_error: str | None) -> InvalidVideo:
    detail = f" ({first_error})" if first_error else ""
    return InvalidVideo(f"could not decode any frame of the {codec} video stream in {name}{detail}",
                        reason="undecodable")


def _video_info(stream, converter: Converter, tried_hw: bool, duration: float, avg_fps: float, codec: str,
                feeder: Feeder) -> VideoInfo:
    cc = stream.codec_context
    width, height = (cc.width, cc.height) if cc.width and cc.height else converter.first_dims or (0, 0)
    ccw = converter.first_ccw or 0
    if ccw in (90, 270):
        width, height = height, width
    decoder = "nvdec" if tried_hw and bool(getattr(cc, "is_hwaccel", False)) else "software"
    return VideoInfo(
        width=int(width),
        height=int(height),
        duration_s=float(duration),
        avg_fps=float(avg_fps),
        codec=codec,
        rotation=(-ccw) % 360,
        frames_decoded=int(feeder.frames_decoded),
        decoder=decoder,
    )


__all__ = ["decode_video", "cuda_unavailable_reason", "probe_hwaccel", "HWACCEL_MODES", "SKIP_NONREF_CODECS",
           "MAX_PACKET_ERRORS"]
