"""The driver: plan what is left, score it, write rows, stop cleanly.

1. Open DIR (lock, remove temporary files, adopt parts the ledger missed) and read what is committed.
2. Read the manifest; each row's dimensions minus those committed for this judge is its work.
3. Score: read and hash each video, share calls between identical videos (dedupe.py), keep at most
   `concurrency` videos in flight so the pipeline's batchers see many at once.
4. Every result becomes rows (rows.py) in the current part; a part is committed every `part_rows`
   rows or `part_seconds` seconds (dataset.py).
5. On SIGINT no new video starts; those in flight finish, the part is committed, the run ends.

`Run` holds steps 1, 2, 4 and the summary; the local loop (`drive`) and the Ray runner share it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from vidjudge.client.rescore import manifest as mf
from vidjudge.client.rescore.dataset import OutputDir, PartBuffer
from vidjudge.client.rescore.dedupe import Deduper, content_sha256, job_key
from vidjudge.client.rescore.progress import Reporter, Summary
from vidjudge.client.rescore.rows import error_fields, item_rows, result_fields, run_fields, vidjudge_version
from vidjudge.client.rescore.sources import read_bytes
from vidjudge.client.rescore.types import TRANSIENT_CODES, Item, Job, JudgeInfo, Scorer, status_name
from vidjudge.errors import InternalError, InvalidRequest, VidjudgeError

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    manifest: str
    out: Path
    fmt: str | None = None
    dimensions: tuple[str, ...] = ()
    concurrency: int = 16
    part_rows: int = 1000
    part_seconds: float = 60.0
    max_video_mb: int = 64
    plain_inputs: tuple[str, ...] = mf.DEFAULT_INPUTS
    argv: list[str] = field(default_factory=list)

    @property
    def max_bytes(self) -> int:
        return self.max_video_mb * 1024 * 1024


@dataclass
class Outcome:
    """One call's result as result columns, or the error that ended it."""

    fields: list[dict] | None = None
    error: VidjudgeError | None = None
    unexpected: bool = False  # an exception of the runner itself, not a verdict of the judge

    @property
    def transient(self) -> bool:
        """Not committed (the next run tries again): the judge was full or away, or the runner failed."""
        return self.error is not None and (self.unexpected or status_name(self.error.code) in TRANSIENT_CODES)


class Run:
    """One rescore run over DIR: the output, the plan, the summary; the scoring loop is elsewhere."""

    def __init__(self, opts: RunOptions, mode: str, reporter: Reporter):
        self.opts = opts
        self.mode = mode
        self.reporter = reporter
        self.run_id = uuid.uuid4().hex[:12]
        self.version = vidjudge_version()
        self.out = OutputDir(opts.out)
        self.summary = Summary(mode=mode, out=str(opts.out))
        self.judge: JudgeInfo | None = None
        self.buffer = PartBuffer(self.out, self.run_id, opts.part_rows, opts.part_seconds)
        self._t0 = time.monotonic()
        self._scoring_t0: float | None = None

    def start_scoring(self, description: str = "rescoring") -> None:
        """The plan is made and the judge loaded: from here on the run is timed as scoring."""
        self._scoring_t0 = time.monotonic()
        self.reporter.start(self.summary.to_score, description)

    def open(self) -> None:
        rec = self.out.open()
        self.summary.recovered = {k: v for k, v in vars(rec).items() if v}

    def plan(self, table, judge: JudgeInfo) -> list[Item]:
        """Items with work left for `judge` (the manifest `table` is normalized, see manifest.py)."""
        unknown = [d for d in self.opts.dimensions if d not in judge.dimensions]
        if unknown:
            raise InvalidRequest(f"unknown dimension(s) {', '.join(unknown)} for {judge.name} "
                                 f"(it has {', '.join(judge.dimensions)})", reason="unknown_dimension")
        self.judge = judge
        committed = self.out.committed(judge.checksum)
        items, skipped = mf.plan(table, judge, self.opts.dimensions, committed)
        s = self.summary
        s.bundle, s.bundle_sha256 = judge.name, judge.checksum
        s.manifest_videos, s.skipped_done, s.to_score = table.num_rows, skipped, len(items)
        self.out.record_run({"run_id": self.run_id, "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             "host": socket.gethostname(), "pid": os.getpid(), "mode": self.mode,
                             "bundle": judge.name, "bundle_sha256": judge.checksum, "vidjudge_version": self.version,
                             "manifest": self.opts.manifest, "argv": self.opts.argv, "to_score": len(items),
                             "skipped_done": skipped})
        return items

    # -- results in, rows out ---------------------------------------------------------------------
    def emit(self, item: Item, fields: list[dict], *, video_sha256: str | None, video_bytes: int | None,
             deduplicated: bool) -> None:
        assert self.judge is not None
        run = run_fields(video_sha256=video_sha256, video_bytes=video_bytes, deduplicated=deduplicated,
                         bundle=self.judge.name, bundle_sha256=self.judge.checksum, mode=self.mode,
                         run_id=self.run_id, version=self.version)
        rows = item_rows(item, fields, run)
        got = {r["dimension"] for r in rows}
        # A judge that answered fewer dimensions than asked: say so in a row rather than lose the key.
        missing = [d for d in item.dimensions if d not in got]
        if missing:
            err = InternalError(f"the judge returned no result for {', '.join(missing)}", reason="missing_result")
            rows += item_rows(item, error_fields(err, missing), run)
        self.buffer.add(rows)
        s = self.summary
        s.scored += 1
        s.deduplicated += int(deduplicated)
        for r in rows:
            if r["status"] == "OK":
                s.rows_ok += 1
            else:
                s.rows_failed[f"{r['status']}/{r['reason']}"] += 1
        self.reporter.advance()
        self.maybe_commit()

    def leave(self, item: Item, error: Exception) -> None:
        """A transient failure: nothing is committed, so the next run scores this video again."""
        self.summary.left_for_next_run += 1
        self.summary.transient[f"{status_name(error.code)}/{getattr(error, 'reason', '')}"] += 1
        self.reporter.advance()

    def maybe_commit(self) -> None:
        if self.buffer.due():
            self.commit()

    def commit(self) -> None:
        rec = self.buffer.flush()
        if rec is not None:
            self.summary.parts += 1
            self.summary.rows_committed += rec.rows

    def close(self, interrupted: bool = False) -> Summary:
        try:
            self.commit()
        finally:
            self.out.close()
        self.summary.interrupted = interrupted
        now = time.monotonic()
        self.summary.elapsed_s = now - self._t0
        self.summary.scoring_s = now - self._scoring_t0 if self._scoring_t0 is not None else 0.0
        return self.summary


