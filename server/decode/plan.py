"""Which packets to decode, given the frames wanted: never a frame twice, nothing past the last.

A wanted frame (by presentation order) is decodable from the last keyframe, in decode
order, at or before its packet whose pts is not after its own (open GOPs: leading
pictures shown before a keyframe but stored after it need the keyframe before).
Each wanted frame thus needs one contiguous run of packets; overlapping or touching
runs merge. Between runs the decoder jumps: it never decodes what lies between, and
only jumps forward, so no frame is decoded twice; after the last wanted frame's
packet it stops.

Inside a run, packets whose frame nobody wants may be decoded with FFmpeg's
``skip_frame = NONREF``: a frame that is no other frame's reference is then not
decoded at all, and the frames that are references decode exactly as before.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from vidjudge.server.decode.packets import PacketIndex


@dataclass(frozen=True)
class DecodePlan:
    runs: tuple[tuple[int, int], ...]  # inclusive decode-index ranges, ascending, disjoint, not touching
    wanted_packets: frozenset[int]  # decode indices of the packets holding wanted frames (never skipped)
    frame_of_pts: dict[int, int]  # pts -> presentation index, for every frame of the stream

    @property
    def last_packet(self) -> int:
        return self.runs[-1][1] if self.runs else -1


def run_start(index: PacketIndex, packet: int, pts: int) -> int:
    """Decode index to start from so that the frame in `packet` (shown at `pts`) decodes."""
    keys = index.keyframes
    j = bisect.bisect_right(keys, packet) - 1
    while j >= 0:
        k = keys[j]
        if index.pts[k] is not None and index.pts[k] <= pts:
            return k
        j -= 1
    return 0  # no usable keyframe before it: from the first packet, as a plain decode would


def make_plan(index: PacketIndex, wanted_frames: set[int] | frozenset[int], *, seek: bool = True) -> DecodePlan:
    """Runs of packets covering `wanted_frames` (presentation indices; the index must have timestamps).

    seek=False decodes every packet from the first up to the last wanted one (the reference
    path the planned one is tested against)."""
    assert index.frame_pts is not None and index.frame_packet is not None
    wanted_packets = frozenset(int(index.frame_packet[k]) for k in wanted_frames)
    frame_of_pts = {int(p): k for k, p in enumerate(index.frame_pts.tolist())}
    if not wanted_frames:
        return DecodePlan((), wanted_packets, frame_of_pts)
    if not seek:
        return DecodePlan(((0, max(wanted_packets)),), wanted_packets, frame_of_pts)
    spans = sorted((run_start(index, int(index.frame_packet[k]), int(index.frame_pts[k])), int(index.frame_packet[k]))
                   for k in wanted_frames)
    runs: list[list[int]] = []
    for a, b in spans:
        if runs and a <= runs[-1][1] + 1:
            runs[-1][1] = max(runs[-1][1], b)
        else:
            runs.append([a, b])
    return DecodePlan(tuple((a, b) for a, b in runs), wanted_packets, frame_of_pts)


__all__ = ["DecodePlan", "make_plan", "run_start"]
