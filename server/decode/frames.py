"""From packets to the views' frames: the decoder feed, the one pixel converter, the view outputs.

- `Feeder` sends packets to FFmpeg's decoder with error tolerance, the frame budget, the
  pixel limit and per-packet ``skip_frame`` (non-reference frames nobody wants are not
  decoded);
- `Converter` turns a decoded frame into upright RGB through one swscale context per video;
- `ViewSink` receives each chosen frame once, converts it once, and applies every view's
  transform at the slots that asked for it;
- `run_plan` decodes the planned runs of packets (frames identified by pts);
  `SequentialPicker` chooses frames as they come out of a plain decode from the start
  (streams without timestamps, and the recovery path for damaged files).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import av
import av.error
import numpy as np
from av.video.reformatter import VideoReformatter

from vidjudge.errors import InvalidVideo
from vidjudge.server.decode.packets import PacketIndex
from vidjudge.server.decode.plan import DecodePlan
from vidjudge.server.decode.sampling import nearer_is_later
from vidjudge.server.types import DecodeLimits, DecodeRequest, FrameView

log = logging.getLogger(__name__)

# Rejected packets tolerated before a stream is given up as broken.
MAX_PACKET_ERRORS = 16

Slot = tuple[int, int]  # (view number, position in the view)


def check_pixels(width: int, height: int, limits: DecodeLimits, name: str) -> None:
    if width * height > limits.max_pixels:
        raise InvalidVideo(
            f"{name} is {width}x{height} ({width * height} pixels), over the server's limit of "
            f"{limits.max_pixels} pixels per frame",
            reason="resolution_too_large",
        )


# --------------------------------------------------------------------------- decoder feed


class Feeder:
    """Packets in, decoded frames out; counts every frame FFmpeg hands back (the cost)."""

    def __init__(self, stream, limits: DecodeLimits, name: str):
        self.cc = stream.codec_context
        self.limits = limits
        self.name = name
        self.frames_decoded = 0
        self.packet_errors = 0
        self.first_error: str | None = None
        self._skip = "DEFAULT"  # FFmpeg's default: discard nothing but invalid packets

    @property
    def broken(self) -> bool:
        return self.packet_errors > MAX_PACKET_ERRORS

    def note_error(self, e: BaseException | str) -> None:
        if self.first_error is None:
            self.first_error = e if isinstance(e, str) else (getattr(e, "strerror", None) or str(e) or type(e).__name__)

    def send(self, packet, skip_nonref: bool = False) -> list:
        # The setting is read when this packet is decoded, i.e. inside this call.
        want = "NONREF" if skip_nonref else "DEFAULT"
        if want != self._skip:
            self.cc.skip_frame = want
            self._skip = want
        try:
            frames = self.cc.decode(packet)
        except av.error.EOFError:
            return []
        except (av.error.FFmpegError, ValueError) as e:
            self.note_error(e)
            self.packet_errors += 1
            return []
        return self._count(frames)

    def drain(self) -> list:
        """The frames still held for reordering or in decoder threads; `reset` before sending more."""
        try:
            frames = self.cc.decode(None)
        except (av.error.FFmpegError, ValueError):
            return []
        return self._count(frames)

    def reset(self) -> None:
        """Forget all decoder state (after `drain`, or before jumping to a keyframe elsewhere)."""
        self.cc.flush_buffers()

    def restart(self) -> None:
        """Ready to decode again from the first packet: frames in flight out (and counted), state and
        the error count cleared (the first error is kept for the log)."""
        self.drain()
        self.reset()
        self.packet_errors = 0

    def _count(self, frames: list) -> list:
        for f in frames:
            if self.frames_decoded >= self.limits.max_frames:
                raise InvalidVideo(
                    f"{self.name}: reaching the sampled frames needs more than the server's limit of "
                    f"{self.limits.max_frames} decoded frames", reason="too_many_frames")
            self.frames_decoded += 1
            check_pixels(f.width, f.height, self.limits, self.name)
        return frames


# --------------------------------------------------------------------------- pixels


def rotation_ccw(frame) -> int:
    """Counter-clockwise quarter-turn angle (0/90/180/270) the display matrix asks for."""
    try:
        deg = float(frame.rotation or 0)
    except Exception:  # noqa: BLE001 - no or unreadable display matrix
        return 0
    quarter = int(round(deg / 90.0)) % 4
    if abs(deg - round(deg / 90.0) * 90) > 1:
        log.debug("display rotation %.1f deg rounded to %d", deg, quarter * 90)
    return quarter * 90


class Converter:
    """Decoded frame -> upright RGB uint8 (H, W, 3), through one VideoReformatter for the whole video:
    `to_ndarray(format=...)` builds a new swscale context per call (2-6 ms each, measured; the reused
    one 0.1-0.6 ms, same bytes)."""

    def __init__(self) -> None:
        self._reformatter = VideoReformatter()
        self.first_ccw: int | None = None  # rotation of the first converted frame (reported)
        self.first_dims: tuple[int, int] | None = None  # its stored (width, height)

    def __call__(self, frame) -> np.ndarray:
        arr = self._reformatter.reformat(frame, format="rgb24").to_ndarray()
        ccw = rotation_ccw(frame)
        if ccw:
            arr = np.rot90(arr, k=ccw // 90)
        if self.first_ccw is None:
            self.first_ccw, self.first_dims = ccw, (frame.width, frame.height)
        return arr


# --------------------------------------------------------------------------- view outputs


@dataclass
class _ViewOut:
    transform: Any
    frames: list[np.ndarray | None]
    times: np.ndarray
    indices: np.ndarray  # -1 where unknown
    reuse: dict[Any, np.ndarray] = field(default_factory=dict)  # frame key -> output (k-independent transforms)


class ViewSink:
    """Collects each view's frames; a frame shared by several views or slots is converted once."""

    def __init__(self, request: DecodeRequest, lengths: list[int], start_s: float, converter: Converter):
        self.request = request
        self.start_s = start_s
        self.convert = converter
        self.views = [_ViewOut(v.transform, [None] * n, np.zeros(n, np.float64), np.full(n, -1, np.int64))
                      for v, n in zip(request.views, lengths)]

    @property
    def complete(self) -> bool:
        return all(f is not None for out in self.views for f in out.frames)

    def put(self, key: Any, rgb: np.ndarray | Callable[[], np.ndarray], t_abs: float, index: int | None,
            slots: Iterable[Slot]) -> None:
        """Give `slots` the frame `key` (shown at `t_abs` seconds, presentation index `index`).
        `rgb` may be a callable, so that a frame nobody ends up taking is never converted."""
        for v, k in slots:
            out = self.views[v]
            cached = out.reuse.get(key)
            if cached is None:
                if callable(rgb):
                    rgb = rgb()
                cached = out.transform(rgb, k)
                if not getattr(out.transform, "depends_on_k", True):
                    out.reuse[key] = cached
            out.frames[k] = cached
            out.times[k] = t_abs - self.start_s
            out.indices[k] = -1 if index is None else index

    def result(self) -> dict[str, FrameView]:
        views = {}
        for spec, out in zip(self.request.views, self.views):
            assert all(f is not None for f in out.frames)
            indices = None if np.any(out.indices < 0) else out.indices
            views[spec.name] = FrameView(frames=np.stack(out.frames), timestamps_s=out.times, indices=indices)
        return views


