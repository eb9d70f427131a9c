"""Qwen2.5-VL judges (and any level-token judge exported from a Qwen2.5-VL checkpoint).

- One view, `frames`: `num_frames` frames at the centres of equal time segments, resized
  bicubically (PIL, like HF) to the bundle's fixed size.
- One encoder, `vision`: the fixed-grid vision tower with its merger (export/vision.py),
  fed patchified, CLIP-normalised pixels (preprocess.py); its tokens form one span, `video`.
- The prompt: the checkpoint's chat template rendered once at export with one video
  placeholder, `{question}` and `{answer_prefix}` (manifest `llm.prompt_template`).
- Rotary positions: 3-D mRoPE by the original Qwen2.5-VL rule (text after a video starts at
  max(video positions) + 1, as vLLM does; scorer/positions.py); the transformers backend is
  given explicit positions, vLLM takes the embeddings with `second_per_grid_ts`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from vidjudge.server.families.base import (EncoderSpec, Family, TransformersAdapter, TransformersModel, VllmAdapter,
                                           ViewInfo)
from vidjudge.server.preprocess import PatchSpec, grid_for, patchify, seconds_per_t
from vidjudge.server.types import (DecodedVideo, DecodeRequest, EmbeddingSpan, EncodedVideo, LlmPrompt,
                                   PreprocessedVideo, ViewSpec)

QUESTION_FIELD = "{question}"
ANSWER_FIELD = "{answer_prefix}"
VIEW, ENCODER, SPAN = "frames", "vision", "video"


class QwenVisionConfig(BaseModel):
    """What every Qwen2.5-VL family's manifest.family_config holds: the vision tower's input layout."""

    model_config = ConfigDict(extra="forbid")

    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def patch_spec(self) -> PatchSpec:
        return PatchSpec(patch_size=self.patch_size, temporal_patch_size=self.temporal_patch_size,
                         merge_size=self.merge_size, mean=tuple(self.mean), std=tuple(self.std))


class QwenConfig(QwenVisionConfig):
    """manifest.family_config of a qwen2_5_vl bundle."""

    tokens_per_second: float = 2.0
    video_token: str = "<|video_pad|>"


class HfJsonTokenizer:
    """A Hugging Face fast tokenizer file (tokenizer.json) with the checkpoint's EOS ids."""

    def __init__(self, checkpoint_dir: Path):
        from tokenizers import Tokenizer

        path = checkpoint_dir / "tokenizer.json"
        if not path.is_file():
            raise ValueError(f"{path} is missing")
        self._tok = Tokenizer.from_file(str(path))
        self.eos_token_ids = _eos_ids(checkpoint_dir)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)


def _eos_ids(checkpoint_dir: Path) -> tuple[int, ...]:
    """EOS ids greedy generation stops at: generation_config.json's, else config.json's."""
    for name in ("generation_config.json", "config.json"):
        p = checkpoint_dir / name
        if p.is_file():
            cfg = json.loads(p.read_text())
            eos = cfg.get("eos_token_id", cfg.get("text_config", {}).get("eos_token_id"))
            if eos is not None:
                return tuple(eos) if isinstance(eos, list) else (int(eos),)
    return ()


