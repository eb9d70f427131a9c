"""Decode stage: video bytes or path -> sampled, upright, resized RGB frames.

`decode_video` runs in the calling process; `DecodePool` runs it in worker
processes that may crash (FFmpeg segfaults) or hang without harming the server.
"""

from vidjudge.server.decode.pool import DecodePool
from vidjudge.server.decode.pyav_decoder import decode_video

__all__ = ["decode_video", "DecodePool"]