# --------------------------------------------------------------------------- planned decode


def run_plan(feeder: Feeder, index: PacketIndex, plan: DecodePlan, wanted: dict[int, list[Slot]],
             sink: ViewSink, time_of_pts: Callable[[int], float], *, skip_nonref: bool) -> set[int]:
    """Decode the plan's runs; give each wanted frame (by presentation index) to its slots.
    Returns the wanted frames that never came out (damaged packets): the caller recovers."""
    missing = set(wanted)

    def deliver(frames: list) -> None:
        for f in frames:
            k = plan.frame_of_pts.get(f.pts) if f.pts is not None else None
            if k is None or k not in missing:
                continue  # a reference frame decoded for others' sake
            missing.discard(k)
            sink.put(k, lambda f=f: sink.convert(f), time_of_pts(f.pts), k, wanted[k])

    pos = -1  # decode index of the last packet sent
    for a, b in plan.runs:
        # 1. The next wanted frames start at a keyframe ahead: jump there, decoding nothing between.
        #    Frames held for reordering come out first (already decoded: draining costs nothing).
        if a > pos + 1 and pos >= 0:
            deliver(feeder.drain())
            feeder.reset()
        # 2. Decode the run; a frame nobody wants is skipped when no other frame refers to it.
        for i in range(max(a, pos + 1), b + 1):
            wanted_here = i in plan.wanted_packets
            deliver(feeder.send(index.packets[i], skip_nonref=skip_nonref and not wanted_here))
            if feeder.broken:
                return missing
        pos = b
        if not missing:
            break  # early: every wanted frame is out (later runs were for frames it already gave)
    # 3. The last frames wait in the decoder's reorder buffer until it is drained.
    deliver(feeder.drain())
    return missing


