"""`vidjudge export hf CHECKPOINT OUT`: a local Hugging Face Qwen2.5-VL checkpoint -> bundle.

Steps: copy the checkpoint into OUT/llm, export the vision tower to ONNX for
the bundle's fixed frame grid, render the chat-formatted prompt template once
with the checkpoint's own chat template, resolve the dimensions' level-word
token ids, checksum every weight file and write the manifest last (a bundle
without a manifest is never half-valid). The bundle's family is `qwen2_5_vl`
(server/families/qwen2_5_vl.py reads what this writes).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from vidjudge import __version__
from vidjudge.server.bundle import FORMAT_VERSION, MANIFEST, Manifest, checksum_tree
from vidjudge.server.dimensions import BUILTIN, dimensions_text, parse_dimensions, render_dimensions
from vidjudge.server.families.qwen2_5_vl import ANSWER_FIELD, ENCODER, QUESTION_FIELD, VIEW, HfJsonTokenizer

log = logging.getLogger(__name__)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_SENTINEL = "\ue000QUESTION\ue000"
_DEFAULT_TEMPLATE = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                     "<|vision_start|><|video_pad|><|vision_end|>{question}<|im_end|>\n"
                     "<|im_start|>assistant\n{answer_prefix}")
# Files of an HF checkpoint the bundle needs (weights, config, tokenizer, chat template).
_KEEP = (".json", ".safetensors", ".jinja", ".txt", ".model", ".tiktoken")
# Bundle subdirectories whose files are checksummed (dimensions.toml is left editable).
CHECKED_DIRS = ["encoder", "llm", "heads", "adapters"]


class ExportError(ValueError):
    pass


def _render_prompt_template(llm_dir: Path, video_token: str) -> str:
    """The checkpoint's chat template rendered once, with {question} and {answer_prefix} left as fields."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llm_dir)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": _SENTINEL}]}]
    try:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as e:  # no chat template in the checkpoint
        log.warning("checkpoint has no usable chat template (%s); using Qwen's ChatML", e)
        return _DEFAULT_TEMPLATE
    if text.count(video_token) != 1 or text.count(_SENTINEL) != 1:
        log.warning("chat template did not render one %s and the question; using Qwen's ChatML", video_token)
        return _DEFAULT_TEMPLATE
    return text.replace(_SENTINEL, QUESTION_FIELD) + ANSWER_FIELD


def read_qwen_config(checkpoint: Path) -> tuple[dict, dict]:
    """(vision_config, text_config) of a local Qwen2.5-VL checkpoint; ExportError if it is not one."""
    cfg_path = checkpoint / "config.json"
    if not cfg_path.is_file():
        raise ExportError(f"{checkpoint} is not a Hugging Face checkpoint directory (no config.json)")
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("model_type") != "qwen2_5_vl":
        raise ExportError(f"{checkpoint}: model_type {cfg.get('model_type')!r}; only qwen2_5_vl is supported")
    return cfg["vision_config"], cfg.get("text_config", cfg)


def check_frame_size(vc: dict, height: int, width: int) -> None:
    unit = vc["patch_size"] * vc["spatial_merge_size"]
    if height % unit or width % unit:
        raise ExportError(f"height and width must be multiples of {unit} (patch x merge)")


def start_bundle(checkpoint: Path, out: Path, overwrite: bool) -> Path:
    """Create OUT with encoder/ and llm/ (the checkpoint's weights, config, tokenizer and chat template)."""
    if out.exists():
        if not overwrite:
            raise ExportError(f"{out} exists; pass --overwrite to replace it")
        shutil.rmtree(out)
    (out / "encoder").mkdir(parents=True)
    llm_dir = out / "llm"
    llm_dir.mkdir()
    for p in checkpoint.iterdir():
        if p.is_file() and p.name.endswith(_KEEP):
            shutil.copy2(p, llm_dir / p.name)
    return llm_dir


