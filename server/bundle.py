"""Bundles: the directory a server loads a judge from, with no network.

    BUNDLE/
      manifest.json      format version, family, frame sampling, preprocessing,
                         prompt template, encoder/LLM locations, file checksums
      dimensions.toml    what the bundle judges (user-editable, see dimensions.py)
      encoder/vision.onnx  visual encoder for the bundle's fixed frame grid
      llm/               Hugging Face checkpoint (transformers and vLLM load it)

`load_bundle` refuses a bundle whose format version or checksums do not match,
naming the file and what to do.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vidjudge.server.dimensions import PROMPT_FIELD, Dimension, DimensionFileError, load_dimensions
from vidjudge.server.seam_shim import FrameSpec

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
QUESTION_FIELD = "{question}"
ANSWER_FIELD = "{answer_prefix}"


class BundleError(ValueError):
    """The bundle cannot be served; the message says why and what to do."""


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FramesSection(_M):
    num_frames: int = Field(ge=2)
    height: int = Field(ge=28)
    width: int = Field(ge=28)
    sampling: str = "segment_centre"


class PreprocessSection(_M):
    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "bicubic"


class TensorRTRecord(_M):
    """A TensorRT engine and what it was built for (engines do not move across GPUs or versions)."""

    engine: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str = "fp16"
    max_batch: int = 32
    opt_batch: int = 8


class VisionSection(_M):
    onnx: str
    grid_thw: tuple[int, int, int]
    num_tokens: int
    hidden_size: int
    tokens_per_second: float
    tensorrt: TensorRTRecord | None = None


class LlmSection(_M):
    path: str
    video_token: str = "<|video_pad|>"
    # Chat-formatted prompt with {question} and {answer_prefix}; one video_token marks the video.
    prompt_template: str
    vocab_size: int


class Manifest(_M):
    format_version: int
    name: str
    family: str
    vidjudge_version: str = ""
    source: str = ""
    frames: FramesSection
    preprocess: PreprocessSection
    vision: VisionSection
    llm: LlmSection
    dimensions_file: str = "dimensions.toml"
    checksums: dict[str, str] = Field(default_factory=dict)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def checksum_tree(root: Path, subdirs: list[str]) -> dict[str, str]:
    """sha256 of every file under the given subdirectories, keyed by bundle-relative path."""
    out = {}
    for sub in subdirs:
        for p in sorted((root / sub).rglob("*")):
            if p.is_file():
                out[p.relative_to(root).as_posix()] = sha256_file(p)
    return out


@dataclass(frozen=True)
class PromptIds:
    """Token ids around the single video placeholder: prefix + <video> + suffix."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]


@dataclass
class Bundle:
    root: Path
    manifest: Manifest
    dimensions: dict[str, Dimension]
    tokenizer: object  # tokenizers.Tokenizer
    video_token_id: int
    _prompt_cache: dict = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def frame_spec(self) -> FrameSpec:
        f = self.manifest.frames
        return FrameSpec(num_frames=f.num_frames, height=f.height, width=f.width)

    @property
    def encoder_path(self) -> Path:
        return self.root / self.manifest.vision.onnx

    @property
    def llm_path(self) -> Path:
        return self.root / self.manifest.llm.path

    def prompt_text(self, dim: Dimension, prompt: str | None) -> str:
        """The full prompt text (video as one placeholder token)."""
        question = dim.question.replace(PROMPT_FIELD, prompt or "") if dim.requires_prompt else dim.question
        # str.replace, not str.format: user prompts may contain braces.
        return self.manifest.llm.prompt_template.replace(QUESTION_FIELD, question).replace(
            ANSWER_FIELD, dim.answer_prefix
        )

    def prompt_ids(self, dim: Dimension, prompt: str | None) -> PromptIds:
        """Tokenised prompt; cached for dimensions that do not depend on the request."""
        key = dim.name if not dim.requires_prompt else None
        if key is not None and key in self._prompt_cache:
            return self._prompt_cache[key]
        text = self.prompt_text(dim, prompt)
        before, after = text.split(self.manifest.llm.video_token, 1)
        enc = self.tokenizer.encode
        ids = PromptIds(tuple(enc(before, add_special_tokens=False).ids),
                        tuple(enc(after, add_special_tokens=False).ids))
        if key is not None:
            self._prompt_cache[key] = ids
        return ids


def _read_manifest(root: Path) -> Manifest:
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(f"{root} is not a vidjudge bundle: {MANIFEST} is missing "
                          "(build one with `vidjudge export tiny DIR` or `vidjudge export hf CKPT DIR`)")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BundleError(f"{path}: not valid JSON: {e}") from e
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format version {version!r}, this vidjudge serves version "
                          f"{FORMAT_VERSION}; re-export the bundle with this vidjudge")
    try:
        return Manifest.model_validate(raw)
    except ValidationError as e:
        raise BundleError(f"{path}: invalid manifest: {e}") from None


def verify_checksums(root: Path, manifest: Manifest) -> None:
    if not manifest.checksums:
        raise BundleError(f"{root}: the manifest lists no checksums; re-export the bundle")
    for rel, expected in manifest.checksums.items():
        p = root / rel
        if not p.is_file():
            raise BundleError(f"{root}: {rel} listed in the manifest is missing")
        if sha256_file(p) != expected:
            raise BundleError(f"{root}: checksum mismatch for {rel}: the file changed after export "
                              "(corrupt copy?); re-copy or re-export the bundle")


@lru_cache(maxsize=8)
def _tokenizer(path: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


def load_bundle(root: Path | str, verify: bool = True) -> Bundle:
    root = Path(root).resolve()
    manifest = _read_manifest(root)
    if verify:
        verify_checksums(root, manifest)
    tok_path = root / manifest.llm.path / "tokenizer.json"
    if not tok_path.is_file():
        raise BundleError(f"{root}: {tok_path.relative_to(root)} is missing")
    tokenizer = _tokenizer(str(tok_path))
    video_id = tokenizer.token_to_id(manifest.llm.video_token)
    if video_id is None:
        raise BundleError(f"{root}: the tokenizer has no {manifest.llm.video_token} token")
    template = manifest.llm.prompt_template
    if template.count(manifest.llm.video_token) != 1 or QUESTION_FIELD not in template or ANSWER_FIELD not in template:
        raise BundleError(f"{root}: llm.prompt_template needs one {manifest.llm.video_token}, "
                          f"{QUESTION_FIELD} and {ANSWER_FIELD}")
    try:
        dims = load_dimensions(root / manifest.dimensions_file, tokenizer)
    except FileNotFoundError:
        raise BundleError(f"{root}: {manifest.dimensions_file} is missing") from None
    except DimensionFileError as e:
        raise BundleError(str(e)) from None
    return Bundle(root=root, manifest=manifest, dimensions=dims, tokenizer=tokenizer, video_token_id=video_id)
