"""Qwen2.5-VL judging a video as a series of frames, each an image (Video-Bench's way, DESIGN.md 2.2).

- One view, `frames`: a variable number of frames (Video-Bench's 2-per-second rule, `FpsStep`, capped
  by the view's `num_frames`), resized bicubically to the bundle's fixed image size.
- One encoder, `image`: the fixed-grid vision tower for ONE image (grid (1, h, w): the frame repeated
  over the temporal patch, as Qwen's image processor does). Every frame of every request is an item of
  its batch, so videos with different frame counts batch together.
- Prompts are chat turns (`chat`): an optional system message, user content interleaving text and
  frames (any video's, e.g. other generators' first frames as references), and the start of the
  answer, in Qwen's ChatML. Each frame is `<|vision_start|><|image_pad|><|vision_end|>`.
- Positions: 3-D mRoPE as for videos (an image is a one-step grid); vLLM takes `image_embeds`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from vidjudge.server.families.base import EncoderSpec, Family, TransformersAdapter, VllmAdapter, ViewInfo
from vidjudge.server.families.qwen2_5_vl import HfJsonTokenizer, QwenVisionConfig, _QwenTransformers
from vidjudge.server.preprocess import grid_for, patchify
from vidjudge.server.types import (DecodedVideo, DecodeRequest, EmbeddingSpan, EncodedVideo, Frames, LlmPrompt,
                                   PreprocessedVideo, Turn, ViewSpec)

VIEW, ENCODER = "frames", "image"
IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
# Qwen2.5-VL's chat template (ChatML) for one turn; the exporter writes it as llm.prompt_template.
CHATML = ("<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{content}<|im_end|>\n"
          "<|im_start|>assistant\n{answer_prefix}")


class FramesConfig(QwenVisionConfig):
    """manifest.family_config of a qwen2_5_vl_frames bundle."""

    per_second: float = 2.0  # frames sampled per second of video (Video-Bench: 2)
    image_token: str = "<|image_pad|>"
    system: str = "You are a helpful assistant."  # Qwen's default system message
    max_images_per_prompt: int = 64  # vLLM's multi-modal limit (frames of a whole group in one prompt)


def _span_name(i: int) -> str:
    return f"frame{i}"


class Qwen25VLFramesFamily(Family):
    name = "qwen2_5_vl_frames"

    def __init__(self, root: Path, manifest):
        super().__init__(root, manifest)
        self.config = c = FramesConfig.model_validate(manifest.family_config)
        self.patch = c.patch_spec()
        self.view = v = self.fixed_size_view(VIEW, ENCODER, "fps_step", "frames per second (fps_step)")
        # One image: the frame repeated over the temporal patch (Qwen's image processor does the same).
        self.grid = grid_for(c.temporal_patch_size, v.height, v.width, self.patch)
        self.tokens_per_image = self.grid[0] * self.grid[1] * self.grid[2] // c.merge_size**2
        enc = manifest.encoders[ENCODER]
        if tuple(enc.input_shape) != (self.grid[1] * self.grid[2], self.patch.patch_dim):
            raise ValueError(f"encoder '{ENCODER}' input {enc.input_shape} does not match one image of grid {self.grid}")
        self.llm_dir = root / manifest.llm.path
        self.tokenizer = HfJsonTokenizer(self.llm_dir)
        self.image_token_id = self.tokenizer.token_to_id(c.image_token)
        if self.image_token_id is None:
            raise ValueError(f"the tokenizer has no {c.image_token} token")
        self._encode_text = lru_cache(maxsize=4096)(lambda text: tuple(self.tokenizer.encode(text)))
        t = manifest.llm.prompt_template
        if any(f not in t for f in ("{system}", "{content}", "{answer_prefix}")):
            raise ValueError("llm.prompt_template needs {system}, {content} and {answer_prefix} (a chat turn)")
        self.template = t

    # -- decode and preprocess -----------------------------------------------------------------
    def decode_request(self) -> DecodeRequest:
        from vidjudge.server.decode.sampling import FpsStep
        from vidjudge.server.decode.transforms import Resize

        v = self.view
        return DecodeRequest((ViewSpec(VIEW, FpsStep(self.config.per_second, v.num_frames),
                                       Resize(v.height, v.width)),))

    def preprocess(self, decoded: DecodedVideo) -> PreprocessedVideo:
        tp = self.patch.temporal_patch_size
        frames = decoded.views[VIEW].frames
        return PreprocessedVideo(inputs={ENCODER: [patchify(np.repeat(f[None], tp, axis=0), self.patch)
                                                   for f in frames]})

    def views(self) -> list[ViewInfo]:
        v = self.view
        return [ViewInfo(VIEW, v.num_frames, v.height, v.width, f"{v.sampler} ({self.config.per_second:g}/s)")]

    # -- encoders --------------------------------------------------------------------------------
    def encoders(self) -> list[EncoderSpec]:
        enc = self.manifest.encoders[ENCODER]

        def torch_module():
            from vidjudge.export.vision import build_encoder

            return build_encoder(self.llm_dir, self.grid)

        return [EncoderSpec(ENCODER, self.root / enc.onnx, tuple(enc.input_shape), tuple(enc.output_shape),
                            enc.tensorrt, torch_module, items_per_video=self.view.num_frames)]

    def encoded(self, pre: PreprocessedVideo, outputs: dict) -> EncodedVideo:
        return EncodedVideo({_span_name(i): EmbeddingSpan(e, self.grid, 1.0) for i, e in enumerate(outputs[ENCODER])})

    # -- prompts ---------------------------------------------------------------------------------
    def chat(self, turn: Turn) -> LlmPrompt:
        """ChatML with every Frames part expanded to its images; text between them tokenised as one piece."""
        spans: list[EmbeddingSpan] = []
        content = []
        for part in turn.user:
            if isinstance(part, Frames):
                n = 1 if part.first_only else len(part.video.spans)
                spans += [part.video.spans[_span_name(i)] for i in range(n)]
                content.append(IMAGE * n)
            else:
                content.append(part)
        # str.replace, not str.format: user text may contain braces.
        text = self.template.replace("{system}", self.config.system if turn.system is None else turn.system)
        text = text.replace("{content}", "".join(content)).replace("{answer_prefix}", turn.answer_prefix)
        parts: list = []
        run: list[int] = []
        images = iter(spans)
        for token in self._encode_text(text):
            if token == self.image_token_id:
                if run:
                    parts.append(tuple(run))
                    run = []
                parts.append(next(images))
            else:
                run.append(token)
        if run:
            parts.append(tuple(run))
        return LlmPrompt(tuple(parts))

    def prompt(self, question: str, answer_prefix: str, video: EncodedVideo, adapter: str | None = None) -> LlmPrompt:
        return self.chat(Turn((Frames(video), question), answer_prefix))

    def max_prompt_tokens(self, questions: list[tuple[str, str]], extra_text_chars: int) -> int:
        template = max(len(self._encode_text(q + a)) for q, a in questions)
        return self.config.max_images_per_prompt * (self.tokens_per_image + 2) + template + extra_text_chars + 256

    # -- LLM backends ----------------------------------------------------------------------------
    def transformers_adapter(self) -> TransformersAdapter:
        return _QwenTransformers(self.config.merge_size, tokens_per_second=1.0)

    def vllm_adapter(self) -> VllmAdapter:
        return _FramesVllm(self.image_token_id, self.config.max_images_per_prompt)


class _FramesVllm(VllmAdapter):
    def __init__(self, image_token_id: int, max_images: int):
        self.image_token_id = image_token_id
        self.max_images = max_images

    def engine_kwargs(self) -> dict:
        return {"limit_mm_per_prompt": {"image": self.max_images, "video": 0}}

    def prompt(self, prompt: LlmPrompt) -> dict:
        import torch

        spans = [p for p in prompt.parts if isinstance(p, EmbeddingSpan)]
        ids: list[int] = []
        for part in prompt.parts:
            ids.extend([self.image_token_id] if isinstance(part, EmbeddingSpan) else part)
        if not spans:
            return {"prompt_token_ids": ids}
        embeds = [torch.as_tensor(np.ascontiguousarray(s.embeds)) if isinstance(s.embeds, np.ndarray) else s.embeds
                  for s in spans]
        image = {"image_embeds": torch.cat(embeds), "image_grid_thw": torch.tensor([list(s.grid_thw) for s in spans])}
        return {"prompt_token_ids": ids, "multi_modal_data": {"image": image}}