async def _call(scorer: Scorer, job: Job) -> Outcome:
    try:
        return Outcome(fields=result_fields(*await scorer.score(job)))
    except VidjudgeError as e:
        if getattr(e, "scored_by", None) is None:
            e.scored_by = getattr(scorer, "name", None)
        return Outcome(error=e)
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - the run goes on; this video is left for the next run
        # Not the judge's verdict but a failure on this side: committing it would keep it out of every
        # later run. Left uncommitted, it shows in the summary and the next run tries again.
        log.warning("unexpected error scoring %s: %s: %s", job.key[:12], type(e).__name__, e,
                    exc_info=log.isEnabledFor(logging.DEBUG))
        return Outcome(error=InternalError(f"unexpected {type(e).__name__}: {e}", reason="unexpected"),
                       unexpected=True)


async def drive(run: Run, items: list[Item], scorer: Scorer, stop: asyncio.Event, concurrency: int) -> None:
    """Score `items` with at most `concurrency` videos read or in the judge at once."""
    judge = run.judge
    assert judge is not None
    slots = asyncio.Semaphore(concurrency)
    dedupe = Deduper()

    def deliver(it: Item, outcome: Outcome, sha: str, size: int, shared: bool) -> None:
        if outcome.transient:
            run.leave(it, outcome.error)
        else:
            fields = outcome.fields if outcome.error is None else error_fields(
                outcome.error, it.dimensions, getattr(outcome.error, "scored_by", None))
            run.emit(it, fields, video_sha256=sha, video_bytes=size, deduplicated=shared)

    async def one(item: Item) -> None:
        try:
            try:
                data = await asyncio.to_thread(read_bytes, item.path, run.opts.max_bytes)
            except VidjudgeError as e:
                run.emit(item, error_fields(e, item.dimensions), video_sha256=None, video_bytes=None,
                         deduplicated=False)
                return
            sha, size = await asyncio.to_thread(content_sha256, data), len(data)
            key = job_key(sha, item, judge)
            claim = dedupe.claim(key, item)
            if claim.cached is not None:
                deliver(item, claim.cached, sha, size, True)
                return
            if not claim.first:
                return  # an identical video is in the judge now; its call writes this row too
            run.summary.calls += 1
            outcome = await _call(scorer, Job(key=key, data=data, prompt=item.prompt, dimensions=item.dimensions,
                                              inputs=item.inputs, video_sha256=sha))
            del data  # the bytes are the run's memory: let them go before the rows are written
            for it, shared in [(item, False), *((w, True) for w in dedupe.finish(key, outcome, not outcome.transient))]:
                deliver(it, outcome, sha, size, shared)
        finally:
            slots.release()

    async def ticker() -> None:
        # Parts are also committed on time, so a slow run loses at most part_seconds of work to a kill.
        while True:
            await asyncio.sleep(min(1.0, run.opts.part_seconds))
            run.maybe_commit()

    tick = asyncio.create_task(ticker())
    tasks: set[asyncio.Task] = set()
    try:
        for item in items:
            await slots.acquire()
            if stop.is_set():
                slots.release()
                break
            t = asyncio.create_task(one(item))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*list(tasks))
    finally:
        tick.cancel()


__all__ = ["Run", "RunOptions", "drive", "Outcome"]
