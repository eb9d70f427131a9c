"""LOVE judges (AIGVE-60K: LOVE-Perception, LOVE-Correspondence, LOVE-QA), one bundle for the three skills.

Written by `vidjudge export love` (export/love.py) from the released checkpoints. What it serves is the
reference's inference computation (IntMeGroup/LOVE, train/infer_perception.py and eval_qa.py; DESIGN.md
2.1), batched:

- Views, decoded in one pass: `frames`, 8 frames picked by index (`int(seg/2 + round(seg*i))`,
  seg = (N-1)/8) and resized bicubically to 448 x 448 (one tile); `motion`, 4 clips of 32 frames
  (test-mode SampleFrames) cut into 7 x 7 fragments of 32 px (decode/fragments.py; crop offsets by a
  deterministic rule, `family_config.fragment_offsets`).
- Encoders: one InternViT + pixel shuffle + mlp1 per skill (the vision LoRA differs per fine-tune, so it
  is merged into each skill's copy), `vision.<skill>` -> 8 x 256 tokens; one Swin3D shared by the skills
  with every skill's fast_mlp, `motion` -> one row of 4 motion vectors per distinct fast_mlp.
- Prompt: the internlm2-chat template with InternVL's system message; the user turn is
  `Frame1: <image>\\n ... Frame8: <image>\\nMotion Feature: <image><image><image><image>\\nMotion
  Feature2: <image>` followed by the question with no separator. Only the first 12 `<image>` are
  expanded (`<img>` + one embedding per `<IMG_CONTEXT>` + `</img>`: 256 per frame, 1 per motion vector);
  the 13th stays literal text, as in the reference. BOS first, no EOS. The prompt ends where the
  dimension's answer starts (`answer_prefix`), so one forward gives what the head reads:
  - regression (perception, correspondence): the reference reads the final-norm hidden state at index -4
    of "... is good.<|im_end|>", the token before the level word, i.e. the last token of the prompt
    ended after "is"; score = mlpscore(h) x 100.
  - yes/no (QA): the reference teacher-forces the answer and takes the argmax of the answer positions,
    then looks for "yes"/"no" in their text. Served: P(Yes) vs P(No) at the first answer position
    (right after "assistant\\n"); the served answer is the likelier of the two, which is the
    reference's answer whenever its argmax there is one of the two words (see the README).
- LLM: the InternLM2 decoder converted to Llama layout (wqkv split into q/k/v; same rotary convention),
  one base with a LoRA adapter per skill (a dimension names its skill as `adapter`).

The dimension's adapter names its skill; the family encodes only the skills a request's dimensions use
(`encoders_for`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from vidjudge.server.families.base import (EncoderSpec, Family, TransformersAdapter, TransformersModel, VllmAdapter,
                                           ViewInfo)
from vidjudge.server.types import (DecodedVideo, DecodeRequest, EmbeddingSpan, EncodedVideo, LlmPrompt,
                                   PreprocessedVideo, ViewSpec)

FRAMES, MOTION = "frames", "motion"
QUESTION_FIELD, ANSWER_FIELD = "{question}", "{answer_prefix}"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MOTION_MEAN = (123.675, 116.28, 103.53)
MOTION_STD = (58.395, 57.12, 57.375)


class SkillSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vision: str  # the skill's vision encoder (manifest.encoders)
    motion_row: int = Field(ge=0)  # the row of the motion encoder's output holding this skill's fast_mlp


class LoveConfig(BaseModel):
    """manifest.family_config of a love bundle."""

    model_config = ConfigDict(extra="forbid")

    skills: dict[str, SkillSection]
    motion_encoder: str = MOTION
    num_frames: int = 8
    clips: int = 4
    tokens_per_frame: int = 256
    image_placeholder: str = "<image>"
    image_start: str = "<img>"
    image_end: str = "</img>"
    context_token: str = "<IMG_CONTEXT>"
    frame_mean: tuple[float, float, float] = IMAGENET_MEAN
    frame_std: tuple[float, float, float] = IMAGENET_STD
    motion_mean: tuple[float, float, float] = MOTION_MEAN
    motion_std: tuple[float, float, float] = MOTION_STD
    vision: dict = Field(default_factory=dict)  # love_modules.VisionConfig fields
    swin: dict = Field(default_factory=dict)  # love_modules.SwinConfig fields
    bf16_attention: bool = True  # the Swin3D's bfloat16 rounding of attention probabilities and values


# --------------------------------------------------------------------------- tokenizer


class SentencePieceTokenizer:
    """The checkpoint's SentencePiece model with its added tokens, as the reference's slow tokenizer
    splits text: at added tokens first (the longest at the earliest position), every other piece encoded
    by SentencePiece as it is; `encode` adds nothing, `bos_token_id` is prepended by the family."""

    def __init__(self, checkpoint_dir: Path):
        import sentencepiece as spm

        model = checkpoint_dir / "tokenizer.model"
        if not model.is_file():
            raise ValueError(f"{model} is missing")
        self.sp = spm.SentencePieceProcessor(model_file=str(model))
        added: dict[str, int] = {}
        conf_path = checkpoint_dir / "tokenizer_config.json"
        conf = json.loads(conf_path.read_text()) if conf_path.is_file() else {}
        for i, entry in conf.get("added_tokens_decoder", {}).items():
            added[entry["content"] if isinstance(entry, dict) else str(entry)] = int(i)
        extra = checkpoint_dir / "added_tokens.json"
        if extra.is_file():
            added.update({k: int(v) for k, v in json.loads(extra.read_text()).items()})
        self.added = added
        self._by_length = sorted(added, key=len, reverse=True)
        self.bos_token_id = added.get(conf.get("bos_token") or "<s>", self.sp.bos_id())
        eos = [self.sp.eos_id()] + [added[t] for t in ("<|im_end|>",) if t in added]
        self.eos_token_ids = tuple(i for i in dict.fromkeys(eos) if i >= 0)
        self._id_to_added = {v: k for k, v in added.items()}

    def token_to_id(self, token: str) -> int | None:
        if token in self.added:
            return self.added[token]
        i = self.sp.piece_to_id(token)
        return None if i == self.sp.unk_id() and token != self.sp.id_to_piece(i) else i

    def _split(self, text: str) -> list[tuple[str, bool]]:
        out, start, i = [], 0, 0
        while i < len(text):
            hit = next((t for t in self._by_length if text.startswith(t, i)), None)
            if hit is None:
                i += 1
                continue
            if i > start:
                out.append((text[start:i], False))
            out.append((hit, True))
            i += len(hit)
            start = i
        if start < len(text):
            out.append((text[start:], False))
        return out

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece, special in self._split(text):
            ids.extend([self.added[piece]] if special else self.sp.encode(piece))
        return ids

    def decode(self, ids) -> str:
        return self.sp.decode([i for i in ids if i not in self._id_to_added and i < self.sp.get_piece_size()])


# --------------------------------------------------------------------------- family


class LoveFamily(Family):
    name = "love"

    def __init__(self, root: Path, manifest):
        super().__init__(root, manifest)
        self.config = c = LoveConfig.model_validate(manifest.family_config)
        if FRAMES not in manifest.views or MOTION not in manifest.views:
            raise ValueError(f"a {self.name} bundle needs views '{FRAMES}' and '{MOTION}'")
        fv, mv = manifest.views[FRAMES], manifest.views[MOTION]
        if fv.sampler != "uniform_indices" or fv.resize != "bicubic" or fv.num_frames != c.num_frames:
            raise ValueError(f"view '{FRAMES}': {c.num_frames} uniform_indices frames resized bicubically expected")
        if mv.sampler != "love_clips" or mv.num_frames != c.clips * mv.options.get("clip_len", 32):
            raise ValueError(f"view '{MOTION}': love_clips sampling of {c.clips} clips expected")
        self.frames_view, self.motion_view = fv, mv
        from vidjudge.server.decode.fragments import Fragments

        o = mv.options
        self.fragments = Fragments(fragments=o.get("fragments", 7), size=o.get("fragment_size", 32),
                                   clip_len=o.get("clip_len", 32), clips=c.clips, offsets=o.get("offsets", "middle"))
        if mv.height != self.fragments.out_size or mv.width != self.fragments.out_size:
            raise ValueError(f"view '{MOTION}': {mv.height}x{mv.width} is not the fragment grid's size")
        for skill, s in c.skills.items():
            if s.vision not in manifest.encoders:
                raise ValueError(f"skill {skill}: encoder '{s.vision}' is not in the manifest")
        if c.motion_encoder not in manifest.encoders:
            raise ValueError(f"encoder '{c.motion_encoder}' is not in the manifest")
        rows = manifest.encoders[c.motion_encoder].output_shape[0]
        if any(s.motion_row >= rows for s in c.skills.values()):
            raise ValueError(f"a skill's motion_row is past the motion encoder's {rows} rows")
        self.llm_dir = root / manifest.llm.path
        self.tokenizer = SentencePieceTokenizer(self.llm_dir)
        for tok in (c.image_start, c.image_end, c.context_token):
            if tok not in self.tokenizer.added:
                raise ValueError(f"the tokenizer has no added token {tok}")
        t = manifest.llm.prompt_template
        if QUESTION_FIELD not in t or ANSWER_FIELD not in t or t.index(QUESTION_FIELD) > t.index(ANSWER_FIELD):
            raise ValueError(f"llm.prompt_template needs {QUESTION_FIELD} before {ANSWER_FIELD}")
        head = t.split(QUESTION_FIELD, 1)[0]
        if head.count(c.image_placeholder) < c.num_frames + c.clips:
            raise ValueError(f"llm.prompt_template holds fewer than {c.num_frames + c.clips} {c.image_placeholder}")
        self.template = t
        # The fixed part before the question, cut at the expanded placeholders: text runs around 12 spans.
        self._head_runs = self._expand(head)
        self._lens = [c.tokens_per_frame] * c.num_frames + [1] * c.clips
        self.prompt_runs = lru_cache(maxsize=4096)(self._prompt_runs)

    def _expand(self, head: str) -> list[str]:
        """Text runs between the spans: the first num_frames + clips placeholders become
        `<img>` [span] `</img>`; later ones stay literal (the reference's 13th `<image>`)."""
        c = self.config
        runs, rest = [], head
        for _ in range(c.num_frames + c.clips):
            before, rest = rest.split(c.image_placeholder, 1)
            runs.append(before + c.image_start)
            rest = c.image_end + rest
        runs.append(rest)
        return runs

    # -- views and preprocessing -------------------------------------------------------------------
    def decode_request(self) -> DecodeRequest:
        from vidjudge.server.decode.fragments import ClipIndices
        from vidjudge.server.decode.sampling import UniformIndices
        from vidjudge.server.decode.transforms import Resize

        fv, c = self.frames_view, self.config
        return DecodeRequest((
            ViewSpec(FRAMES, UniformIndices(fv.num_frames), Resize(fv.height, fv.width)),
            ViewSpec(MOTION, ClipIndices(c.clips, self.fragments.clip_len), self.fragments),
        ))

    def views(self) -> list[ViewInfo]:
        fv, mv = self.frames_view, self.motion_view
        return [ViewInfo(FRAMES, fv.num_frames, fv.height, fv.width, fv.sampler),
                ViewInfo(MOTION, mv.num_frames, mv.height, mv.width, mv.sampler)]

    def preprocess(self, decoded: DecodedVideo) -> PreprocessedVideo:
        c = self.config
        frames = decoded.views[FRAMES].frames  # (8, 448, 448, 3) uint8
        pixels = _normalise(frames, _frame_lut(c.frame_mean, c.frame_std)).transpose(0, 3, 1, 2)
        motion = decoded.views[MOTION].frames  # (clips * clip_len, 224, 224, 3) uint8
        clips = _normalise(motion, _motion_lut(c.motion_mean, c.motion_std))
        clips = clips.reshape(c.clips, -1, *clips.shape[1:]).transpose(0, 4, 1, 2, 3)  # (clips, 3, T, H, W)
        pixels, clips = np.ascontiguousarray(pixels), np.ascontiguousarray(clips)
        inputs = {s.vision: pixels for s in c.skills.values()}
        inputs[c.motion_encoder] = clips
        return PreprocessedVideo(inputs=inputs)

    # -- encoders ------------------------------------------------------------------------------------
    def encoders(self) -> list[EncoderSpec]:
        out = []
        for name, enc in self.manifest.encoders.items():
            out.append(EncoderSpec(name, self.root / enc.onnx, tuple(enc.input_shape), tuple(enc.output_shape),
                                   enc.tensorrt, _module_factory(self, name)))
        return out

    def encoders_for(self, dimensions) -> tuple[str, ...]:
        c = self.config
        names = []
        for d in dimensions:
            skill = c.skills.get(d.adapter)
            if skill is not None:
                names.append(skill.vision)
        return tuple(dict.fromkeys(names + [c.motion_encoder]))

    def encoded(self, pre: PreprocessedVideo, outputs: dict[str, np.ndarray]) -> EncodedVideo:
        c = self.config
        spans = {}
        motion = outputs.get(c.motion_encoder)
        for skill, s in c.skills.items():
            if s.vision in outputs:
                spans[f"vision.{skill}"] = EmbeddingSpan(outputs[s.vision])
                if motion is not None:
                    spans[f"motion.{skill}"] = EmbeddingSpan(motion[s.motion_row])
        return EncodedVideo(spans)

    # -- prompt ----------------------------------------------------------------------------------------
    def _prompt_runs(self, question: str, answer_prefix: str) -> tuple[tuple[int, ...], ...]:
        tail = self.template.split(QUESTION_FIELD, 1)[1]
        # The reference strips the user message, which ends with the question (str.strip: trailing
        # whitespace of a prompt or QA question is dropped). str.replace, not str.format: braces are text.
        tail = question.rstrip() + tail.replace(ANSWER_FIELD, answer_prefix)
        runs = list(self._head_runs)
        runs[-1] = runs[-1] + tail
        ids = [tuple(self.tokenizer.encode(r)) for r in runs]
        ids[0] = (self.tokenizer.bos_token_id,) + ids[0]
        return tuple(ids)

    def prompt_ids(self, question: str, answer_prefix: str) -> tuple[int, ...]:
        """The whole prompt's token ids, `<IMG_CONTEXT>` in place of every embedding (as the reference
        tokenizes it)."""
        ctx = self.tokenizer.added[self.config.context_token]
        runs = self.prompt_runs(question, answer_prefix)
        out: list[int] = list(runs[0])
        for n, run in zip(self._lens, runs[1:]):
            out += [ctx] * n + list(run)
        return tuple(out)

    def prompt(self, question: str, answer_prefix: str, video: EncodedVideo, adapter: str | None = None) -> LlmPrompt:
        from vidjudge.errors import InternalError

        skill = adapter if adapter in self.config.skills else None
        if skill is None:
            raise InternalError(f"a love dimension names its skill as adapter (one of {', '.join(self.config.skills)})"
                                f", got {adapter!r}", reason="llm_prompt_mismatch")
        frames = video.spans[f"vision.{skill}"].embeds
        motion = video.spans[f"motion.{skill}"].embeds
        n = self.config.tokens_per_frame
        pieces = [frames[i * n:(i + 1) * n] for i in range(self.config.num_frames)]
        pieces += [motion[i:i + 1] for i in range(self.config.clips)]
        runs = self.prompt_runs(question, answer_prefix)
        parts: list = [runs[0]]
        for embeds, run in zip(pieces, runs[1:]):
            parts += [EmbeddingSpan(embeds), run]
        return LlmPrompt(tuple(parts))

    def max_prompt_tokens(self, questions: list[tuple[str, str]], extra_text_chars: int) -> int:
        text = max(sum(len(r) for r in self.prompt_runs(q, p)) for q, p in questions)
        return sum(self._lens) + text + extra_text_chars + 64

    def check_dimensions(self, dimensions: dict) -> None:
        bad = [n for n, d in dimensions.items() if d.adapter not in self.config.skills]
        if bad:
            raise ValueError(f"love dimensions name their skill as adapter ({', '.join(self.config.skills)}); "
                             f"{', '.join(bad)} do not")

    # -- LLM backends ----------------------------------------------------------------------------------
    def transformers_adapter(self) -> TransformersAdapter:
        return _LlamaTransformers()

    def vllm_adapter(self) -> VllmAdapter:
        from vidjudge.server.families.love_vllm import LoveVllm

        return LoveVllm(self)


@lru_cache(maxsize=8)
def _frame_lut(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(256, C) float32: torchvision's ToTensor + Normalize of each byte value, in float32 as they compute it."""
    x = np.arange(256, dtype=np.float32)[:, None] / np.float32(255)
    lut = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    lut.setflags(write=False)
    return lut


@lru_cache(maxsize=8)
def _motion_lut(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(256, C) float32: (x - mean) / std on the 0-255 scale, in float32."""
    x = np.arange(256, dtype=np.float32)[:, None]
    lut = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    lut.setflags(write=False)
    return lut


def _normalise(frames: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """(..., C) uint8 -> (..., C) float32 through a per-channel table."""
    out = np.empty(frames.shape, np.float32)
    for ch in range(frames.shape[-1]):
        out[..., ch] = lut[:, ch][frames[..., ch]]
    return out


def _module_factory(family: LoveFamily, name: str):
    def build():
        import torch
        from safetensors.torch import load_file

        from vidjudge.server.families.love_modules import (FastMlp, InternVisionEncoder, MotionEncoder, Swin3D,
                                                           SwinConfig, VisionConfig)

        c = family.config
        weights = family.root / Path(family.manifest.encoders[name].onnx).with_suffix(".safetensors")
        sd = load_file(str(weights))
        if name == c.motion_encoder:
            cfg = SwinConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in c.swin.items()})
            rows = family.manifest.encoders[name].output_shape[0]
            hidden = family.manifest.encoders[name].output_shape[-1]
            n_in = cfg.num_features
            module = MotionEncoder(Swin3D(cfg, bf16_attention=c.bf16_attention),
                                   [FastMlp(n_in, hidden) for _ in range(rows)])
        else:
            module = InternVisionEncoder(VisionConfig(**c.vision))
        module.load_state_dict({k: v.to(torch.float32) for k, v in sd.items()}, strict=True)
        return module.eval()

    return build


class _LlamaModel(TransformersModel):
    def __init__(self, model, dtype, device):
        self.model = model
        self.embed = model.get_input_embeddings()
        self.lm_head = model.lm_head
        self.dtype, self.device = dtype, device

    def decoder(self, inputs_embeds, attention_mask, positions, past_key_values=None, use_cache=False):
        out = self.model.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=positions[0],
                               past_key_values=past_key_values, use_cache=use_cache)
        return out.last_hidden_state, out.past_key_values

    def peft_target(self):
        return self.model


class _LlamaTransformers(TransformersAdapter):
    """The converted InternLM2 decoder as transformers' Llama; 1-D positions 0..L-1."""

    def load(self, checkpoint_dir: Path, dtype, device) -> TransformersModel:
        from transformers import LlamaForCausalLM

        model = LlamaForCausalLM.from_pretrained(checkpoint_dir, dtype=dtype).to(device).eval()
        return _LlamaModel(model, dtype, device)

    def inputs(self, model: TransformersModel, prompt: LlmPrompt):
        import torch

        pieces = []
        for part in prompt.parts:
            if isinstance(part, EmbeddingSpan):
                e = torch.as_tensor(part.embeds)
                pieces.append(e.to(device=model.device, dtype=model.dtype))
            elif part:
                pieces.append(model.embed(torch.tensor(part, dtype=torch.long, device=model.device)))
        emb = torch.cat(pieces)
        return emb, torch.arange(emb.shape[0], dtype=torch.long, device=model.device)[None]
