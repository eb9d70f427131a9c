"""Building a ScoreRequest from what a caller has: bytes, a local file, or a server-side path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence, Union

import grpc

from vidjudge.errors import KIND_METADATA_KEY, REASON_METADATA_KEY, VidjudgeError, error_from_status
from vidjudge.v1 import judge_pb2 as pb

VideoInput = Union[bytes, str, "os.PathLike[str]"]


Inputs = Mapping[str, Mapping[str, str]]  # dimension -> {"question": ...}


def build_request(video: VideoInput, *, prompt: str = "", dimensions: Sequence[str] = (), model: str = "",
                  server_path: bool = False, inputs: Inputs | None = None) -> pb.ScoreRequest:
    """bytes are sent inline; a path is read and sent inline, or named as is when `server_path`.
    `inputs`: per-dimension inputs, e.g. {"qa": {"question": "Is there a dog?"}}."""
    if isinstance(video, (bytes, bytearray, memoryview)):
        v = pb.Video(data=bytes(video))
    elif server_path:
        v = pb.Video(path=os.fspath(video))
    else:
        v = pb.Video(data=Path(video).read_bytes())
    return pb.ScoreRequest(model=model, video=v, prompt=prompt, dimensions=list(dimensions),
                           inputs={d: pb.DimensionInput(**values) for d, values in (inputs or {}).items()})


def build_group_request(videos: Sequence[tuple[str, str, VideoInput]], *, prompt: str = "",
                        dimensions: Sequence[str] = (), model: str = "", server_path: bool = False,
                        inputs: Inputs | None = None) -> pb.ScoreGroupRequest:
    """videos: (id, generator, video) triples; each video as for build_request."""
    return pb.ScoreGroupRequest(
        model=model, prompt=prompt, dimensions=list(dimensions),
        videos=[pb.GroupVideo(id=vid, generator=gen, video=build_request(v, server_path=server_path).video)
                for vid, gen, v in videos],
        inputs={d: pb.DimensionInput(**values) for d, values in (inputs or {}).items()})


def error_from_rpc(e: grpc.RpcError) -> VidjudgeError:
    """The typed error behind a failed call (reason from the trailing metadata)."""
    meta = dict(e.trailing_metadata() or ())
    return error_from_status(e.code(), e.details() or "", meta.get(REASON_METADATA_KEY), meta.get(KIND_METADATA_KEY))
