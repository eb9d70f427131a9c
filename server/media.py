"""Where a request's video comes from: inline bytes, or a path inside allowed roots.

Paths are an attack surface (path escape, symlinks to /etc): a path is
resolved with symlinks followed and must land inside one of the operator's
allowed directories. No URLs are fetched.
"""

from __future__ import annotations

from pathlib import Path

from vidjudge.errors import InvalidRequest, InvalidVideo
from vidjudge.server.types import VideoSource


def resolve_path(raw: str, allowed: list[Path]) -> Path:
    if not allowed:
        raise InvalidRequest("this server accepts inline video bytes only (no allowed directories configured)",
                             reason="path_not_allowed")
    if "://" in raw:
        raise InvalidRequest("URLs are not fetched; send the bytes or a path", reason="path_not_allowed")
    p = Path(raw)
    if not p.is_absolute():
        p = allowed[0] / p
    try:
        real = p.resolve(strict=True)
    except (FileNotFoundError, RuntimeError, OSError):
        raise InvalidRequest(f"no such file: {raw}", reason="file_not_found") from None
    for root in allowed:
        if real.is_relative_to(root.resolve()):
            if not real.is_file():
                raise InvalidRequest(f"not a regular file: {raw}", reason="file_not_found")
            return real
    raise InvalidRequest(f"path {raw} is outside the allowed directories", reason="path_not_allowed")


def video_source(data: bytes | None, path: str | None, allowed: list[Path], max_bytes: int) -> VideoSource:
    if data is not None:
        if not data:
            raise InvalidVideo("the video is empty (0 bytes)", reason="empty_input")
        if len(data) > max_bytes:
            raise InvalidVideo(f"the video is {len(data)} bytes, over the server's {max_bytes}-byte limit",
                               reason="too_large")
        return VideoSource(data=data)
    if path:
        real = resolve_path(path, allowed)
        size = real.stat().st_size
        if size == 0:
            raise InvalidVideo(f"{path} is empty (0 bytes)", reason="empty_input")
        if size > max_bytes:
            raise InvalidVideo(f"{path} is {size} bytes, over the server's {max_bytes}-byte limit",
                               reason="too_large")
        return VideoSource(path=real)
    raise InvalidRequest("the request has no video (set video.data or video.path)", reason="empty_request")
