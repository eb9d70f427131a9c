"""Python clients (sync and asyncio) for a vidjudge server, and the `vidjudge` command line.

The base install (`pip install vidjudge`) is enough for these: grpcio, protobuf, numpy.
"""

from vidjudge.client.aio import AsyncJudgeClient
from vidjudge.client.client import JudgeClient
from vidjudge.client.request import build_group_request, build_request
from vidjudge.client.retry import NO_RETRY, RetryPolicy
from vidjudge.client.types import DimensionInfo, DimensionScore, GroupItem, ModelInfo, ScoreResult, StreamResult

__all__ = ["AsyncJudgeClient", "JudgeClient", "RetryPolicy", "NO_RETRY", "build_request", "build_group_request",
           "GroupItem", "ScoreResult",
           "DimensionScore", "StreamResult", "ModelInfo", "DimensionInfo"]
