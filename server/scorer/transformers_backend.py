"""Reference LLM backend: the family's Hugging Face model in transformers, batched by our batcher.

Takes the visual embeddings our encoders computed (the model's own vision tower never
runs here) and the positions the family computes. Next-token log-probs and last hidden
states come from one left-padded batched prefill per (adapter) group, with the LM head
applied to the last position only: never logits over all positions (DESIGN.md 6).
Generation is greedy with a KV cache, every generating prompt of the batch together
(left-padded; Video-Bench chains send step k of many videos at once), each stopping at
EOS, its `max_tokens` or a stop string (excluded from the text, as vLLM does).

LoRA adapters of the bundle are loaded with PEFT under their names; a batch holds one
adapter (or the base model, with the adapters disabled).
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vidjudge.server.batching import Batcher, BatchWorker
from vidjudge.server.devices import resolve_device, resolve_dtype
from vidjudge.server.scorer.base import LlmBackend
from vidjudge.server.types import (Generate, GeneratedText, HiddenState, LastHiddenState, LlmOutput, LlmRequest,
                                   NextTokenLogprobs, TokenLogprobs)


class TransformersLlm(LlmBackend):
    name = "transformers"

    def __init__(self, checkpoint_dir: Path, adapter, tokenizer, *, adapters: dict[str, Path] | None = None,
                 threads: int = 0, device: str = "auto", dtype: str = "auto", max_batch: int = 16,
                 max_wait_s: float = 0.005, capacity: int = 1024, observe=None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.adapter = adapter
        self.tokenizer = tokenizer
        self.model = adapter.load(Path(checkpoint_dir), self.dtype, self.device)
        self._peft = None
        if adapters:
            from peft import PeftModel

            names = list(adapters)
            self._peft = PeftModel.from_pretrained(self.model.peft_target(), str(adapters[names[0]]),
                                                   adapter_name=names[0])
            for name in names[1:]:
                self._peft.load_adapter(str(adapters[name]), adapter_name=name)
            self._peft.eval()
        if self.device != "cpu":
            self.name = f"transformers-{self.device}"
        # One forward at a time: torch modules are not re-entrant across threads.
        self._lock = threading.Lock()
        self.worker = BatchWorker(Batcher(max_batch, max_wait_s, capacity=max(capacity, max_batch), name="llm"),
                                  self._run_batch, observe)

    # -- the seam ------------------------------------------------------------------------------
    async def run(self, request: LlmRequest, *, deadline: float | None = None,
                  request_id: str | None = None) -> LlmOutput:
        # Cancelling the awaiting task cancels the wrapped future: the batcher drops the item.
        return await asyncio.wrap_future(self.worker.submit(request, deadline))

    def run_blocking(self, requests: Sequence[LlmRequest]) -> list[LlmOutput]:
        return self._run_batch(list(requests))

    def queue_depth(self) -> int:
        return self.worker.depth()

    def close(self) -> None:
        self.worker.close()
        self.model = self._peft = None

    # -- batches ---------------------------------------------------------------------------------
    def _run_batch(self, requests: list[LlmRequest]) -> list[LlmOutput]:
        """Group by adapter; within a group, one prefill for every single-step op, then generations."""
        out: list[LlmOutput | None] = [None] * len(requests)
        groups: dict[str | None, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            groups[r.adapter].append(i)
        torch = self._torch
        with self._lock, torch.inference_mode():
            for adapter, idx in groups.items():
                with self._adapter(adapter):
                    prefill = [i for i in idx if not isinstance(requests[i].op, Generate)]
                    if prefill:
                        for i, o in zip(prefill, self._prefill([requests[i] for i in prefill])):
                            out[i] = o
                    generate = [i for i in idx if isinstance(requests[i].op, Generate)]
                    if generate:
                        for i, o in zip(generate, self._generate([requests[i] for i in generate])):
                            out[i] = o
        return out  # type: ignore[return-value]

    def _adapter(self, name: str | None):
        import contextlib

        if self._peft is None:
            if name is not None:
                raise ValueError(f"adapter '{name}' requested but the model has no adapters")
            return contextlib.nullcontext()
        if name is None:
            return self._peft.disable_adapter()
        self._peft.set_adapter(name)
        return contextlib.nullcontext()

    def _padded(self, requests: list[LlmRequest]):
        """Left-padded inputs of a batch: every row's last real token sits at the last position."""
        torch = self._torch
        rows = [self.adapter.inputs(self.model, r.prompt) for r in requests]
        length = max(e.shape[0] for e, _ in rows)
        hidden, axes = rows[0][0].shape[1], rows[0][1].shape[0]
        embeds = torch.zeros(len(rows), length, hidden, dtype=self.model.dtype, device=self.device)
        positions = torch.ones(axes, len(rows), length, dtype=torch.long, device=self.device)
        mask = torch.zeros(len(rows), length, dtype=torch.long, device=self.device)
        for i, (e, pos) in enumerate(rows):
            n = e.shape[0]
            embeds[i, length - n:] = e
            positions[:, i, length - n:] = pos
            mask[i, length - n:] = 1
        return rows, embeds, positions, mask

    def _prefill(self, requests: list[LlmRequest]) -> list[LlmOutput]:
        torch = self._torch
        _, embeds, positions, mask = self._padded(requests)
        last, _ = self.model.decoder(embeds, mask, positions)
        last = last[:, -1]
        logprobs = None
        out: list[LlmOutput] = []
        for i, r in enumerate(requests):
            if isinstance(r.op, LastHiddenState):
                out.append(HiddenState(last[i].float().cpu().numpy()))
            elif isinstance(r.op, NextTokenLogprobs):
                if logprobs is None:
                    logprobs = torch.log_softmax(self.model.lm_head(last).float(), dim=-1)
                out.append(TokenLogprobs(logprobs[i, list(r.op.token_ids)].cpu().numpy().astype(np.float64)))
            else:  # pragma: no cover - Generate is routed elsewhere
                raise TypeError(f"cannot prefill {type(r.op).__name__}")
        return out

    def _generate(self, requests: list[LlmRequest]) -> list[GeneratedText]:
        """Greedy decoding of the whole batch with one KV cache; a finished row rides along (its tokens are
        ignored) until every row is done. The stop check is on each row's decoded text, like vLLM's."""
        torch = self._torch
        rows, embeds, positions, mask = self._padded(requests)
        h, cache = self.model.decoder(embeds, mask, positions, None, True)
        ops: list[Generate] = [r.op for r in requests]  # type: ignore[misc]
        steps = max(op.max_tokens for op in ops)
        # Each row's text continues from its own largest position (the family's rule).
        cont = torch.stack([self.adapter.continuation_positions(pos, steps) for _, pos in rows], dim=1)  # A, B, S
        eos = set(self.tokenizer.eos_token_ids)
        ids: list[list[int]] = [[] for _ in requests]
        texts, finish = [""] * len(requests), ["length"] * len(requests)
        active = [True] * len(requests)
        for k in range(steps):
            tokens = torch.argmax(self.model.lm_head(h[:, -1]).float(), dim=-1)
            for i, op in enumerate(ops):
                if not active[i]:
                    continue
                token = int(tokens[i])
                if token in eos:
                    active[i], finish[i] = False, "stop"
                    continue
                ids[i].append(token)
                texts[i] = self.tokenizer.decode(ids[i])
                cut = min((texts[i].find(s) for s in op.stop if s in texts[i]), default=-1)
                if cut >= 0:
                    texts[i], finish[i], active[i] = texts[i][:cut], "stop", False
                elif len(ids[i]) >= op.max_tokens:
                    active[i] = False
            if not any(active):
                break
            mask = torch.cat([mask, torch.ones(len(requests), 1, dtype=mask.dtype, device=self.device)], dim=1)
            h, cache = self.model.decoder(self.model.embed(tokens[:, None]), mask, cont[:, :, k:k + 1], cache, True)
        return [GeneratedText(t, tuple(i), f) for t, i, f in zip(texts, ids, finish)]
