"""The packet index: one demux pass over the video stream, without decoding anything.

Demuxing costs microseconds per packet where decoding costs milliseconds per frame,
so the decoder reads every packet of the stream first and then knows, before it
decodes a single frame:

- how many frames the stream has (index targets need it; headers lie or say nothing:
  live WebM, Matroska, raw streams);
- each frame's number in presentation order: the packets' pts sorted, as decord
  numbers frames, so frame k is exactly the k-th frame shown;
- which packet holds which frame, and where the keyframes are, so it can decode only
  the groups of pictures that hold wanted frames, never a frame twice, and skip the
  non-reference frames nobody asked for;
- the duration, for headers that give none.

The packets themselves are kept (they are the file's bytes, already bounded by
``limits.max_bytes``) and fed to the decoder from memory: no second demux, no
container seek and none of the ways seeking goes wrong in some formats.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import av.error
import numpy as np

from vidjudge.errors import InvalidVideo

# Packets indexed per video, at most. Each costs ~0.3 KB besides its bytes, so a hostile
# file of tiny packets stays bounded; 250k is 69 minutes at 60 fps.
MAX_PACKETS = 250_000


@dataclass
class PacketIndex:
    """A stream's packets in decode (file) order, and its frames in presentation order."""

    packets: list[Any]  # av.Packet, decode order, empty packets left out
    pts: list[int | None]
    durations: list[int]
    keyframes: list[int]  # decode indices of the packets flagged as keyframes, ascending
    discard: list[bool]  # packets the demuxer marks to be decoded but never shown (edit lists)
    first_error: str | None  # why demuxing stopped before the end (truncated, unreadable), else None
    # Presentation order, known when every shown packet has a distinct pts (None otherwise:
    # raw elementary streams, broken timestamps): frame k's pts and the packet holding it.
    frame_pts: np.ndarray | None = None  # (N,) int64, ascending
    frame_packet: np.ndarray | None = None  # (N,) int64 decode indices

    @property
    def num_frames(self) -> int:
        """Frames in the stream: the shown packets, one frame each."""
        if self.frame_pts is not None:
            return int(self.frame_pts.size)
        return sum(1 for d in self.discard if not d)

    @property
    def has_timestamps(self) -> bool:
        return self.frame_pts is not None

    def duration_s(self, time_base: Fraction | None, step_s: float) -> float | None:
        """Duration from the packets alone, for headers that give none: the span of their
        timestamps; failing that their summed durations; failing that their count times the
        nominal frame interval (`step_s`, the interval given to frames without timestamps, so
        targets and frame times agree). None when there are no packets."""
        if not self.packets:
            return None
        stamped = [(p, d) for p, d in zip(self.pts, self.durations) if p is not None]
        if time_base is not None and stamped:
            lo = min(p for p, _ in stamped)
            hi = max(p + d for p, d in stamped)
            if hi > lo:
                return float((hi - lo) * time_base)
        summed = sum(self.durations)
        if time_base is not None and summed > 0:
            return float(summed * time_base)
        return len(self.packets) * step_s


def read_packet_index(container, stream, name: str, max_packets: int = MAX_PACKETS) -> PacketIndex:
    """Demux every packet of `stream` (nothing is decoded). Unreadable data ends the index
    where it starts (a truncated download keeps its intact beginning); more than
    `max_packets` packets is refused as ``too_many_frames``."""
    index = PacketIndex(packets=[], pts=[], durations=[], keyframes=[], discard=[], first_error=None)
    demux = container.demux(stream)
    while True:
        try:
            packet = next(demux)
        except StopIteration:
            break
        except (av.error.FFmpegError, OSError, ValueError) as e:
            index.first_error = getattr(e, "strerror", None) or str(e) or type(e).__name__
            break
        if packet.size == 0:
            continue  # PyAV's end-of-stream marker, not data
        if len(index.packets) >= max_packets:
            raise InvalidVideo(f"{name} has more than {max_packets} frames", reason="too_many_frames")
        if packet.is_keyframe:
            index.keyframes.append(len(index.packets))
        index.packets.append(packet)
        index.pts.append(packet.pts)
        index.durations.append(packet.duration or 0)
        index.discard.append(bool(packet.is_discard))
    _order_frames(index)
    return index


def _order_frames(index: PacketIndex) -> None:
    """Presentation order from the pts of the shown packets, when they all have a distinct one."""
    shown = [i for i, d in enumerate(index.discard) if not d]
    stamps = [index.pts[i] for i in shown]
    if not shown or any(p is None for p in stamps):
        return
    pts = np.asarray(stamps, dtype=np.int64)
    order = np.argsort(pts, kind="stable")
    sorted_pts = pts[order]
    if sorted_pts.size > 1 and np.any(np.diff(sorted_pts) == 0):
        return  # two frames claim one instant: pts cannot tell them apart
    index.frame_pts = sorted_pts
    index.frame_packet = np.asarray(shown, dtype=np.int64)[order]


__all__ = ["PacketIndex", "read_packet_index", "MAX_PACKETS"]
