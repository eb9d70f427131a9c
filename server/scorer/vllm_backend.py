"""vLLM scorer: a vLLM engine inside the server process, fed our precomputed visual embeddings.

The engine runs through vLLM's async API (`AsyncLLM`): its front end lives on the
server's event loop and batches continuously across requests, so this backend
has no batcher of ours; the pipeline awaits `score_async` per (video, dimension).
The engine core runs in one child process (vLLM's design for the async API).

Per job: prompt = prefix ids + ONE video placeholder + suffix ids (vLLM expands
the placeholder to the video's tokens itself), multi-modal data = the encoder's
merged embeddings with grid_thw and second_per_grid_ts (without the latter vLLM
silently assumes 1 s per temporal group and the rotary positions change), and
`SamplingParams(max_tokens=1, temperature=0, logprob_token_ids=level ids)`: the
engine gathers the level ids' log-probs from the next-token log-softmax and
returns nothing else (no vocabulary-sized transfer, no top-k).

Cancelling the awaiting task (deadline, client gone) aborts the request in the
engine. CPU (no GPU) is for tests and development; the environment vLLM needs
there (DESIGN.md §5) is set when the engine is created, never at import.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidjudge.errors import InternalError, InvalidRequest, Overloaded, Unavailable
from vidjudge.server.config import ScorerConfig
from vidjudge.server.scorer.base import ScoreJob

log = logging.getLogger(__name__)
GiB = 1024**3

# Set (setdefault: the operator's values win) when the engine is created without a GPU.
CPU_ENV = {
    "VLLM_TARGET_DEVICE": "cpu",
    # The server has its own worker processes and threads; pinning OMP threads to cores would fight them.
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    # The engine core runs the model itself instead of starting one more worker process:
    # engine start ~10 s instead of ~25 s, and ~8x faster small batches on 2 cores (measured).
    # AsyncLLM always keeps its engine core in a child process regardless.
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
}


def gpu_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


@dataclass
class EngineStats:
    """What the engine core reports after each step: prefix-cache counters (tokens; summed since
    start), requests it finished, and its scheduler's running/waiting requests at the last step."""

    prefix_cache_requests: int = 0  # requests that looked up the prefix cache (i.e. were scheduled)
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    finished: int = 0
    running: int = 0
    waiting: int = 0


class EngineQueue:
    """Stands in for a BatchWorker where the pipeline reads the llm queue depth: unfinished engine requests."""

    def __init__(self, scorer: "VllmScorer"):
        self._scorer = scorer

    def depth(self) -> int:
        return self._scorer.num_unfinished()

    def close(self) -> None:
        pass