class Qwen25VLFamily(Family):
    name = "qwen2_5_vl"

    def __init__(self, root: Path, manifest):
        super().__init__(root, manifest)
        self.config = QwenConfig.model_validate(manifest.family_config)
        c = self.config
        self.patch = c.patch_spec()
        self.view = v = self.fixed_size_view(VIEW, ENCODER, "segment_centres", "segment centres")
        self.grid = grid_for(v.num_frames, v.height, v.width, self.patch)
        self.num_tokens = self.grid[0] * self.grid[1] * self.grid[2] // c.merge_size**2
        enc = manifest.encoders[ENCODER]
        n_patches = self.grid[0] * self.grid[1] * self.grid[2]
        if tuple(enc.input_shape) != (n_patches, self.patch.patch_dim) or enc.output_shape[0] != self.num_tokens:
            raise ValueError(f"encoder '{ENCODER}' shapes {enc.input_shape} -> {enc.output_shape} do not match the "
                             f"view's grid {self.grid}")
        self.llm_dir = root / manifest.llm.path
        self.tokenizer = HfJsonTokenizer(self.llm_dir)
        self.video_token_id = self.tokenizer.token_to_id(c.video_token)
        if self.video_token_id is None:
            raise ValueError(f"the tokenizer has no {c.video_token} token")
        t = manifest.llm.prompt_template
        if t.count(c.video_token) != 1 or QUESTION_FIELD not in t or ANSWER_FIELD not in t:
            raise ValueError(f"llm.prompt_template needs one {c.video_token}, {QUESTION_FIELD} and {ANSWER_FIELD}")
        self.template = t
        self.prompt_ids = lru_cache(maxsize=4096)(self._prompt_ids)

    # -- decode and preprocess -----------------------------------------------------------------
    def decode_request(self) -> DecodeRequest:
        from vidjudge.server.decode.sampling import SegmentCentres
        from vidjudge.server.decode.transforms import Resize

        v = self.view
        return DecodeRequest((ViewSpec(VIEW, SegmentCentres(v.num_frames), Resize(v.height, v.width)),))

    def preprocess(self, decoded: DecodedVideo) -> PreprocessedVideo:
        frames = decoded.views[VIEW].frames
        return PreprocessedVideo(inputs={ENCODER: patchify(frames, self.patch)},
                                 seconds_per_t=seconds_per_t(frames.shape[0], decoded.info.duration_s, self.patch))

    def views(self) -> list[ViewInfo]:
        v = self.view
        return [ViewInfo(VIEW, v.num_frames, v.height, v.width, v.sampler)]

    # -- encoders --------------------------------------------------------------------------------
    def encoders(self) -> list[EncoderSpec]:
        enc = self.manifest.encoders[ENCODER]

        def torch_module():
            from vidjudge.export.vision import build_encoder

            return build_encoder(self.llm_dir, self.grid)

        return [EncoderSpec(ENCODER, self.root / enc.onnx, tuple(enc.input_shape), tuple(enc.output_shape),
                            enc.tensorrt, torch_module)]

    def encoded(self, pre: PreprocessedVideo, outputs: dict[str, np.ndarray]) -> EncodedVideo:
        return EncodedVideo({SPAN: EmbeddingSpan(outputs[ENCODER], self.grid, pre.seconds_per_t)})

    # -- prompt ----------------------------------------------------------------------------------
    def _prompt_ids(self, question: str, answer_prefix: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        # str.replace, not str.format: user prompts may contain braces.
        text = self.template.replace(QUESTION_FIELD, question).replace(ANSWER_FIELD, answer_prefix)
        before, after = text.split(self.config.video_token, 1)
        return tuple(self.tokenizer.encode(before)), tuple(self.tokenizer.encode(after))

    def prompt(self, question: str, answer_prefix: str, video: EncodedVideo, adapter: str | None = None) -> LlmPrompt:
        prefix, suffix = self.prompt_ids(question, answer_prefix)
        return LlmPrompt((prefix, video.spans[SPAN], suffix))

    def max_prompt_tokens(self, questions: list[tuple[str, str]], extra_text_chars: int) -> int:
        template = max(len(a) + len(b) for a, b in (self.prompt_ids(q, p) for q, p in questions))
        return self.num_tokens + template + extra_text_chars + 64

    # -- LLM backends ----------------------------------------------------------------------------
    def transformers_adapter(self) -> TransformersAdapter:
        return _QwenTransformers(self.config.merge_size, self.config.tokens_per_second)

    def vllm_adapter(self) -> VllmAdapter:
        return _QwenVllm(self.video_token_id, self.config.merge_size)


class _QwenModel(TransformersModel):
    def __init__(self, model, dtype, device):
        self.model = model
        self.embed = model.get_input_embeddings()
        self.lm = model.model.language_model
        self.lm_head = model.lm_head
        self.dtype, self.device = dtype, device

    def decoder(self, inputs_embeds, attention_mask, positions, past_key_values=None, use_cache=False):
        out = self.lm(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=positions,
                      past_key_values=past_key_values, use_cache=use_cache)
        return out.last_hidden_state, out.past_key_values

    def peft_target(self):
        return self.model


class _QwenTransformers(TransformersAdapter):
    def __init__(self, merge: int, tokens_per_second: float):
        self.merge = merge
        self.tokens_per_second = tokens_per_second

    def load(self, checkpoint_dir: Path, dtype, device) -> TransformersModel:
        from transformers import Qwen2_5_VLForConditionalGeneration

        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(checkpoint_dir, dtype=dtype).to(device).eval()
        return _QwenModel(model, dtype, device)

    def inputs(self, model: TransformersModel, prompt: LlmPrompt):
        import torch

        from vidjudge.server.scorer.positions import span_positions

        pieces, layout = [], []
        for part in prompt.parts:
            if isinstance(part, EmbeddingSpan):
                e = torch.as_tensor(np.asarray(part.embeds) if isinstance(part.embeds, np.ndarray) else part.embeds)
                pieces.append(e.to(device=model.device, dtype=model.dtype))
                layout.append((part.num_tokens, part.grid_thw, part.seconds_per_t))
            elif part:
                ids = torch.tensor(part, dtype=torch.long, device=model.device)
                pieces.append(model.embed(ids))
                layout.append((len(part), None, 0.0))
        pos = span_positions(layout, self.merge, self.tokens_per_second)
        return torch.cat(pieces), torch.from_numpy(pos).to(model.device)


class _QwenVllm(VllmAdapter):
    def __init__(self, video_token_id: int, merge: int):
        self.video_token_id = video_token_id
        self.merge = merge

    def engine_kwargs(self) -> dict:
        return {"limit_mm_per_prompt": {"image": 0, "video": 1}}

    def prompt(self, prompt: LlmPrompt) -> dict:
        import torch

        from vidjudge.errors import InternalError

        spans = [p for p in prompt.parts if isinstance(p, EmbeddingSpan)]
        if len(spans) != 1:
            raise InternalError(f"a qwen2_5_vl prompt holds one video, got {len(spans)}", reason="llm_prompt_mismatch")
        v = spans[0]
        t, h, w = v.grid_thw
        if v.embeds.ndim != 2 or v.embeds.shape[0] * self.merge**2 != t * h * w:
            # vLLM's engine core dies on a mismatch (measured): refuse it here.
            raise InternalError(f"visual embeddings {tuple(v.embeds.shape)} do not match grid {v.grid_thw} "
                                f"with merge {self.merge}", reason="embeddings_mismatch")
        embeds = v.embeds if not isinstance(v.embeds, np.ndarray) else torch.from_numpy(np.ascontiguousarray(v.embeds))
        video = {
            "video_embeds": embeds,
            "video_grid_thw": torch.tensor([list(v.grid_thw)], dtype=torch.long),
            # Mandatory: vLLM defaults to 1.0 silently, which moves the temporal rotary positions.
            "second_per_grid_ts": torch.tensor([v.seconds_per_t], dtype=torch.float32),
        }
        ids: list[int] = []
        for part in prompt.parts:
            ids.extend([self.video_token_id] if isinstance(part, EmbeddingSpan) else part)
        return {"prompt_token_ids": ids, "multi_modal_data": {"video": video}}
