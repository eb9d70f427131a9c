"""Reference scorer: the Hugging Face Qwen2.5-VL language model in transformers.

Takes the visual embeddings our encoder computed (the model's own vision tower
never runs here), places them at the video tokens, runs one batched prefill
with explicit mRoPE positions (positions.py) and computes the LM head for the
last position only: never logits over all positions (DESIGN.md §6).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from vidjudge.server.scorer.base import ScoreJob
from vidjudge.server.scorer.positions import mrope_positions


class TransformersScorer:
    name = "transformers"

    def __init__(self, checkpoint_dir: Path, *, video_token_id: int, merge_size: int,
                 tokens_per_second: float, threads: int = 0):
        import torch
        from transformers import Qwen2_5_VLForConditionalGeneration

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(checkpoint_dir, dtype=torch.float32).eval()
        self._embed = model.get_input_embeddings()
        self._lm = model.model.language_model
        self._head = model.lm_head
        self._pad_id = model.config.text_config.pad_token_id or 0
        self.video_token_id = video_token_id
        self.merge = merge_size
        self.tokens_per_second = tokens_per_second
        # One forward at a time: torch modules are not re-entrant across threads.
        self._lock = threading.Lock()

    def _row(self, job: ScoreJob):
        torch = self._torch
        v = job.video
        n_vid = v.embeds.shape[0]
        ids = torch.tensor([*job.prompt.prefix, *([self.video_token_id] * n_vid), *job.prompt.suffix])
        emb = self._embed(ids)
        p = len(job.prompt.prefix)
        emb[p:p + n_vid] = torch.from_numpy(np.ascontiguousarray(v.embeds, dtype=np.float32))
        pos = mrope_positions(p, v.grid_thw, self.merge, v.second_per_grid_t, self.tokens_per_second,
                              len(job.prompt.suffix))
        return emb, torch.from_numpy(pos)

    def score(self, jobs: list[ScoreJob]) -> list[np.ndarray]:
        if not jobs:
            return []
        torch = self._torch
        with self._lock, torch.inference_mode():
            rows = [self._row(j) for j in jobs]
            length = max(e.shape[0] for e, _ in rows)
            hidden = rows[0][0].shape[1]
            # Left padding: every row's last real token sits at the last position.
            embeds = torch.zeros(len(rows), length, hidden)
            positions = torch.ones(3, len(rows), length, dtype=torch.long)
            mask = torch.zeros(len(rows), length, dtype=torch.long)
            for i, (e, pos) in enumerate(rows):
                n = e.shape[0]
                embeds[i, length - n:] = e
                positions[:, i, length - n:] = pos
                mask[i, length - n:] = 1
            out = self._lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False)
            last = out.last_hidden_state[:, -1]
            logprobs = torch.log_softmax(self._head(last).float(), dim=-1)
            return [logprobs[i, list(j.level_token_ids)].numpy().astype(np.float64) for i, j in enumerate(jobs)]

    def close(self) -> None:
        self._lm = self._head = self._embed = None