def _stats_logger_factory(stats: EngineStats):
    """A vLLM stat logger that only fills `stats` (vLLM's own loggers stay off: no log lines, no globals)."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class _Recorder(StatLoggerBase):
        def __init__(self, vllm_config, engine_index: int = 0):
            pass

        def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx: int = 0):
            if iteration_stats is not None:
                stats.finished += len(iteration_stats.finished_requests)
            if scheduler_stats is None:
                return
            p = scheduler_stats.prefix_cache_stats  # deltas since the last record
            stats.prefix_cache_requests += p.requests
            stats.prefix_cache_queries += p.queries
            stats.prefix_cache_hits += p.hits
            stats.running, stats.waiting = scheduler_stats.num_running_reqs, scheduler_stats.num_waiting_reqs

        def log_engine_initialized(self):
            pass

    return _Recorder


class VllmScorer:
    name = "vllm"

    def __init__(self, checkpoint_dir: Path, *, video_token_id: int, max_model_len: int, merge_size: int = 2,
                 config: ScorerConfig | None = None):
        if importlib.util.find_spec("vllm") is None:
            raise ImportError("the vllm package is not installed (GPU: pip install vllm; CPU: see the README)")
        # vLLM logs to stdout by default (read once, when vllm is first imported): a server's stdout belongs
        # to its own output (`vidjudge score --json`, the demo), logs go to stderr. The operator's value wins.
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
        self.config = config or ScorerConfig(backend="vllm")
        self.checkpoint_dir = Path(checkpoint_dir)
        self.video_token_id = video_token_id
        self.merge_size = merge_size
        self.max_model_len = max_model_len
        self.gpu = gpu_available()
        self.stats = EngineStats()
        self._engine = None
        self._own_thread: threading.Thread | None = None
        t0 = time.perf_counter()
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            # No running loop (scripts, benchmarks): the engine gets a loop thread of its own.
            self._loop = asyncio.new_event_loop()
            self._own_thread = threading.Thread(target=self._loop.run_forever, name="vidjudge-vllm", daemon=True)
            self._own_thread.start()
            try:
                asyncio.run_coroutine_threadsafe(self._start_on_loop(), self._loop).result()
            except BaseException:
                self.close()
                raise
        else:
            # Inside the server's loop: AsyncLLM binds its output handler to this loop.
            # Blocks the loop for the engine start, before the server serves anything.
            self._engine = self._create_engine()
        self.start_s = time.perf_counter() - t0
        log.info("vLLM engine ready in %.1fs (%s, dtype %s, max_model_len %d, prefix caching %s)",
                 self.start_s, "GPU" if self.gpu else "CPU", self._dtype(), max_model_len,
                 "on" if self.config.enable_prefix_caching else "off")

    async def _start_on_loop(self) -> None:
        self._engine = self._create_engine()

    # -- engine construction -------------------------------------------------------------
    def _dtype(self) -> str:
        if self.config.dtype != "auto":
            return self.config.dtype
        return "bfloat16" if self.gpu else "float32"  # float32 on CPU: parity with the reference

    def engine_args(self):
        from vllm.engine.arg_utils import AsyncEngineArgs

        c = self.config
        eager = (not self.gpu) if c.enforce_eager == "auto" else bool(c.enforce_eager)
        kwargs = dict(
            model=str(self.checkpoint_dir),
            dtype=self._dtype(),
            max_model_len=self.max_model_len,
            enable_mm_embeds=True,  # the engine takes our encoder's embeddings; its vision tower never runs
            limit_mm_per_prompt={"image": 0, "video": 1},
            enforce_eager=eager,
            enable_prefix_caching=c.enable_prefix_caching,
            disable_log_stats=True,  # no periodic log lines / Prometheus globals; our recorder still gets stats
            seed=0,
        )
        if self.gpu:
            kwargs["gpu_memory_utilization"] = c.gpu_memory_utilization
        else:
            kwargs["kv_cache_memory_bytes"] = int(c.cpu_kv_cache_gb * GiB)
        if c.max_num_batched_tokens:
            kwargs["max_num_batched_tokens"] = c.max_num_batched_tokens
        if c.max_num_seqs:
            kwargs["max_num_seqs"] = c.max_num_seqs
        if c.block_size:
            kwargs["block_size"] = c.block_size
        return AsyncEngineArgs(**kwargs)

    def _create_engine(self):
        from vidjudge.server.scorer import torchvision_compat

        if not self.gpu:
            for k, v in CPU_ENV.items():
                os.environ.setdefault(k, v)
        # Child processes (vLLM's model inspection, the engine core) import torchvision too:
        # hand them the hook through PYTHONPATH, only while they start. vLLM also puts
        # LD_PRELOAD (tcmalloc, libgomp) into os.environ for its children; restore both
        # so the server's other workers (decoders) start with the environment they had.
        saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "LD_PRELOAD")}
        try:
            os.environ.update(torchvision_compat.subprocess_hook_env())
            from vllm.v1.engine.async_llm import AsyncLLM

            return AsyncLLM.from_engine_args(self.engine_args(), stat_loggers=[_stats_logger_factory(self.stats)])
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    # -- scoring ---------------------------------------------------------------------------
    def _prompt(self, job: ScoreJob):
        import torch

        v = job.video
        t, h, w = v.grid_thw
        if v.embeds.ndim != 2 or v.embeds.shape[0] * self.merge_size**2 != t * h * w:
            # vLLM's engine core dies on a mismatch (measured): refuse it here.
            raise InternalError(f"visual embeddings {v.embeds.shape} do not match grid {v.grid_thw} "
                                f"with merge {self.merge_size}", reason="embeddings_mismatch")
        video = {
            "video_embeds": torch.from_numpy(np.ascontiguousarray(v.embeds, dtype=np.float32)),
            "video_grid_thw": torch.tensor([list(v.grid_thw)], dtype=torch.long),
            # Mandatory: vLLM defaults to 1.0 silently, which moves the temporal rotary positions.
            "second_per_grid_ts": torch.tensor([v.second_per_grid_t], dtype=torch.float32),
        }
        ids = [*job.prompt.prefix, self.video_token_id, *job.prompt.suffix]
        return {"prompt_token_ids": ids, "multi_modal_data": {"video": video}}

    async def _score(self, job: ScoreJob, request_id: str) -> np.ndarray:
        from vllm import SamplingParams
        from vllm.exceptions import GracefulHTTPError, VLLMValidationError
        from vllm.v1.engine.exceptions import EngineDeadError

        engine = self._engine
        if engine is None:
            raise Unavailable("the vLLM engine is closed", reason="engine_closed")
        params = SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=list(job.level_token_ids),
                                detokenize=False)
        final = None
        try:
            async for out in engine.generate(self._prompt(job), params, request_id):
                final = out
        except asyncio.CancelledError:
            # generate() aborts what it knows of; a cancel that lands while the request is
            # being added can leave it registered, so abort by our id as well (idempotent).
            await asyncio.shield(engine.abort(request_id))
            raise
        except VLLMValidationError as e:
            if getattr(e, "parameter", None) == "input_tokens":
                raise InvalidRequest(f"the prompt is too long for the vLLM engine ({e}); raise "
                                     "scorer.max_model_len or shorten the prompt", reason="prompt_too_long") from None
            raise InvalidRequest(f"the vLLM engine refused the prompt: {e}", reason="llm_rejected") from None
        except GracefulHTTPError as e:
            raise Overloaded(f"the vLLM engine queue is full: {e}", reason="llm_queue_full") from None
        except EngineDeadError as e:
            raise Unavailable(f"the vLLM engine died: {e}", reason="engine_dead") from None
        if final is None or not final.outputs or not final.outputs[0].logprobs:
            raise InternalError("the vLLM engine returned no log-probabilities", reason="llm_no_output")
        expected = len(job.prompt.prefix) + job.video.embeds.shape[0] + len(job.prompt.suffix)
        if len(final.prompt_token_ids) != expected:
            raise InternalError(f"vLLM expanded the prompt to {len(final.prompt_token_ids)} tokens, expected "
                                f"{expected} (video placeholder not expanded to the embeddings?)",
                                reason="llm_prompt_mismatch")
        lp = final.outputs[0].logprobs[0]
        return np.array([lp[i].logprob for i in job.level_token_ids], dtype=np.float64)

    async def score_async(self, job: ScoreJob, request_id: str | None = None) -> np.ndarray:
        """Exact next-token log-probs of the job's level ids; cancelling this aborts the engine request."""
        request_id = request_id or uuid.uuid4().hex
        if asyncio.get_running_loop() is self._loop:
            return await self._score(job, request_id)
        # Called from another loop: run on the engine's loop (cancellation propagates).
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._score(job, request_id), self._loop))

    def score(self, jobs: list[ScoreJob]) -> list[np.ndarray]:
        """Blocking form (benchmarks, scripts): all jobs at once on the engine's loop."""
        if not jobs:
            return []
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise RuntimeError("VllmScorer.score() would block the engine's own event loop; await score_async()")

        async def _all():
            prefix = uuid.uuid4().hex
            return await asyncio.gather(*(self._score(j, f"{prefix}-{i}") for i, j in enumerate(jobs)))

        return list(asyncio.run_coroutine_threadsafe(_all(), self._loop).result())

    # -- state -----------------------------------------------------------------------------
    def num_unfinished(self) -> int:
        """Requests the engine's front end still tracks (0 when idle and nothing leaked)."""
        return self._engine.get_num_unfinished_requests() if self._engine is not None else 0

    def engine_queue(self) -> EngineQueue:
        return EngineQueue(self)

    @property
    def errored(self) -> bool:
        return self._engine is not None and self._engine.errored

    def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.shutdown()
        if self._own_thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._own_thread.join(timeout=10)
            self._own_thread = None
