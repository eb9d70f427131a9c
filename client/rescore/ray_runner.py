"""`vidjudge rescore --ray`: the same pipeline as Ray Data actors, the same output and exactly-once rule.

Three Ray Data passes, each streamed back to the driver, which alone plans and writes DIR:

1. the manifest, read as a Ray dataset and normalized on the cluster (manifest.normalize); the driver
   collects it to apply the skip rule and the one-id-one-video check;
2. the videos with work left, read and hashed by Ray tasks, so identical videos anywhere in the run
   become one job (the driver groups them by the same key as the local runner);
3. the jobs, scored by an actor pool (`map_batches` with `RayPipelineActor`, one loaded pipeline per
   actor: one GPU each, or `cpus_per_actor` CPUs); the driver turns their result columns into rows for
   every manifest row of the job and commits parts as the local runner does.

Videos are read twice (hash, then score): the price of deduping across a cluster before scoring.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from vidjudge.client.rescore import manifest as mf
from vidjudge.client.rescore import sources
from vidjudge.client.rescore.dedupe import content_sha256, job_key
from vidjudge.client.rescore.run import Outcome, Run
from vidjudge.client.rescore.types import TRANSIENT_CODES, Item
from vidjudge.errors import VidjudgeError, error_from_status

log = logging.getLogger(__name__)

HASH_SCHEMA = pa.schema([("id", pa.string()), ("video_sha256", pa.string()), ("video_bytes", pa.int64()),
                         ("status", pa.string()), ("reason", pa.string()), ("message", pa.string())])


@dataclass
class RayOptions:
    address: str | None = None  # None: start a local Ray instance; "auto", "HOST:6379" or "ray://HOST:10001"
    bundle: str = ""  # a path every node can read
    overrides: dict[str, Any] | None = None  # the resolved pipeline config, "section.field" -> value
    model: str = ""
    actors: int | None = None  # None: one per GPU, else one per `cpus_per_actor` CPUs
    cpus_per_actor: float = 4.0
    gpus_per_actor: float = 0.0  # 0: 1 when the cluster has GPUs
    batch_size: int = 16  # jobs per actor call, scored concurrently (so they batch in the pipeline)
    timeout: float | None = None
    local_cpus: int | None = None  # local instance only
    object_store_mb: int | None = None  # local instance only


def init_ray(opts: RayOptions) -> bool:
    """Connect to (or start) Ray; True when this call started it (then the caller shuts it down)."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phoning home (and no network here)
    started = not ray.is_initialized()
    if started:
        # Ray's INFO lines (instance started, each dataset executed) would bury the progress bar and summary.
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
        if opts.address:
            ray.init(address=opts.address, **kw)
        else:
            ray.init(num_cpus=opts.local_cpus,
                     object_store_memory=opts.object_store_mb * 1024 * 1024 if opts.object_store_mb else None, **kw)
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours is the one progress bar
    ctx.print_on_execution_start = False
    return started


