"""Offline scoring with the server's own pipeline, no gRPC: in-process, and as Ray Data actors.

This is the one module of the rescore feature that imports server code. It depends only on the
pipeline's stable entry points: `build_pipeline(config)`, `await pipeline.score(ScoreRequestData)`,
`pipeline.runners[name].bundle` and `pipeline.close()`.

- `InProcessScorer`: `vidjudge rescore --bundle DIR`. The driver awaits `score` for many videos at
  once on one event loop (bounded by its concurrency), so the encoder and scorer batch across
  videos exactly as they do behind the server.
- `RayPipelineActor`: `vidjudge rescore --ray`. A callable class for `Dataset.map_batches`: each actor
  loads the pipeline once and scores every batch it is given concurrently, on an event loop of its
  own, returning one row of result columns per (job, dimension).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

from vidjudge.client.rescore.rows import process_name
from vidjudge.client.rescore.types import DimensionSpec, Job, JudgeInfo
from vidjudge.errors import InternalError, ModelNotFound, VidjudgeError
from vidjudge.server.app import build_pipeline
from vidjudge.server.config import Config, load_config
from vidjudge.server.pipeline import ScoreRequestData

log = logging.getLogger(__name__)

def judge_info(bundle) -> JudgeInfo:
    """Name, identity (manifest + dimension file checksum) and dimensions of a loaded bundle (what the
    rescore driver plans with)."""
    dims = {name: DimensionSpec(name, d.requires_prompt, tuple(d.inputs)) for name, d in bundle.dimensions.items()}
    return JudgeInfo(name=bundle.name, checksum=bundle.sha256, dimensions=dims)


def rescore_config(bundle: str | Path, overrides: list[str] | dict[str, Any] | None = None,
                   config_file: str | Path | None = None, env: dict[str, str] | None = None,
                   concurrency: int = 16) -> Config:
    """The pipeline's config for offline use: defaults < TOML file < VIDJUDGE_* env < overrides (as
    `vidjudge serve`), this bundle only, and admission room for every video the driver keeps in flight
    (offline there is no one else to admit)."""
    cfg = load_config(config_file, env=env, overrides=overrides)
    cfg.server.bundles = [Path(bundle)]
    if cfg.admission.max_in_flight < concurrency:
        cfg.admission.max_in_flight = concurrency
    return cfg


class InProcessScorer:
    mode = "bundle"

    def __init__(self, config: Config, model: str = "", timeout: float | None = None):
        self.pipeline = build_pipeline(config)
        self.model = model or self.pipeline.default_model
        runner = self.pipeline.runners.get(self.model)
        if runner is None:
            self.pipeline.close()
            raise ModelNotFound(f"no model named '{self.model}' (loaded: {', '.join(self.pipeline.runners)})")
        self.info = judge_info(runner.bundle)
        self.timeout = timeout
        self.name = process_name()

    def request(self, job: Job) -> ScoreRequestData:
        return ScoreRequestData(model=self.model, data=job.data, prompt=job.prompt, dimensions=job.dimensions,
                                deadline=time.monotonic() + self.timeout if self.timeout else None,
                                inputs=job.inputs or {})

    async def score(self, job: Job):
        return await self.pipeline.score(self.request(job)), self.name

    async def aclose(self) -> None:
        self.pipeline.close()

    def close(self) -> None:
        self.pipeline.close()


class RayPipelineActor:
    """`ds.map_batches(RayPipelineActor, fn_constructor_kwargs=..., compute=ActorPoolStrategy(size=N))`.

    Input batch (pyarrow): job_key, path, prompt, dimensions (list<string>), inputs (JSON), video_sha256.
    Output (pyarrow): job_key + the result columns of `vidjudge.client.rescore.rows` per dimension.
    """

    def __init__(self, bundle: str, overrides: dict[str, Any] | None = None, model: str = "",
                 concurrency: int = 16, max_bytes: int = 64 << 20, timeout: float | None = None):
        # `overrides` is the driver's whole resolved config (flat_config): every node runs the same
        # settings, whatever VIDJUDGE_* variables its environment holds.
        cfg = rescore_config(bundle, overrides, env={}, concurrency=concurrency)
        self.scorer = InProcessScorer(cfg, model=model, timeout=timeout)
        self.concurrency = concurrency
        self.max_bytes = max_bytes
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vidjudge-ray-actor", daemon=True)
        self._thread.start()

    def __call__(self, batch):
        import pyarrow as pa

        from vidjudge.client.rescore.rows import RESULT_SCHEMA

        rows = asyncio.run_coroutine_threadsafe(self._score_all(batch.to_pylist()), self._loop).result()
        schema = pa.schema([pa.field("job_key", pa.string()), pa.field("dimension", pa.string()), *RESULT_SCHEMA])
        return pa.Table.from_pylist(rows, schema=schema)

    async def _score_all(self, jobs: list[dict]) -> list[dict]:
        sem = asyncio.Semaphore(self.concurrency)
        out = await asyncio.gather(*(self._score_one(j, sem) for j in jobs))
        return [row for rows in out for row in rows]

    async def _score_one(self, j: dict, sem: asyncio.Semaphore) -> list[dict]:
        import json

        from vidjudge.client.rescore.rows import error_fields, result_fields
        from vidjudge.client.rescore.sources import read_bytes

        dims = tuple(j["dimensions"])
        async with sem:
            try:
                data = await asyncio.to_thread(read_bytes, j["path"], self.max_bytes)
                job = Job(key=j["job_key"], data=data, prompt=j["prompt"] or "", dimensions=dims,
                          inputs=json.loads(j["inputs"] or "{}"), video_sha256=j["video_sha256"])
                fields = result_fields(*await self.scorer.score(job))
            except VidjudgeError as e:
                fields = error_fields(e, dims, self.scorer.name)
            except Exception as e:  # noqa: BLE001 - one bad video must not fail the whole batch
                # reason "unexpected": the driver leaves it for the next run instead of committing it.
                log.exception("unexpected error scoring %s", j["path"])
                fields = error_fields(InternalError(f"unexpected {type(e).__name__}: {e}", reason="unexpected"),
                                      dims, self.scorer.name)
        return [{"job_key": j["job_key"], **f} for f in fields]

    def __del__(self):
        try:
            self.scorer.close()
            self._loop.call_soon_threadsafe(self._loop.stop)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def bundle_judge_info(path: str | Path) -> JudgeInfo:
    """The judge a bundle directory holds, without loading its models (the driver plans before it loads,
    and loads nothing when every row is already committed). Checksums are verified by the pipeline."""
    from vidjudge.server.bundle import load_bundle

    return judge_info(load_bundle(path, verify=False))


def flat_config(cfg: Config) -> dict[str, Any]:
    """A Config as "section.field" -> value, to rebuild the same config on every Ray node."""
    return {f"{section}.{name}": value for section, fields in cfg.model_dump(mode="json").items()
            for name, value in fields.items()}
