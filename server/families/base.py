"""The family seam: everything model-specific about a judge, behind one small interface.

A family (chosen by `manifest.family`) decides
  1. its views of a video: which frames, sampled how, turned into what (`decode_request`);
  2. preprocessing of those frames into each encoder's input (`preprocess`, in a thread);
  3. its visual encoders: ONNX/TensorRT records and a torch reference (`encoders`), and how
     their outputs become embedding spans (`encoded`);
  4. prompt layout: token ids and embedding spans in the model's chat template (`prompt`);
  5. how each LLM backend takes such a prompt (`transformers_adapter`, `vllm_adapter`).

The pipeline, the batchers, the heads and the LLM backends never look at a model
name: adding a family is one module here (registered in `families/__init__.py`)
plus an exporter that writes its bundles.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol

import numpy as np

from vidjudge.server.types import DecodedVideo, DecodeRequest, EncodedVideo, LlmPrompt, PreprocessedVideo, Turn


class Tokenizer(Protocol):
    """What the server needs of a tokenizer (families wrap theirs)."""

    eos_token_ids: tuple[int, ...]

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, no special tokens added."""

    def decode(self, ids: list[int] | tuple[int, ...]) -> str:
        """Text of `ids`, special tokens skipped."""


@dataclass(frozen=True)
class EncoderSpec:
    """One visual encoder of a bundle, as the encoder backends need it."""

    name: str
    onnx_path: Path
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    tensorrt: Any = None  # bundle.TensorRTRecord | None
    # Builds the float32 torch reference module ([B, *input] -> [B, *output]); used by the torch backend.
    torch_module: Callable[[], Any] | None = None
    items_per_video: int = 1  # most inputs one video gives this encoder (an image encoder: one per frame)


@dataclass(frozen=True)
class ViewInfo:
    """A view as ListModels shows it."""

    name: str
    num_frames: int
    height: int
    width: int
    strategy: str


class TransformersModel(ABC):
    """The parts of a loaded Hugging Face model the transformers backend drives."""

    embed: Any  # nn.Embedding: token ids -> embeddings
    lm_head: Any  # nn.Linear: final-norm hidden state -> vocabulary logits
    dtype: Any
    device: Any

    @abstractmethod
    def decoder(self, inputs_embeds, attention_mask, positions, past_key_values=None, use_cache=False):
        """Run the decoder stack; returns (last_hidden_state [B, L, H] after the final norm, cache)."""

    def peft_target(self):
        """The module LoRA adapters wrap (the language model); default: the whole model."""
        return self


class TransformersAdapter(ABC):
    """How the transformers backend loads a family's model and feeds it a prompt."""

    @abstractmethod
    def load(self, checkpoint_dir: Path, dtype, device) -> TransformersModel: ...

    @abstractmethod
    def inputs(self, model: TransformersModel, prompt: LlmPrompt):
        """(embeddings [L, H] in the model's dtype, positions [A, L] int64) for one prompt; A = position axes."""

    def continuation_positions(self, positions, count: int):
        """Positions [A, count] of `count` generated tokens after a prompt whose positions were `positions`:
        text after the prompt continues from the largest position used."""
        import torch

        start = int(positions.max()) + 1
        return torch.arange(start, start + count, dtype=torch.long).expand(positions.shape[0], count)


class VllmAdapter(ABC):
    """How the vLLM backend configures its engine for a family and hands it a prompt."""

    @abstractmethod
    def engine_kwargs(self) -> dict:
        """Extra engine arguments (multi-modal limits, ...)."""

    @abstractmethod
    def prompt(self, prompt: LlmPrompt) -> dict:
        """A vLLM prompt dict (prompt_token_ids, multi_modal_data) for one prompt."""


class Family(ABC):
    name: ClassVar[str]

    def __init__(self, root: Path, manifest):
        self.root = root
        self.manifest = manifest

    tokenizer: Tokenizer

    def fixed_size_view(self, view: str, encoder: str, sampler: str, how: str):
        """The manifest's `view`, checked to be what a fixed-size image family reads: frames picked by
        `sampler` (described as `how`), resized bicubically to a fixed size, no options; and `encoder`
        present. Raises ValueError naming what the bundle has instead."""
        if view not in self.manifest.views or encoder not in self.manifest.encoders:
            raise ValueError(f"a {self.name} bundle needs view '{view}' and encoder '{encoder}'")
        v = self.manifest.views[view]
        if v.sampler != sampler or v.resize != "bicubic" or not v.height or not v.width or v.options:
            raise ValueError(f"view '{view}': {self.name} samples {how}, resized bicubically to a fixed size, with "
                             f"no options (got sampler {v.sampler!r}, resize {v.resize!r}, options {v.options})")
        return v

    @abstractmethod
    def decode_request(self) -> DecodeRequest: ...

    @abstractmethod
    def preprocess(self, decoded: DecodedVideo) -> PreprocessedVideo: ...

    @abstractmethod
    def encoders(self) -> list[EncoderSpec]: ...

    @abstractmethod
    def encoded(self, pre: PreprocessedVideo, outputs: dict[str, np.ndarray]) -> EncodedVideo:
        """Embedding spans from each encoder's output for this video."""

    def encoders_for(self, dimensions) -> tuple[str, ...]:
        """The encoders a request for these dimensions needs (names of `encoders()`); default: all of them.
        A family whose encoders differ per fine-tune (LOVE's per-skill vision towers) runs only the ones
        the dimensions' adapters use."""
        return tuple(spec.name for spec in self.encoders())

    @abstractmethod
    def prompt(self, question: str, answer_prefix: str, video: EncodedVideo, adapter: str | None = None) -> LlmPrompt:
        """The full prompt: the question about the video, the assistant's answer started with `answer_prefix`.
        `adapter`: the dimension's LoRA adapter (None: the base model), for families whose embeddings
        depend on it."""

    def chat(self, turn: Turn) -> LlmPrompt:
        """A chat turn laid out (system message, text and frames of any videos, the answer's start): what
        multi-call and group heads (Video-Bench) ask. Families that take one video per prompt say so."""
        raise NotImplementedError(f"the {self.name} family takes one question about one video per prompt; "
                                  "chains and group judgements need a family with chat turns (qwen2_5_vl_frames)")

    @abstractmethod
    def max_prompt_tokens(self, questions: list[tuple[str, str]], extra_text_chars: int) -> int:
        """Longest prompt the given (question, answer_prefix) pairs can make with `extra_text_chars` more
        characters of request text (prompts, QA questions)."""

    @abstractmethod
    def views(self) -> list[ViewInfo]: ...

    @abstractmethod
    def transformers_adapter(self) -> TransformersAdapter: ...

    @abstractmethod
    def vllm_adapter(self) -> VllmAdapter: ...

    def check_dimensions(self, dimensions: dict) -> None:
        """Refuse dimensions this family cannot serve (ValueError naming them); default: all are fine."""