def preprocessor_stats(checkpoint: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The checkpoint's image mean and std (CLIP's when it has no preprocessor config)."""
    pre = {}
    if (checkpoint / "preprocessor_config.json").is_file():
        pre = json.loads((checkpoint / "preprocessor_config.json").read_text())
    return tuple(pre.get("image_mean", CLIP_MEAN)), tuple(pre.get("image_std", CLIP_STD))


def export_hf(checkpoint: Path, out: Path, *, num_frames: int = 8, height: int = 448, width: int = 448,
              name: str | None = None, overwrite: bool = False, extra_dimensions: list[dict[str, Any]] = (),
              heads: dict[str, Any] | None = None, adapters: dict[str, Path] | None = None,
              builtin_dimensions: bool = True) -> Path:
    """extra_dimensions: dimension tables beyond the built-in ones (builtin_dimensions=False: instead of them,
    for a judge trained on fewer dimensions); heads: name -> (safetensors path to copy
    into heads/, bundle.HeadRecord fields) for regression dimensions; adapters: name -> a LoRA adapter
    directory in PEFT format (adapter_config.json + adapter_model.safetensors), copied into adapters/."""
    from vidjudge.export.vision import export_vision_onnx

    checkpoint, out = Path(checkpoint), Path(out)
    vc, tc = read_qwen_config(checkpoint)
    patch, tpatch, merge = vc["patch_size"], vc["temporal_patch_size"], vc["spatial_merge_size"]
    if num_frames % tpatch:
        raise ExportError(f"num_frames must be a multiple of the temporal patch size {tpatch}")
    check_frame_size(vc, height, width)
    llm_dir = start_bundle(checkpoint, out, overwrite)

    grid = (num_frames // tpatch, height // patch, width // patch)
    log.info("exporting the vision tower to ONNX for grid %s", grid)
    onnx = f"encoder/{ENCODER}.onnx"
    export_vision_onnx(llm_dir, grid, out / onnx)

    head_records = {}
    for head_name, (weights, record) in (heads or {}).items():
        (out / "heads").mkdir(exist_ok=True)
        rel = f"heads/{head_name}.safetensors"
        shutil.copy2(weights, out / rel)
        head_records[head_name] = {**record, "file": rel}

    adapter_records = {}
    for adapter_name, src in (adapters or {}).items():
        conf = Path(src) / "adapter_config.json"
        if not conf.is_file() or not (Path(src) / "adapter_model.safetensors").is_file():
            raise ExportError(f"adapter {adapter_name}: {src} is not a PEFT LoRA directory "
                              "(adapter_config.json and adapter_model.safetensors)")
        rel = f"adapters/{adapter_name}"
        shutil.copytree(src, out / rel, ignore=shutil.ignore_patterns("README.md"))
        adapter_records[adapter_name] = {"path": rel, "rank": int(json.loads(conf.read_text())["r"])}

    mean, std = preprocessor_stats(checkpoint)
    video_token = "<|video_pad|>"
    dims = parse_dimensions(dimensions_text([*(BUILTIN if builtin_dimensions else ()), *extra_dimensions]),
                            HfJsonTokenizer(llm_dir).encode,
                            source="built-in dimensions")
    (out / "dimensions.toml").write_text(render_dimensions(list(dims.values())))

    n_tokens = grid[0] * grid[1] * grid[2] // (merge * merge)
    manifest = Manifest(
        format_version=FORMAT_VERSION, name=name or checkpoint.resolve().name, family="qwen2_5_vl",
        vidjudge_version=__version__, source=str(checkpoint.resolve()),
        views={VIEW: dict(sampler="segment_centres", num_frames=num_frames, height=height, width=width,
                          resize="bicubic")},
        encoders={ENCODER: dict(view=VIEW, onnx=onnx, input_shape=(grid[0] * grid[1] * grid[2],
                                                                   3 * tpatch * patch * patch),
                                output_shape=(n_tokens, vc.get("out_hidden_size", tc.get("hidden_size"))))},
        llm=dict(path="llm", prompt_template=_render_prompt_template(llm_dir, video_token)),
        heads=head_records,
        adapters=adapter_records,
        family_config=dict(patch_size=patch, temporal_patch_size=tpatch, merge_size=merge,
                           mean=mean, std=std,
                           tokens_per_second=vc.get("tokens_per_second", 2), video_token=video_token),
        checksums=checksum_tree(out, [d for d in CHECKED_DIRS if (out / d).is_dir()]),
    )
    (out / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
    return out


def export_tiny(out: Path, *, seed: int = 0, overwrite: bool = False, checkpoint: Path | None = None) -> Path:
    """A tiny random-weight bundle, built offline in seconds through the same path as real checkpoints:
    the built-in level-token dimensions plus a regression dimension (a tiny random MLP head) and a
    yes/no QA dimension, so every head can be exercised, and a random LoRA adapter `sharp` that a
    dimension can name. `checkpoint`: an already built tiny checkpoint (tests build it once); by default
    one is built from `seed`."""
    import tempfile

    from vidjudge.export.tiny import TINY_DIMENSIONS, build_tiny_checkpoint, write_tiny_lora, write_tiny_mlp

    with tempfile.TemporaryDirectory(prefix="vidjudge-tiny-") as tmp:
        ckpt = checkpoint or build_tiny_checkpoint(Path(tmp) / "tiny-qwen2_5_vl", seed=seed)
        mlp = write_tiny_mlp(Path(tmp) / "quality_mlp.safetensors", seed=seed)
        lora = write_tiny_lora(ckpt, Path(tmp) / "sharp", seed=seed)
        return export_hf(ckpt, out, num_frames=8, height=112, width=112, name="tiny-qwen2_5_vl",
                         overwrite=overwrite, extra_dimensions=TINY_DIMENSIONS, adapters={"sharp": lora},
                         heads={"quality_mlp": (mlp, {"kind": "mlp", "activation": "relu", "final_activation": True})})
