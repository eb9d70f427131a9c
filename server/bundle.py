"""Bundles: the directory a server loads a judge from, with no network.

    BUNDLE/
      manifest.json      format version, family, views (frame sampling + transform),
                         encoders (ONNX and TensorRT records), LLM location and prompt
                         template, LoRA adapters, head weights, family settings, checksums
      dimensions.toml    what the bundle judges (user-editable, see dimensions.py)
      encoder/*.onnx     visual encoders, fixed input shape per video, dynamic batch
      llm/               Hugging Face checkpoint (transformers and vLLM load it)
      adapters/NAME/     LoRA adapters in PEFT format (optional)
      heads/*.safetensors  weights of regression heads (optional)

The manifest is generic; what a family needs beyond it lives in `family_config`,
which the family validates. `load_bundle` refuses a bundle whose format version
or checksums do not match, naming the file and what to do.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vidjudge.server.dimensions import DimensionFileError, load_dimensions

FORMAT_VERSION = 2
MANIFEST = "manifest.json"


class BundleError(ValueError):
    """The bundle cannot be served; the message says why and what to do."""


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ViewSection(_M):
    """One view of a video: which frames (sampler) and how each is turned into the view's frame."""

    sampler: str = Field(description="the family's sampler name, e.g. segment_centres, uniform_indices")
    num_frames: int = Field(ge=1)
    height: int | None = Field(None, ge=1)
    width: int | None = Field(None, ge=1)
    resize: Literal["bicubic", "none"] = "bicubic"
    options: dict[str, Any] = Field(default_factory=dict)


class TensorRTRecord(_M):
    """A TensorRT engine and what it was built for (engines do not move across GPUs or versions)."""

    engine: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str = "fp16"
    max_batch: int = 32
    opt_batch: int = 8


class EncoderSection(_M):
    """A visual encoder: [batch, *input_shape] float32 -> [batch, *output_shape] embeddings."""

    view: str
    onnx: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    tensorrt: TensorRTRecord | None = None


class LlmSection(_M):
    path: str
    prompt_template: str  # the family's chat-formatted template (placeholders documented by the family)


class AdapterSection(_M):
    """A LoRA adapter (PEFT format) of the language model, chosen per dimension."""

    path: str
    rank: int = Field(ge=1)


class HeadRecord(_M):
    """Weights of a regression head: an MLP `fc1..fcN` in a safetensors file."""

    kind: Literal["mlp"] = "mlp"
    file: str
    activation: Literal["relu", "gelu", "none"] = "relu"
    final_activation: bool = True


class Manifest(_M):
    format_version: int
    name: str
    family: str
    vidjudge_version: str = ""
    source: str = ""
    views: dict[str, ViewSection]
    encoders: dict[str, EncoderSection]
    llm: LlmSection
    adapters: dict[str, AdapterSection] = Field(default_factory=dict)
    heads: dict[str, HeadRecord] = Field(default_factory=dict)
    family_config: dict[str, Any] = Field(default_factory=dict)
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


@dataclass
class Bundle:
    """A loaded bundle: its manifest, its family (model-specific parts), dimensions and heads."""

    root: Path
    manifest: Manifest
    family: Any  # families.base.Family
    dimensions: dict[str, Any]  # name -> dimensions.Dimension
    heads: dict[str, Any]  # name -> heads.Head

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def llm_path(self) -> Path:
        return self.root / self.manifest.llm.path

    def adapter_path(self, name: str) -> Path:
        return self.root / self.manifest.adapters[name].path

    @cached_property
    def sha256(self) -> str:
        """The judge's identity: sha256 over manifest.json (which checksums every weight file) and the
        dimension file (which users edit: a re-worded question is another judge). Results record it."""
        h = hashlib.sha256()
        for name in (MANIFEST, self.manifest.dimensions_file):
            h.update(sha256_file(self.root / name).encode())
        return h.hexdigest()


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
        source = raw.get("source") or "CHECKPOINT"
        raise BundleError(
            f"{path}: bundle format version {version!r}, this vidjudge serves version {FORMAT_VERSION}"
            + (" (version 1 bundles predate model families, views and heads)" if version == 1 else "")
            + f"; re-export it with this vidjudge: `vidjudge export hf {source} {root}.v{FORMAT_VERSION}` "
              "(or `vidjudge export tiny DIR` for the tiny test bundle)")
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


def _check_references(root: Path, manifest: Manifest, dims: dict[str, Any]) -> None:
    for name, enc in manifest.encoders.items():
        if enc.view not in manifest.views:
            raise BundleError(f"{root}: encoder '{name}' reads view '{enc.view}', which the manifest does not define")
    for name, d in dims.items():
        if d.adapter is not None and d.adapter not in manifest.adapters:
            raise BundleError(f"{root}: dimension '{name}' uses adapter '{d.adapter}', which the manifest does not "
                              f"list (adapters: {', '.join(manifest.adapters) or 'none'})")


def load_bundle(root: Path | str, verify: bool = True) -> Bundle:
    from vidjudge.server.families import family_class
    from vidjudge.server.heads import Mlp, build_heads

    root = Path(root).resolve()
    manifest = _read_manifest(root)
    if verify:
        verify_checksums(root, manifest)
    try:
        family = family_class(manifest.family)(root, manifest)
    except (KeyError, ValueError, OSError) as e:
        raise BundleError(f"{root}: {e}") from None
    try:
        dims = load_dimensions(root / manifest.dimensions_file, family.tokenizer.encode)
    except FileNotFoundError:
        raise BundleError(f"{root}: {manifest.dimensions_file} is missing") from None
    except DimensionFileError as e:
        raise BundleError(str(e)) from None
    _check_references(root, manifest, dims)
    try:
        mlps = {name: Mlp.load(root / h.file, h.activation, h.final_activation) for name, h in manifest.heads.items()}
        heads = build_heads(dims, mlps)
        family.check_dimensions(dims)
    except (ValueError, OSError) as e:
        raise BundleError(f"{root}: {e}") from None
    return Bundle(root=root, manifest=manifest, family=family, dimensions=dims, heads=heads)
