"""`vidjudge export hf CHECKPOINT OUT`: a local Hugging Face Qwen2.5-VL checkpoint -> bundle.

Steps: copy the checkpoint into OUT/llm, export the vision tower to ONNX for
the bundle's fixed frame grid, render the chat-formatted prompt template once
with the checkpoint's own chat template, resolve the dimensions' level-word
token ids, checksum every weight file and write the manifest last (a bundle
without a manifest is never half-valid).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from vidjudge import __version__
from vidjudge.server.bundle import (ANSWER_FIELD, FORMAT_VERSION, MANIFEST, QUESTION_FIELD, Manifest,
                                    checksum_tree)
from vidjudge.server.dimensions import BUILTIN, parse_dimensions, render_dimensions

log = logging.getLogger(__name__)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_SENTINEL = "\ue000QUESTION\ue000"
_DEFAULT_TEMPLATE = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                     "<|vision_start|><|video_pad|><|vision_end|>{question}<|im_end|>\n"
                     "<|im_start|>assistant\n{answer_prefix}")
# Files of an HF checkpoint the bundle needs (weights, config, tokenizer, chat template).
_KEEP = (".json", ".safetensors", ".jinja", ".txt", ".model", ".tiktoken")


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


def export_hf(checkpoint: Path, out: Path, *, num_frames: int = 8, height: int = 448, width: int = 448,
              name: str | None = None, overwrite: bool = False) -> Path:
    from tokenizers import Tokenizer

    from vidjudge.export.vision import export_vision_onnx

    checkpoint, out = Path(checkpoint), Path(out)
    cfg_path = checkpoint / "config.json"
    if not cfg_path.is_file():
        raise ExportError(f"{checkpoint} is not a Hugging Face checkpoint directory (no config.json)")
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("model_type") != "qwen2_5_vl":
        raise ExportError(f"{checkpoint}: model_type {cfg.get('model_type')!r}; only qwen2_5_vl is supported")
    vc, tc = cfg["vision_config"], cfg.get("text_config", cfg)
    patch, tpatch, merge = vc["patch_size"], vc["temporal_patch_size"], vc["spatial_merge_size"]
    if num_frames % tpatch:
        raise ExportError(f"num_frames must be a multiple of the temporal patch size {tpatch}")
    if height % (patch * merge) or width % (patch * merge):
        raise ExportError(f"height and width must be multiples of {patch * merge} (patch x merge)")
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

    grid = (num_frames // tpatch, height // patch, width // patch)
    log.info("exporting the vision tower to ONNX for grid %s", grid)
    export_vision_onnx(llm_dir, grid, out / "encoder" / "vision.onnx")

    pre = {}
    if (checkpoint / "preprocessor_config.json").is_file():
        pre = json.loads((checkpoint / "preprocessor_config.json").read_text())
    video_token = "<|video_pad|>"
    tokenizer = Tokenizer.from_file(str(llm_dir / "tokenizer.json"))
    dims_text = "[[dimension]]\n" + "\n[[dimension]]\n".join(
        "\n".join(f"{k} = {json.dumps(v)}" for k, v in d.items()) for d in BUILTIN)
    dims = parse_dimensions(dims_text, tokenizer, source="built-in dimensions")
    (out / "dimensions.toml").write_text(render_dimensions(list(dims.values())))

    manifest = Manifest(
        format_version=FORMAT_VERSION, name=name or checkpoint.resolve().name, family="qwen2_5_vl",
        vidjudge_version=__version__, source=str(checkpoint.resolve()),
        frames=dict(num_frames=num_frames, height=height, width=width),
        preprocess=dict(patch_size=patch, temporal_patch_size=tpatch, merge_size=merge,
                        mean=tuple(pre.get("image_mean", CLIP_MEAN)), std=tuple(pre.get("image_std", CLIP_STD))),
        vision=dict(onnx="encoder/vision.onnx", grid_thw=grid,
                    num_tokens=grid[0] * grid[1] * grid[2] // (merge * merge),
                    hidden_size=vc.get("out_hidden_size", tc.get("hidden_size")),
                    tokens_per_second=vc.get("tokens_per_second", 2)),
        llm=dict(path="llm", video_token=video_token, prompt_template=_render_prompt_template(llm_dir, video_token),
                 vocab_size=tc["vocab_size"]),
        checksums=checksum_tree(out, ["encoder", "llm"]),
    )
    (out / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
    return out


def export_tiny(out: Path, *, seed: int = 0, overwrite: bool = False) -> Path:
    """A tiny random-weight bundle, built offline in seconds through the same path as real checkpoints."""
    import tempfile

    from vidjudge.export.tiny import build_tiny_checkpoint

    with tempfile.TemporaryDirectory(prefix="vidjudge-tiny-") as tmp:
        ckpt = build_tiny_checkpoint(Path(tmp) / "tiny-qwen2_5_vl", seed=seed)
        return export_hf(ckpt, out, num_frames=8, height=112, width=112, name="tiny-qwen2_5_vl",
                         overwrite=overwrite)
