"""Test videos, good and bad, written for real with PyAV (vidjudge.export.samples).

Good files come straight from `write_video`; this module adds the bad inputs a
server meets (empty, random bytes, truncated, audio-only, huge dimensions) and
top-level `decode_fn`s that crash, hang or fail on purpose, for DecodePool tests
(they must be importable by name in a spawned worker, hence here).
"""

from __future__ import annotations

import ctypes
import os
import re
import time
from pathlib import Path

import numpy as np

from vidjudge.errors import InvalidVideo
from vidjudge.export.samples import write_audio_only, write_video
from vidjudge.server.decode import decode_video
from vidjudge.server.types import DecodedVideo, DecodeLimits, DecodeRequest, VideoSource

__all__ = [
    "zero_bytes",
    "random_bytes",
    "truncated_copy",
    "audio_only",
    "huge_dimensions",
    "vfr_video",
    "misbehaving_decode",
]


def zero_bytes(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def random_bytes(path: Path, size: int = 64 * 1024, seed: int = 0) -> Path:
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def truncated_copy(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    """The first `fraction` of `src`'s bytes, as a download cut short would leave it."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def audio_only(path: Path, duration_s: float = 1.0) -> Path:
    return write_audio_only(path, duration_s=duration_s)


def huge_dimensions(path: Path, width: int = 4112, height: int = 4112) -> Path:
    """A real one-frame video whose frames are larger than 4096x4096 (about 0.5 s to write)."""
    return write_video(path, codec="mpeg4", width=width, height=height, num_frames=1, fps=1,
                       pattern="brightness")


def vfr_video(path: Path, timestamps_s: list[float], **kwargs) -> Path:
    """A variable-frame-rate "counter" clip: frame i is shown at timestamps_s[i]."""
    kwargs.setdefault("width", 160)
    kwargs.setdefault("height", 32)
    return write_video(path, num_frames=len(timestamps_s), timestamps_s=timestamps_s, pattern="counter",
                       **kwargs)


def misbehaving_decode(source: VideoSource, request: DecodeRequest, limits: DecodeLimits,
                       hwaccel: str) -> DecodedVideo:
    """A `decode_fn` for DecodePool tests that misbehaves according to the file name.

    crash -> segfault (reads address 0); abort -> SIGABRT; exit -> os._exit(3);
    hang -> sleeps for an hour; slow -> sleeps 1 s (slow-<N>s: N s) then decodes; invalid -> raises
    InvalidVideo(reason="custom_reason"); typeerror -> raises TypeError;
    anything else decodes normally. Every call first appends its process id to a marker file
    `<name>.called` beside the video, so a test can tell whether (and in which workers, how many
    times) a task reached a worker.
    """
    name = source.path.name if source.path is not None else ""
    if source.path is not None:
        with open(source.path.with_name(name + ".called"), "a") as marker:
            marker.write(f"{os.getpid()}\n")
    if "crash" in name:
        ctypes.string_at(0)
    if "abort" in name:
        os.abort()
    if "exit" in name:
        os._exit(3)
    if "hang" in name:
        time.sleep(3600)
    if "slow" in name:
        seconds = re.search(r"slow-(\d+)s", name)
        time.sleep(float(seconds.group(1)) if seconds else 1.0)
    if "invalid" in name:
        raise InvalidVideo(f"{name} was refused on purpose", reason="custom_reason")
    if "typeerror" in name:
        raise TypeError("a bug in the decoder")
    return decode_video(source, request, limits, hwaccel)
