"""The output rows: one per (id, dimension). Schema and the one result -> row conversion live here.

A row is three groups of columns:
  item    what the manifest said (id, path, prompt, generator)
  result  what the judge said for one dimension (score, status, levels, answer, timings, video facts)
  run     which judge and which run produced it (bundle, its checksum, content hash, version)

`result_fields` is the only place a judge's result becomes columns. It takes the in-process
pipeline's ScoreResult (vidjudge.server.pipeline) and the gRPC client's (vidjudge.client.types)
alike, and reads fields that newer judges add (head, answer, rationale) when they are there.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import Any, Iterable

import pyarrow as pa

from vidjudge.client.rescore.types import Item, status_name

STAGES = ("queue_s", "decode_s", "preprocess_s", "encode_s", "llm_s", "total_s")
VIDEO_FACTS = ("width", "height", "duration_s", "avg_fps", "codec", "decoder")

ITEM_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("dimension", pa.string(), nullable=False),
    pa.field("path", pa.string()),
    pa.field("prompt", pa.string()),
    pa.field("generator", pa.string()),
])

RESULT_SCHEMA = pa.schema([
    pa.field("score", pa.float64()),
    pa.field("status", pa.string(), nullable=False),  # "OK" or the gRPC status name
    pa.field("reason", pa.string()),
    pa.field("message", pa.string()),
    pa.field("scale_min", pa.float64()),
    pa.field("scale_max", pa.float64()),
    pa.field("levels", pa.list_(pa.string())),
    pa.field("probabilities", pa.list_(pa.float64())),
    pa.field("head", pa.string()),
    pa.field("answer", pa.string()),
    pa.field("answer_probability", pa.float64()),
    pa.field("rationale", pa.string()),
    *[pa.field(s, pa.float64()) for s in STAGES],
    pa.field("video_width", pa.int32()),
    pa.field("video_height", pa.int32()),
    pa.field("video_duration_s", pa.float64()),
    pa.field("video_avg_fps", pa.float64()),
    pa.field("video_codec", pa.string()),
    pa.field("video_decoder", pa.string()),
    pa.field("scored_by", pa.string()),  # server address, or host:pid of the process that ran the pipeline
])

RUN_SCHEMA = pa.schema([
    pa.field("video_sha256", pa.string()),
    pa.field("video_bytes", pa.int64()),
    pa.field("deduplicated", pa.bool_()),  # the score was computed once for an identical earlier video
    pa.field("bundle", pa.string()),
    pa.field("bundle_sha256", pa.string(), nullable=False),
    pa.field("mode", pa.string()),  # bundle | server | ray
    pa.field("run_id", pa.string()),
    pa.field("vidjudge_version", pa.string()),
    pa.field("scored_at", pa.timestamp("ms", tz="UTC")),
])

SCHEMA = pa.schema([*ITEM_SCHEMA, *RESULT_SCHEMA, *RUN_SCHEMA])
KEY_COLUMNS = ("id", "dimension", "bundle_sha256")


def _as_mapping(obj: Any) -> Mapping:
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return obj
    if is_dataclass(obj):
        return asdict(obj)
    return vars(obj)


def _levels(s: Any) -> tuple[list[str], list[float]]:
    levels = getattr(s, "levels", None) or []
    if isinstance(levels, Mapping):  # client: {level: probability}
        return list(levels), [float(p) for p in levels.values()]
    return list(levels), [float(p) for p in getattr(s, "probabilities", None) or []]


def _none_if_empty(v: Any) -> Any:
    return None if v in ("", None) else v


def result_fields(result: Any, scored_by: str | None = None) -> list[dict]:
    """A judge's result as the result columns of each of its dimensions (one dict per dimension)."""
    scores = result.scores.values() if isinstance(result.scores, Mapping) else result.scores
    timings = _as_mapping(getattr(result, "timings", None))
    video = _as_mapping(getattr(result, "video", None))
    shared = {s: float(timings[s]) if s in timings else None for s in STAGES}
    shared.update({f"video_{k}": _none_if_empty(video.get(k)) for k in VIDEO_FACTS})
    shared["scored_by"] = scored_by
    out = []
    for s in scores:
        levels, probs = _levels(s)
        prob = getattr(s, "answer_probability", None)
        out.append({
            "dimension": s.dimension, "score": float(s.score), "status": "OK", "reason": None, "message": None,
            "scale_min": float(s.scale_min), "scale_max": float(s.scale_max),
            "levels": levels, "probabilities": probs,
            "head": _none_if_empty(getattr(s, "head", None)),
            "answer": _none_if_empty(getattr(s, "answer", None)),
            "answer_probability": float(prob) if prob is not None and _none_if_empty(getattr(s, "answer", None))
            else None,
            "rationale": _none_if_empty(getattr(s, "rationale", None)),
            **shared,
        })
    return out


def error_fields(error: Exception, dimensions: Iterable[str], scored_by: str | None = None) -> list[dict]:
    """The result columns of a failed call: its status, reason and message on each dimension asked for."""
    code = status_name(getattr(error, "code", "INTERNAL"))
    reason = getattr(error, "reason", None) or "internal"
    message = getattr(error, "message", None) or str(error)
    return [{"dimension": d, "status": code, "reason": reason, "message": message, "scored_by": scored_by}
            for d in dimensions]


def item_rows(item: Item, fields: list[dict], run: Mapping[str, Any]) -> list[dict]:
    """Full rows for one manifest item: its columns + one dimension's result + the run's columns.

    Only the dimensions the item still needs are kept (a shared result may hold more)."""
    wanted = set(item.dimensions)
    base = {"id": item.id, "path": item.path, "prompt": item.prompt or None, "generator": item.generator or None}
    return [{**base, **f, **run} for f in fields if f["dimension"] in wanted]


def run_fields(*, video_sha256: str | None, video_bytes: int | None, deduplicated: bool, bundle: str,
               bundle_sha256: str, mode: str, run_id: str, version: str) -> dict:
    return {"video_sha256": video_sha256, "video_bytes": video_bytes, "deduplicated": deduplicated,
            "bundle": bundle, "bundle_sha256": bundle_sha256, "mode": mode, "run_id": run_id,
            "vidjudge_version": version, "scored_at": int(time.time() * 1000)}


def to_table(rows: list[dict], schema: pa.Schema = SCHEMA) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


def process_name() -> str:
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def vidjudge_version() -> str:
    try:
        from importlib.metadata import version

        return version("vidjudge")
    except Exception:  # noqa: BLE001 - running from a source tree without metadata
        from vidjudge import __version__

        return __version__