def actor_resources(opts: RayOptions, cluster: dict) -> tuple[int, float, float]:
    """(actors, cpus each, gpus each): one per GPU when the cluster has GPUs, else one per N CPUs."""
    gpus = float(cluster.get("GPU", 0))
    gpus_each = opts.gpus_per_actor or (1.0 if gpus else 0.0)
    cpus_each = opts.cpus_per_actor
    if opts.actors:
        return opts.actors, cpus_each, gpus_each
    if gpus_each:
        return max(1, int(gpus // gpus_each)), cpus_each, gpus_each
    return max(1, int(float(cluster.get("CPU", 1)) // cpus_each)), cpus_each, 0.0


def read_manifest_ray(path: str, fmt: str | None, plain_inputs: tuple[str, ...]) -> pa.Table:
    """The manifest as a Ray dataset, normalized by the cluster, collected for planning."""
    import pyarrow.csv as pcsv
    import ray.data

    fmt = fmt or mf.detect_format(path)
    fs, inner = sources.filesystem(path)
    if fmt == "csv":
        ds = ray.data.read_csv(inner, filesystem=fs, file_extensions=None,
                               convert_options=pcsv.ConvertOptions(strings_can_be_null=True))
    elif fmt == "jsonl":
        ds = ray.data.read_json(inner, filesystem=fs, file_extensions=None)  # pyarrow.json: JSON lines
    else:
        ds = ray.data.read_parquet(inner, filesystem=fs, file_extensions=None)
    ds = ds.map_batches(mf.normalize, batch_format="pyarrow", batch_size=None,
                        fn_kwargs={"base": sources.parent(path), "plain_inputs": plain_inputs})
    blocks = list(ds.iter_batches(batch_format="pyarrow", batch_size=None))
    table = pa.concat_tables(blocks) if blocks else mf.normalize(pa.table({"path": pa.array([], pa.string())}))
    mf.check_unique_ids(table.column("id").to_pylist())
    return table


def hash_batch(batch: pa.Table, max_bytes: int) -> pa.Table:
    """Ray task: read and hash each video; a video that cannot be read gets its error instead."""
    out = []
    for vid, path in zip(batch.column("id").to_pylist(), batch.column("path").to_pylist()):
        try:
            data = sources.read_bytes(path, max_bytes)
            out.append({"id": vid, "video_sha256": content_sha256(data), "video_bytes": len(data)})
        except VidjudgeError as e:
            out.append({"id": vid, "status": e.code.name, "reason": e.reason, "message": e.message})
    return pa.Table.from_pylist(out, schema=HASH_SCHEMA)


def _chunks(table: pa.Table, rows: int) -> list[pa.Table]:
    return [table.slice(i, rows) for i in range(0, table.num_rows, rows)] or [table]


def score_on_ray(run: Run, items: list[Item], opts: RayOptions, stop: threading.Event) -> None:
    """Passes 2 and 3 (pass 1 is `read_manifest_ray`); rows go through `run` as in the local runner."""
    import ray
    import ray.data

    if not items:
        return
    judge = run.judge
    assert judge is not None
    by_id = {it.id: it for it in items}
    todo = pa.table({"id": [it.id for it in items], "path": [it.path for it in items]})

    # 2. Read and hash on the cluster; identical videos become one job.
    hashed = ray.data.from_arrow(_chunks(todo, 32)).map_batches(
        hash_batch, batch_format="pyarrow", batch_size=None, fn_kwargs={"max_bytes": run.opts.max_bytes})
    jobs: dict[str, list[Item]] = {}
    job_rows: list[dict] = []
    sizes: dict[str, tuple[str, int]] = {}
    for batch in hashed.iter_batches(batch_format="pyarrow", batch_size=None):
        for h in batch.to_pylist():
            item = by_id[h["id"]]
            if h["status"]:  # unreadable: its rows say why, as in the local runner
                run.emit(item, [{"dimension": d, "status": h["status"], "reason": h["reason"],
                                 "message": h["message"]} for d in item.dimensions],
                         video_sha256=None, video_bytes=None, deduplicated=False)
                continue
            key = job_key(h["video_sha256"], item, judge)
            sizes[key] = (h["video_sha256"], h["video_bytes"])
            if key not in jobs:
                jobs[key] = []
                job_rows.append({"job_key": key, "path": item.path, "prompt": item.prompt,
                                 "dimensions": list(item.dimensions), "inputs": json.dumps(item.inputs),
                                 "video_sha256": h["video_sha256"]})
            jobs[key].append(item)
        if stop.is_set():
            return
    if not job_rows:
        return
    run.summary.calls += len(job_rows)

    # 3. Score on the actor pool.
    actors, cpus, gpus = actor_resources(opts, ray.cluster_resources())
    run.reporter.describe(f"rescoring on Ray ({actors} actors)")
    job_table = pa.Table.from_pylist(job_rows, schema=pa.schema([
        ("job_key", pa.string()), ("path", pa.string()), ("prompt", pa.string()),
        ("dimensions", pa.list_(pa.string())), ("inputs", pa.string()), ("video_sha256", pa.string())]))
    from vidjudge.server.offline import RayPipelineActor

    # Dispatch only once every actor has loaded its pipeline: otherwise the first one ready takes the
    # first blocks queued and a short manifest never reaches the others.
    ray.data.DataContext.get_current().wait_for_min_actors_s = 1800
    # One block per actor call, small enough that every actor gets work on a short manifest.
    per_call = max(1, min(opts.batch_size, -(-job_table.num_rows // actors)))
    scored = ray.data.from_arrow(_chunks(job_table, per_call)).map_batches(
        RayPipelineActor, batch_format="pyarrow", batch_size=None,
        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus, num_gpus=gpus or None,
        fn_constructor_kwargs={"bundle": opts.bundle, "overrides": opts.overrides, "model": opts.model,
                               "concurrency": opts.batch_size, "max_bytes": run.opts.max_bytes,
                               "timeout": opts.timeout})
    pending: dict[str, list[dict]] = defaultdict(list)
    for batch in scored.iter_batches(batch_format="pyarrow", batch_size=None):
        for r in batch.to_pylist():
            key = r.pop("job_key")
            pending[key].append(r)
            items_of_job = jobs[key]
            if len(pending[key]) < len(items_of_job[0].dimensions):
                continue
            fields = pending.pop(key)
            sha, size = sizes[key]
            outcome = _outcome(fields)
            for n, it in enumerate(items_of_job):
                if outcome.transient:
                    run.leave(it, outcome.error)
                else:
                    run.emit(it, fields, video_sha256=sha, video_bytes=size, deduplicated=n > 0)
        if stop.is_set():
            return


def _code(name: str):
    import grpc

    return getattr(grpc.StatusCode, name, grpc.StatusCode.UNKNOWN)


def _outcome(fields: list[dict]) -> Outcome:
    """A job's rows as an Outcome: transient when the call failed with a transient status."""
    first = fields[0]
    unexpected = first["reason"] == "unexpected"
    if first["status"] in TRANSIENT_CODES or unexpected:
        return Outcome(error=error_from_status(_code(first["status"]), first["message"] or "", first["reason"]),
                       unexpected=unexpected)
    return Outcome(fields=fields)


__all__ = ["RayOptions", "init_ray", "read_manifest_ray", "score_on_ray", "hash_batch"]
