"""How the vLLM backend takes a LOVE prompt: the language model alone, fed the whole prompt as embeddings.

vLLM serves the converted decoder as its own `LlamaForCausalLM` with `enable_prompt_embeds`: the server
splices the prompt (text embeddings looked up here from the checkpoint's embedding table, the encoders'
visual embeddings in place of the 12 `<IMG_CONTEXT>` runs) and sends one (L, hidden) tensor per request.
vLLM never tokenizes (`skip_tokenizer_init`; the bundle carries no tokenizer vLLM can load, and needs
none). Each skill's LoRA is a `LoRARequest` on that engine (regression heads on the pooling engine, the
QA head's log-probs on the generate engine), and prefix caching hashes prompt embeddings per block, so
identical leading blocks (the system prompt and template text before the first frame) are shared.

Why not vLLM's `InternVLChatModel` with precomputed `image_embeds` (12 items: 8 of 256 tokens, 4 of 1):
see the README ("LOVE on vLLM") for what was tried and measured.
"""

from __future__ import annotations

import threading

import numpy as np

from vidjudge.server.families.base import VllmAdapter
from vidjudge.server.types import EmbeddingSpan, LlmPrompt


class LoveVllm(VllmAdapter):
    def __init__(self, family):
        self.family = family
        self._tables: dict = {}
        self._lock = threading.Lock()

    def engine_kwargs(self) -> dict:
        return {"enable_prompt_embeds": True, "skip_tokenizer_init": True, "enable_mm_embeds": False}

    def _table(self, dtype):
        """The input embedding table (vocab, hidden) on the CPU in `dtype`, read once from the checkpoint."""
        with self._lock:
            table = self._tables.get(dtype)
            if table is None:
                from safetensors import safe_open

                llm = self.family.llm_dir
                index = llm / "model.safetensors.index.json"
                name = "model.embed_tokens.weight"
                if index.is_file():
                    import json

                    file = llm / json.loads(index.read_text())["weight_map"][name]
                else:
                    file = llm / "model.safetensors"
                with safe_open(str(file), framework="pt") as f:
                    table = f.get_tensor(name).to(dtype)
                self._tables[dtype] = table
        return table

    def prompt(self, prompt: LlmPrompt) -> dict:
        import torch

        spans = [p for p in prompt.parts if isinstance(p, EmbeddingSpan)]
        first = spans[0].embeds if spans else None
        dtype = first.dtype if isinstance(first, torch.Tensor) else torch.float32
        table = self._table(dtype)
        pieces = []
        for part in prompt.parts:
            if isinstance(part, EmbeddingSpan):
                e = part.embeds
                e = torch.from_numpy(np.ascontiguousarray(e)) if isinstance(e, np.ndarray) else e
                pieces.append(e.to(device="cpu", dtype=dtype))
            elif part:
                pieces.append(table[torch.tensor(part, dtype=torch.long)])
        return {"prompt_embeds": torch.cat(pieces).contiguous()}
