"""Decode stage: video bytes or path -> the named views a request asks for (sampled, upright frames).

`decode_video` runs in the calling process; `DecodePool` runs it in worker
processes that may crash (FFmpeg segfaults) or hang without harming the server.
Samplers (which frames) live in `sampling`, per-frame transforms (what each view
does to them) in `transforms`.
"""

from vidjudge.server.decode.pool import DecodePool
from vidjudge.server.decode.pyav_decoder import decode_video
from vidjudge.server.decode.sampling import SegmentCentres, UniformIndices
from vidjudge.server.decode.transforms import Native, Resize

__all__ = ["decode_video", "DecodePool", "SegmentCentres", "UniformIndices", "Resize", "Native"]
