"""Decode one video into `spec.num_frames` upright RGB frames, in this process, with PyAV.

Order of work (cheap refusals first, DESIGN.md 4):

1. size: empty -> ``empty_input``; over ``limits.max_bytes`` -> ``too_large``;
2. open the container (``not_a_video`` if FFmpeg cannot), pick the video stream
   (``no_video_stream`` for audio-only files or files whose only picture is cover art);
3. header checks before any frame is decoded: width x height over
   ``limits.max_pixels`` -> ``resolution_too_large``; duration over
   ``limits.max_duration_s`` -> ``too_long``;
4. sample by presentation time (`sampling.segment_centres`), seeking to the keyframe
   before a target when it is more than ``seek_threshold_s`` ahead and decoding
   sequentially otherwise; never more than ``limits.max_frames`` decoded frames
   (``too_many_frames`` if the budget runs out before every target is reached);
5. convert each chosen frame to RGB (8- or 10-bit sources), turn it upright per its
   display matrix, and resize to ``spec`` with PIL bicubic (Qwen/HF's resize).

Damaged files: a packet the decoder rejects is skipped (up to `MAX_PACKET_ERRORS`)
and demuxing stops at the first unreadable byte; whatever frames came out before
are used. So a truncated file whose start is intact is still judged, with the
targets past the cut taking the last good frame (the nearest one). Only when not a
single frame decodes is the video refused (``undecodable``, naming the codec).

Not crash-proof: FFmpeg can still segfault on hostile input. Run this in
`DecodePool` workers on a server; call it directly only where a crash is acceptable.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import av
import av.error
from av.video.reformatter import VideoReformatter
import numpy as np
from PIL import Image

from vidjudge.errors import InvalidRequest, InvalidVideo
from vidjudge.server.decode.sampling import TIE_TOLERANCE_S, nearer_is_later, segment_centres
from vidjudge.server.types import DecodedVideo, DecodeLimits, FrameSpec, VideoInfo, VideoSource

log = logging.getLogger(__name__)

HWACCEL_MODES = ("auto", "cuda", "none")
DEFAULT_SEEK_THRESHOLD_S = 1.0
# Rejected packets tolerated before a stream is given up as broken.
MAX_PACKET_ERRORS = 16

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


@dataclass
class _Frame:
    t: float  # presentation time, seconds (absolute, stream clock)
    frame: Any  # av.VideoFrame


class _BudgetExhausted(Exception):
    pass


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


def _check_pixels(width: int, height: int, limits: DecodeLimits, name: str) -> None:
    if width * height > limits.max_pixels:
        raise InvalidVideo(
            f"{name} is {width}x{height} ({width * height} pixels), over the server's limit of "
            f"{limits.max_pixels} pixels per frame",
            reason="resolution_too_large",
        )


def _rotation_ccw(frame) -> int:
    """Counter-clockwise quarter-turn angle (0/90/180/270) the display matrix asks for."""
    try:
        deg = float(frame.rotation or 0)
    except Exception:  # noqa: BLE001 - no or unreadable display matrix
        return 0
    quarter = int(round(deg / 90.0)) % 4
    if abs(deg - round(deg / 90.0) * 90) > 1:
        log.debug("display rotation %.1f deg rounded to %d", deg, quarter * 90)
    return quarter * 90


def to_rgb_frame(frame, spec: FrameSpec, reformatter=None) -> tuple[np.ndarray, int]:
    """One decoded frame -> upright (spec.height, spec.width, 3) uint8 RGB; also the ccw rotation applied.

    Pass one `av.video.reformatter.VideoReformatter` for all frames of a video: `to_ndarray(format=...)`
    builds a new swscale context per call (2-6 ms each, measured; the reused one 0.1-0.6 ms, same bytes).
    """
    if reformatter is None:
        reformatter = VideoReformatter()
    arr = reformatter.reformat(frame, format="rgb24").to_ndarray()
    ccw = _rotation_ccw(frame)
    if ccw:
        arr = np.rot90(arr, k=ccw // 90)
    if arr.shape[0] != spec.height or arr.shape[1] != spec.width:
        img = Image.fromarray(np.ascontiguousarray(arr))
        arr = np.asarray(img.resize((spec.width, spec.height), Image.BICUBIC))
    return np.ascontiguousarray(arr, dtype=np.uint8), ccw


class _FrameReader:
    """Frames of one stream in presentation order, with error tolerance, a frame budget and seeking."""

    def __init__(self, container, stream, limits: DecodeLimits, name: str, start_s: float, default_step_s: float):
        self.container = container
        self.stream = stream
        self.limits = limits
        self.name = name
        self.tb = stream.time_base
        self.start_s = start_s
        self.default_step_s = default_step_s
        self.frames_decoded = 0
        self.packet_errors = 0
        self.first_error: str | None = None
        self.budget_exhausted = False
        self.seen_pts = False
        self.seen_missing_pts = False
        self._last_t: float | None = None
        self._gen: Iterator[_Frame] = self._frames()

    def _note_error(self, e: BaseException) -> None:
        if self.first_error is None:
            self.first_error = getattr(e, "strerror", None) or str(e) or type(e).__name__

    def _time_of(self, frame) -> float:
        if frame.pts is not None and self.tb is not None:
            self.seen_pts = True
            t = float(frame.pts * self.tb)
        else:
            # No timestamp (raw elementary streams): one frame duration after the previous frame.
            self.seen_missing_pts = True
            if self._last_t is None:
                t = self.start_s
            else:
                step = self.default_step_s
                if frame.duration and self.tb is not None:
                    step = float(frame.duration * self.tb)
                t = self._last_t + step
        self._last_t = t
        return t

    def _emit(self, frames) -> Iterator[_Frame]:
        for f in frames:
            if self.frames_decoded >= self.limits.max_frames:
                self.budget_exhausted = True
                raise _BudgetExhausted
            self.frames_decoded += 1
            _check_pixels(f.width, f.height, self.limits, self.name)
            yield _Frame(self._time_of(f), f)

    def _frames(self) -> Iterator[_Frame]:
        demux = self.container.demux(self.stream)
        while True:
            if self.frames_decoded >= self.limits.max_frames:
                self.budget_exhausted = True
                raise _BudgetExhausted
            try:
                packet = next(demux)
            except StopIteration:
                break
            except (av.error.FFmpegError, OSError, ValueError) as e:
                self._note_error(e)  # unreadable container data (truncation): stop here
                break
            try:
                decoded = self.stream.decode(packet)
            except av.error.EOFError:
                break
            except (av.error.FFmpegError, ValueError) as e:
                self._note_error(e)
                self.packet_errors += 1
                if self.packet_errors > MAX_PACKET_ERRORS:
                    break
                continue
            yield from self._emit(decoded)
        # Frames still buffered in the decoder (frame threading, B-frames).
        try:
            decoded = self.stream.decode(None)
        except (av.error.FFmpegError, ValueError):
            decoded = []
        yield from self._emit(decoded)

    def next(self) -> _Frame | None:
        try:
            return next(self._gen)
        except StopIteration:
            return None
        except _BudgetExhausted:
            return None

    def seek(self, t_s: float) -> bool:
        """Jump to the keyframe at or before `t_s` (seconds, stream clock). False if the file cannot seek."""
        if self.tb is None:
            return False
        try:
            self._gen.close()
            self.container.seek(int(math.floor(t_s / self.tb)), backward=True, any_frame=False, stream=self.stream)
            self.stream.codec_context.flush_buffers()
        except (av.error.FFmpegError, OSError, ValueError) as e:
            log.debug("seek to %.3fs failed in %s: %s", t_s, self.name, e)
            self._gen = self._frames()
            return False
        self._last_t = None
        self._gen = self._frames()
        return True


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


def _scan_duration_s(open_fn: Callable[[], Any], limits: DecodeLimits, step_s: float,
                     name: str) -> tuple[float | None, int]:
    """Duration from the packets alone, without decoding, for headers that give none.

    Live WebM and raw elementary streams (.h264, .hevc) have no duration in their
    header. Demuxing is cheap: use the packets' timestamps; failing that their summed
    durations; failing that their count times the nominal frame interval (`step_s`,
    the same interval the reader gives frames without timestamps, so targets and
    frame times agree). Returns (duration or None when there are no packets, count).
    """
    with open_fn() as c:
        s = _pick_video_stream(c, "")
        tb = s.time_base
        lo = hi = None
        summed = 0
        count = 0
        try:
            for p in c.demux(s):
                if p.size == 0:
                    continue
                count += 1
                if count > limits.max_frames:
                    raise InvalidVideo(f"{name} has more than {limits.max_frames} frames and no duration "
                                       f"in its header", reason="too_many_frames")
                dur = p.duration or 0
                summed += dur
                if p.pts is not None:
                    lo = p.pts if lo is None else min(lo, p.pts)
                    hi = p.pts + dur if hi is None else max(hi, p.pts + dur)
        except (av.error.FFmpegError, OSError, ValueError):
            pass  # unreadable tail: what was read so far counts
    if count == 0:
        return None, 0
    if tb is not None and lo is not None and hi is not None and hi > lo:
        return float((hi - lo) * tb), count
    if tb is not None and summed > 0:
        return float(summed * tb), count
    return count * step_s, count


def decode_video(
    source: VideoSource,
    spec: FrameSpec,
    limits: DecodeLimits,
    hwaccel: str = "auto",
    *,
    seek_threshold_s: float = DEFAULT_SEEK_THRESHOLD_S,
    threads: int = 0,
) -> DecodedVideo:
    """Decode `spec.num_frames` frames sampled at segment centres, upright RGB at spec's size.

    hwaccel: "auto"/"cuda" try NVDEC (falling back to software, remembered per process),
    "none" decodes in software. seek_threshold_s: a target further ahead of the decode
    position than this is reached by seeking; nearer ones by decoding on. threads:
    FFmpeg decoder threads (0 = FFmpeg decides).
    Raises InvalidVideo (see the module docstring for reasons) or InvalidRequest
    (``file_not_found``).
    """
    if spec.num_frames < 1 or spec.width < 1 or spec.height < 1:
        raise InvalidRequest(f"frame spec must be positive, got {spec}", reason="invalid_request")
    if hwaccel not in HWACCEL_MODES:
        raise ValueError(f"hwaccel must be one of {HWACCEL_MODES}, got {hwaccel!r}")
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
            return _decode_open(container, tried_hw, source, spec, limits, name, seek_threshold_s, threads)
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
            result = _decode_open(container, False, source, spec, limits, name, seek_threshold_s, threads)
    except (av.error.FFmpegError, ValueError) as e:
        raise _unexpected(name, e) from None
    _note_cuda_failure(hwaccel, err)
    return result


def _unexpected(name: str, e: BaseException) -> InvalidVideo:
    """An FFmpeg error outside the paths handled above (seek, conversion): blame the file."""
    detail = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return InvalidVideo(f"decoding {name} failed: {detail}", reason="undecodable")


def _decode_open(container, tried_hw: bool, source: VideoSource, spec: FrameSpec, limits: DecodeLimits,
                 name: str, seek_threshold_s: float, threads: int) -> DecodedVideo:
    stream = _prepare_stream(container, limits, name, threads)
    codec = _codec_name(stream)
    start_s = _stream_start_s(container, stream)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    avg_fps = float(rate) if rate else 0.0
    step_s = 1.0 / avg_fps if avg_fps > 0 else 1.0 / 25

    duration = _metadata_duration_s(container, stream)
    if duration is None:
        duration, n_packets = _scan_duration_s(lambda: _open_container(source, None), limits, step_s, name)
        if duration is None:
            raise _undecodable(name, codec, "the stream has no packets")
        if duration > 0:
            avg_fps = n_packets / duration
    _check_duration(duration, limits, name)
    return _sample(container, stream, tried_hw, spec, limits, name, codec, start_s, duration, avg_fps,
                   step_s, seek_threshold_s)


def _prepare_stream(container, limits: DecodeLimits, name: str, threads: int):
    stream = _pick_video_stream(container, name)
    cc = stream.codec_context
    if cc is None:
        raise InvalidVideo(f"{name}: no decoder for its {_codec_name(stream)} video stream", reason="undecodable")
    if cc.width and cc.height:
        _check_pixels(cc.width, cc.height, limits, name)
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


def _sample(container, stream, tried_hw: bool, spec: FrameSpec, limits: DecodeLimits, name: str, codec: str,
            start_s: float, duration: float, avg_fps: float, step_s: float,
            seek_threshold_s: float) -> DecodedVideo:
    """Walk the targets in order, seeking or decoding on, and keep the frame nearest each."""
    targets = segment_centres(max(duration, 0.0), spec.num_frames, start_s)
    reader = _FrameReader(container, stream, limits, name, start_s, step_s)
    can_seek = math.isfinite(seek_threshold_s)

    out = np.empty((spec.num_frames, spec.height, spec.width, 3), np.uint8)
    times = np.empty(spec.num_frames, np.float64)
    prev: _Frame | None = None  # last frame at or before the target
    converted: tuple[_Frame, np.ndarray, int] | None = None
    reformatter = VideoReformatter()  # one swscale context for the whole video
    first_ccw: int | None = None
    frame_dims: tuple[int, int] | None = None
    # 1. Read the first frame: whether frames carry timestamps decides if seeking is safe
    #    (times synthesized for frames without one do not survive a seek).
    nxt: _Frame | None = reader.next()  # first frame after the target (or not yet read)
    exhausted = nxt is None

    for i, t in enumerate(targets):
        if reader.seen_missing_pts:
            can_seek = False
        # 2. Far ahead: jump to the keyframe before the target instead of decoding up to it.
        pos = nxt.t if nxt is not None else (prev.t if prev is not None else start_s)
        if can_seek and not exhausted and t - pos > seek_threshold_s:
            if not reader.seek(t):
                can_seek = False  # the demuxer refused: decode on from where we are
            else:
                landed = reader.next()
                if landed is not None and landed.t > t + TIE_TOLERANCE_S and landed.t > start_s + TIE_TOLERANCE_S:
                    # Landed past the target (some indexes are keyed by decode time): back off once.
                    if reader.seek(max(start_s, t - 2 * max(seek_threshold_s, step_s))):
                        landed = reader.next()
                if landed is None:
                    # Nothing there: the file ends before its header says, or the stream does not
                    # really seek. Decode from the start instead, without seeking again.
                    can_seek = False
                    landed = reader.next() if reader.seek(start_s) else None
                if landed is None:
                    exhausted = True  # keep the frames already in hand
                else:
                    prev, nxt = None, landed
        # 3. Decode on until the next frame is past the target.
        while not exhausted and (nxt is None or nxt.t <= t):
            if nxt is not None:
                prev = nxt
            nxt = reader.next()
            if nxt is None:
                exhausted = True
        if prev is None and nxt is None:
            break  # nothing decodable at all
        # 4. Keep whichever neighbour is nearer (ties: the earlier); past the end, the last frame.
        if prev is None:
            chosen = nxt
        elif nxt is None:
            chosen = prev
        else:
            chosen = nxt if nearer_is_later(t, prev.t, nxt.t) else prev
        assert chosen is not None
        # 5. Convert once per distinct frame (short clips repeat frames).
        if converted is None or converted[0] is not chosen:
            arr, ccw = to_rgb_frame(chosen.frame, spec, reformatter)
            converted = (chosen, arr, ccw)
            if frame_dims is None:
                frame_dims = (chosen.frame.width, chosen.frame.height)
        out[i] = converted[1]
        if first_ccw is None:
            first_ccw = converted[2]
        times[i] = chosen.t - start_s

    if reader.budget_exhausted:
        raise InvalidVideo(
            f"{name}: reaching the sampled frames needs more than the server's limit of "
            f"{limits.max_frames} decoded frames", reason="too_many_frames")
    if converted is None:
        raise _undecodable(name, codec, reader.first_error)
    if reader.first_error:
        log.info("%s: decode stopped early or skipped packets (%s); sampled from %d decoded frames",
                 name, reader.first_error, reader.frames_decoded)

    cc = stream.codec_context
    width, height = (cc.width, cc.height) if cc.width and cc.height else frame_dims or (0, 0)
    ccw = first_ccw or 0
    if ccw in (90, 270):
        width, height = height, width
    decoder = "nvdec" if tried_hw and bool(getattr(cc, "is_hwaccel", False)) else "software"
    info = VideoInfo(
        width=int(width),
        height=int(height),
        duration_s=float(duration),
        avg_fps=float(avg_fps),
        codec=codec,
        rotation=(-ccw) % 360,
        frames_decoded=int(reader.frames_decoded),
        decoder=decoder,
    )
    return DecodedVideo(frames=out, timestamps_s=times, info=info)


__all__ = ["decode_video", "to_rgb_frame", "cuda_unavailable_reason", "HWACCEL_MODES", "DEFAULT_SEEK_THRESHOLD_S"]
