"""Open a local path or a URI: pyarrow.fs for the filesystems it knows (local, s3, gs, hdfs, ...),
fsspec for the rest (http, memory, and whatever fsspec plugins are installed).

Failures to read a video become the same typed errors the server raises for a bad path, so a
missing file gives the same row in-process, over gRPC and on Ray.
"""

from __future__ import annotations

import posixpath
from functools import lru_cache
from pathlib import Path

from vidjudge.errors import InvalidRequest, InvalidVideo


def has_scheme(path: str) -> bool:
    return "://" in path


def resolve(path: str, base: str | None) -> str:
    """A manifest path relative to the manifest's own location (a directory or URI prefix)."""
    if not base or has_scheme(path) or Path(path).is_absolute():
        return path
    if has_scheme(base):
        return posixpath.join(base, path)
    return str(Path(base) / path)


def parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if has_scheme(path) else str(Path(path).resolve().parent)


@lru_cache(maxsize=64)
def _filesystem_for(prefix: str):
    """The pyarrow filesystem for a URI's scheme and authority (cached: S3 clients are costly to build)."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(prefix)[0]
    except (pa.ArrowInvalid, ValueError, OSError):
        import fsspec

        fs, _ = fsspec.core.url_to_fs(prefix)
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def filesystem(path: str):
    """(pyarrow FileSystem, path inside it) for a local path or URI."""
    import pyarrow.fs as pafs

    if not has_scheme(path):
        return pafs.LocalFileSystem(), str(Path(path).resolve())
    scheme, rest = path.split("://", 1)
    authority = rest.split("/", 1)[0]
    fs = _filesystem_for(f"{scheme}://{authority}")
    if isinstance(fs, pafs.PyFileSystem):
        return fs, path  # fsspec takes the whole URL
    return fs, pafs.FileSystem.from_uri(path)[1]


def read_bytes(path: str, max_bytes: int) -> bytes:
    """The whole file, or InvalidRequest(file_not_found) / InvalidVideo(empty_input | too_large)."""
    import pyarrow.fs as pafs

    try:
        if not has_scheme(path):
            p = Path(path)
            size = p.stat().st_size
            if not p.is_file():
                raise IsADirectoryError(path)
            _check_size(path, size, max_bytes)
            return p.read_bytes()
        fs, inner = filesystem(path)
        info = fs.get_file_info(inner)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(path)
        if info.type != pafs.FileType.File:
            raise IsADirectoryError(path)
        if info.size is not None:
            _check_size(path, info.size, max_bytes)
        with fs.open_input_stream(inner, compression=None) as f:
            data = f.read(max_bytes + 1)
        _check_size(path, len(data), max_bytes)
        return data
    except (InvalidRequest, InvalidVideo):
        raise
    except FileNotFoundError:
        raise InvalidRequest(f"no such file: {path}", reason="file_not_found") from None
    except IsADirectoryError:
        raise InvalidRequest(f"not a regular file: {path}", reason="file_not_found") from None
    except (OSError, ValueError) as e:  # permissions, network, a scheme nobody handles
        raise InvalidRequest(f"cannot read {path}: {e}", reason="unreadable") from None


def _check_size(path: str, size: int, max_bytes: int) -> None:
    if size == 0:
        raise InvalidVideo(f"{path} is empty (0 bytes)", reason="empty_input")
    if size > max_bytes:
        raise InvalidVideo(f"{path} is {size} bytes, over the {max_bytes}-byte limit (--max-video-mb)",
                           reason="too_large")