# --------------------------------------------------------------------------- plain decode from the start


@dataclass
class _Shown:
    """A decoded frame in presentation order, converted only if some slot takes it."""

    key: int  # output ordinal
    frame: Any
    t: float  # seconds, stream clock
    index: int | None  # presentation index, where known
    _rgb: np.ndarray | None = None

    def rgb(self, convert: Converter) -> np.ndarray:
        if self._rgb is None:
            self._rgb = convert(self.frame)
        return self._rgb


class SequentialPicker:
    """Chooses frames while they come out of a decode from the first packet, in presentation order.

    Time targets take the nearest frame (ties: the earlier; past the end: the last frame);
    ordinal targets take the n-th frame out (past the end: the last frame). Frames without a
    timestamp are one frame interval after the previous one (raw elementary streams).
    """

    def __init__(self, sink: ViewSink, time_targets: list[tuple[float, Slot]],
                 ordinal_targets: dict[int, list[Slot]], *, time_base, start_s: float, default_step_s: float,
                 index_of_pts: Callable[[int | None], int | None] = lambda pts: None):
        self.sink = sink
        self.time_targets = sorted(time_targets, key=lambda x: x[0])
        self.ordinal_targets = ordinal_targets
        self.tb = time_base
        self.start_s = start_s
        self.default_step_s = default_step_s
        self.index_of_pts = index_of_pts
        self.prev: _Shown | None = None
        self.seen_missing_pts = False
        self._next_time = 0
        self._count = 0
        self._last_t: float | None = None

    @property
    def done(self) -> bool:
        return self._next_time == len(self.time_targets) and not self.ordinal_targets

    def _time_of(self, frame) -> float:
        if frame.pts is not None and self.tb is not None:
            t = float(frame.pts * self.tb)
        else:
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

    def _give(self, shown: _Shown, slots: list[Slot]) -> None:
        self.sink.put(shown.key, lambda: shown.rgb(self.sink.convert), shown.t, shown.index, slots)

    def push(self, frame) -> None:
        cur = _Shown(self._count, frame, self._time_of(frame), None)
        cur.index = self.index_of_pts(frame.pts) if frame.pts is not None else None
        if cur.index is None and self.seen_missing_pts:
            cur.index = self._count  # no timestamps at all: the n-th frame out is frame n
        # 1. Every time target before this frame is settled: this frame or the one before.
        while self._next_time < len(self.time_targets) and self.time_targets[self._next_time][0] < cur.t:
            t, slot = self.time_targets[self._next_time]
            prev = self.prev
            chosen = cur if prev is None or nearer_is_later(t, prev.t, cur.t) else prev
            self._give(chosen, [slot])
            self._next_time += 1
        # 2. Ordinal targets take this frame if it is theirs.
        slots = self.ordinal_targets.pop(self._count, None)
        if slots:
            self._give(cur, slots)
        self.prev = cur
        self._count += 1

    def finish(self) -> None:
        """Targets past the last frame take the last frame."""
        if self.prev is None:
            return
        rest = [slot for _, slot in self.time_targets[self._next_time:]]
        rest += [slot for slots in self.ordinal_targets.values() for slot in slots]
        self._next_time = len(self.time_targets)
        self.ordinal_targets = {}
        if rest:
            self._give(self.prev, rest)


def run_sequential(feeder: Feeder, index: PacketIndex, picker: SequentialPicker) -> None:
    """Decode from the first packet, every frame, until the picker has all it wants."""
    for packet in index.packets:
        for f in feeder.send(packet):
            picker.push(f)
        if picker.done or feeder.broken:
            break
    if not picker.done:
        for f in feeder.drain():
            picker.push(f)
    picker.finish()


__all__ = ["Feeder", "Converter", "ViewSink", "SequentialPicker", "run_plan", "run_sequential", "check_pixels",
           "rotation_ccw", "MAX_PACKET_ERRORS"]
