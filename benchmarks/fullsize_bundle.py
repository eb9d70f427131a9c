"""Build a random-weight bundle with a real judge's shapes (Qwen2.5-VL-7B), offline, without 60 GB of RAM.

    python -m vidjudge.benchmarks.fullsize_bundle bundles/qwen7b-random --preset 7b          # GPU machine
    python -m vidjudge.benchmarks.fullsize_bundle bundles/qwen7b-random --preset 7b --dry-run
    python -m vidjudge.benchmarks.fullsize_bundle /tmp/small --preset small --height 112 --width 112

Throughput depends on shapes, not on what the weights learned, so a bundle with the exact
architecture of Qwen2.5-VL-7B and random weights measures what a real 7B judge would cost,
with nothing to download. Steps:

1. config.json of the preset (7b: text hidden 3584, 28 layers, 28 heads, 4 KV heads, intermediate
   18944, vocab 152064, mRoPE sections [16, 24, 24]; vision depth 32, hidden 1280, 16 heads,
   intermediate 3420, out_hidden 3584, window 112, full attention in blocks 7/15/23/31,
   tokens_per_second 2) and a tokenizer built offline (vidjudge.export.tiny's byte-level BPE:
   Qwen's special tokens, each level word a single token; the model's vocabulary of 152064 rows
   pads it, as Qwen's own 151665-token tokenizer is padded to 152064);
2. the parameter list comes from the model built on the meta device (no memory); each tensor is
   drawn directly in bfloat16 (normal(0, initializer_range); norms 1, biases 0) from its own seeded
   generator and written shard by shard (``--shard-gb``), so peak memory is about one shard;
   names follow the original Qwen2.5-VL checkpoint layout (model.layers.*, visual.*, lm_head);
3. `vidjudge.export.hf.export_hf` on it (``--frames`` 8 of ``--height`` x ``--width`` 448x448 by
   default): copies the checkpoint into the bundle, exports the vision tower to ONNX (float32; the 7B
   tower is ~0.67 B parameters = ~2.7 GB, over protobuf's 2 GB limit, so the exporter writes it with
   external data next to vision.onnx), renders the prompt template, writes the manifest;
4. removes the intermediate checkpoint unless ``--keep-checkpoint``.

Disk: the 7b preset needs ~16.6 GB for the checkpoint, the same again for the bundle's copy, plus
~2.7 GB of ONNX: ~37 GB free at the peak. The free space is checked first; too little is refused
with the numbers. ``--dry-run`` prints the sizes and stops. ``--scale F`` keeps a fraction F of the
layers (text and vision) at full width: per-layer costs stay real while the bundle shrinks.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidjudge.benchmarks import common

GB = 1e9

QWEN25_VL_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, in_channels=3,
                        patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                        fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2, hidden_act="silu",
                        initializer_range=0.02)
QWEN25_TEXT = dict(max_position_embeddings=128000, rms_norm_eps=1e-6, hidden_act="silu", use_sliding_window=False,
                   sliding_window=32768, initializer_range=0.02, attention_dropout=0.0)
MROPE_SECTION = [16, 24, 24]  # sums to head_dim / 2 = 64 (head_dim 128)

PRESETS: dict[str, dict[str, Any]] = {
    # Qwen/Qwen2.5-VL-7B-Instruct's config.json
    "7b": dict(text=dict(QWEN25_TEXT, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                         num_attention_heads=28, num_key_value_heads=4, vocab_size=152064, max_window_layers=28),
               vision=dict(QWEN25_VL_VISION, out_hidden_size=3584), tie_word_embeddings=False,
               description="Qwen2.5-VL-7B shapes (8.29 B parameters)"),
    # Qwen/Qwen2.5-VL-3B-Instruct's config.json
    "3b": dict(text=dict(QWEN25_TEXT, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                         num_attention_heads=16, num_key_value_heads=2, vocab_size=151936, max_window_layers=70),
               vision=dict(QWEN25_VL_VISION, out_hidden_size=2048), tie_word_embeddings=True,
               description="Qwen2.5-VL-3B shapes (3.75 B parameters)"),
    # Same structure and head size (128, so the real mRoPE sections apply), a few layers, narrow:
    # the padded 152064-row vocabulary is kept, so tokenizer padding and large heads are exercised.
    "small": dict(text=dict(QWEN25_TEXT, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                            num_attention_heads=2, num_key_value_heads=1, vocab_size=152064, max_window_layers=2),
                  vision=dict(QWEN25_VL_VISION, depth=4, hidden_size=128, intermediate_size=256, num_heads=2,
                              fullatt_block_indexes=[1, 3], out_hidden_size=256),
                  tie_word_embeddings=False,
                  description="small test shape: Qwen2.5-VL structure, head_dim 128, vocab 152064 (~80 M parameters)"),
}

# Qwen2.5-VL's processor limits (the server resizes frames itself; these are for other tools).
MIN_PIXELS = 56 * 56
MAX_PIXELS = 28 * 28 * 16384


# --------------------------------------------------------------------------- config


def preset_config(preset: str, scale: float = 1.0) -> tuple[dict, dict, bool]:
    """(text, vision, tie_word_embeddings) of a preset, layers scaled by `scale` (widths kept)."""
    if preset not in PRESETS:
        raise SystemExit(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if not 0 < scale <= 1:
        raise SystemExit("--scale must be in (0, 1]")
    p = PRESETS[preset]
    text, vision = dict(p["text"]), dict(p["vision"])
    if scale < 1:
        layers = max(1, round(text["num_hidden_layers"] * scale))
        text["num_hidden_layers"] = layers
        text["max_window_layers"] = min(text["max_window_layers"], layers)
        depth = max(1, round(vision["depth"] * scale))
        # Keep one full-attention block per quarter, as the original (7, 15, 23, 31 of 32).
        n_full = len(vision["fullatt_block_indexes"])
        vision["fullatt_block_indexes"] = sorted({max(0, round((k + 1) * depth / n_full) - 1) for k in range(n_full)})
        vision["depth"] = depth
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    if sum(MROPE_SECTION) * 2 != head_dim:
        raise AssertionError(f"mRoPE sections {MROPE_SECTION} need head_dim {2 * sum(MROPE_SECTION)}, got {head_dim}")
    return text, vision, bool(p["tie_word_embeddings"])


def build_hf_config(text: dict, vision: dict, tie: bool, tokenizer):
    from transformers import Qwen2_5_VLConfig

    from vidjudge.export.tiny import SPECIAL_TOKENS

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    if len(tokenizer) > text["vocab_size"]:
        raise AssertionError(f"tokenizer has {len(tokenizer)} tokens, more than the vocabulary {text['vocab_size']}")
    t = dict(text, rope_parameters={"rope_type": "default", "mrope_section": list(MROPE_SECTION), "rope_theta": 1e6},
             bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
             tie_word_embeddings=tie, dtype="bfloat16")
    cfg = Qwen2_5_VLConfig(text_config=t, vision_config=dict(vision), image_token_id=ids["<|image_pad|>"],
                           video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                           vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=tie, dtype="bfloat16")
    cfg.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    return cfg


def checkpoint_name(model_key: str) -> str:
    """transformers 5.19 module path -> the original Qwen2.5-VL checkpoint name (what save_pretrained writes)."""
    if model_key.startswith("model.language_model."):
        return "model." + model_key[len("model.language_model."):]
    if model_key.startswith("model.visual."):
        return "visual." + model_key[len("model.visual."):]
    return model_key


@dataclass
class Param:
    name: str
    shape: tuple[int, ...]
    init: str  # normal | ones | zeros
    std: float = 0.0

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return 2 * self.numel  # bfloat16


def parameter_plan(config) -> list[Param]:
    """Every tensor of the checkpoint with its shape and initialisation, from a meta-device model."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(config)
    text_std = config.text_config.initializer_range
    vision_std = config.vision_config.initializer_range
    plan = []
    for key, t in model.state_dict().items():
        name = checkpoint_name(key)
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # tied: not stored (as save_pretrained does)
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "bias":
            init = "zeros"
        elif t.dim() == 1 and ("norm" in name or ".ln_" in name):
            init = "ones"
        else:
            init = "normal"
        std = vision_std if name.startswith("visual.") else text_std
        plan.append(Param(name, tuple(t.shape), init, std))
    return plan


def shard_plan(params: list[Param], shard_bytes: int) -> list[list[Param]]:
    shards: list[list[Param]] = [[]]
    size = 0
    for p in params:
        if shards[-1] and size + p.nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(p)
        size += p.nbytes
    return shards


def make_tensor(p: Param, seed: int):
    import torch

    if p.init == "ones":
        return torch.ones(p.shape, dtype=torch.bfloat16)
    if p.init == "zeros":
        return torch.zeros(p.shape, dtype=torch.bfloat16)
    g = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(p.name.encode())) % (2**63))
    return torch.empty(p.shape, dtype=torch.bfloat16).normal_(0.0, p.std, generator=g)


# --------------------------------------------------------------------------- writing


def write_tokenizer_files(out: Path, tok) -> None:
    """The tokenizer (with its chat template) and Qwen2.5-VL's processor configs."""
    from vidjudge.export.tiny import _processor_files

    tok.save_pretrained(out)
    _processor_files(out)
    for name in ("preprocessor_config.json", "video_preprocessor_config.json"):
        path = out / name
        cfg = json.loads(path.read_text())
        cfg["size"] = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
        cfg["min_pixels"], cfg["max_pixels"] = MIN_PIXELS, MAX_PIXELS
        path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def write_checkpoint(out: Path, config, params: list[Param], *, seed: int, shard_gb: float,
                     progress: common.Progress) -> dict:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    gen = {"bos_token_id": config.text_config.bos_token_id, "eos_token_id": config.text_config.eos_token_id,
           "pad_token_id": config.text_config.pad_token_id, "do_sample": False}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    shards = shard_plan(params, int(shard_gb * GB))
    n = len(shards)
    weight_map: dict[str, str] = {}
    total = sum(p.nbytes for p in params)
    written = 0
    t0 = time.perf_counter()
    for i, shard in enumerate(shards):
        fname = "model.safetensors" if n == 1 else f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        tensors = {}
        for p in shard:
            tensors[p.name] = make_tensor(p, seed)
            written += p.nbytes
            progress.update(f"weights: {written / GB:.2f} / {total / GB:.2f} GB")
        save_file(tensors, str(out / fname), metadata={"format": "pt"})
        del tensors
        for p in shard:
            weight_map[p.name] = fname
    if n > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    progress.done()
    return {"shards": n, "bytes": total, "write_s": time.perf_counter() - t0}


# --------------------------------------------------------------------------- checks


def _free_bytes(path: Path) -> int:
    p = path
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def _mem_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def needs(params: list[Param], shard_gb: float, export: bool) -> dict:
    ckpt = sum(p.nbytes for p in params)
    vision = sum(p.numel for p in params if p.name.startswith("visual."))
    onnx = 4 * vision if export else 0
    largest = max(p.nbytes for p in params)
    return {"parameters": sum(p.numel for p in params), "vision_parameters": vision, "checkpoint_bytes": ckpt,
            "bundle_bytes": ckpt + onnx if export else 0, "onnx_bytes": onnx,
            "onnx_external_data": onnx > (1 << 30),
            "disk_peak_bytes": int((ckpt + (ckpt + onnx if export else 0)) * 1.03) + (1 << 28),
            # one shard of bfloat16 tensors being written (plus the largest tensor at most), or the
            # float32 vision tower while exporting (x~4 for the exporter's copies)
            "ram_peak_bytes": int(max(min(shard_gb * GB, ckpt) + largest, 4 * onnx))}


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m vidjudge.benchmarks.fullsize_bundle",
                                 description=__doc__.split("\n\n", 1)[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="Bundle directory to create.")
    ap.add_argument("--preset", required=True, choices=list(PRESETS),
                    help="; ".join(f"{k}: {v['description']}" for k, v in PRESETS.items()))
    ap.add_argument("--scale", type=float, default=1.0, metavar="F",
                    help="Keep this fraction of the layers, text and vision, at full width (default 1).")
    ap.add_argument("--frames", type=int, default=8, help="Frames per video in the bundle (default 8).")
    ap.add_argument("--height", type=int, default=448, help="Frame height (default 448).")
    ap.add_argument("--width", type=int, default=448, help="Frame width (default 448).")
    ap.add_argument("--checkpoint-dir", type=Path,
                    help="Where the intermediate HF checkpoint goes (default: OUT.checkpoint beside the bundle).")
    ap.add_argument("--keep-checkpoint", action="store_true", help="Keep the intermediate checkpoint.")
    ap.add_argument("--checkpoint-only", action="store_true",
                    help="Write the HF checkpoint only (to --checkpoint-dir or OUT), no bundle export.")
    ap.add_argument("--shard-gb", type=float, default=4.0, help="Safetensors shard size in GB (default 4).")
    ap.add_argument("--seed", type=int, default=0, help="Weights seed (default 0).")
    ap.add_argument("--name", help="Bundle (model) name (default random-qwen2_5_vl-PRESET).")
    ap.add_argument("--overwrite", action="store_true", help="Replace OUT (and the checkpoint dir) if they exist.")
    ap.add_argument("--dry-run", action="store_true", help="Print parameters, disk and memory needs; write nothing.")
    ap.add_argument("--out-json", "--report", dest="report", metavar="FILE",
                    help="Write what was built (sizes, times) as JSON.")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    common.quiet_libraries()
    progress = common.Progress()
    text, vision, tie = preset_config(args.preset, args.scale)
    export = not args.checkpoint_only
    out: Path = args.out
    ckpt_dir: Path = args.checkpoint_dir or (out.with_name(out.name + ".checkpoint") if export else out)
    name = args.name or f"random-qwen2_5_vl-{args.preset}" + (f"-x{args.scale:g}" if args.scale < 1 else "")

    from vidjudge.export.tiny import build_tokenizer

    tok = build_tokenizer()
    config = build_hf_config(text, vision, tie, tok)
    params = parameter_plan(config)
    need = needs(params, args.shard_gb, export)
    summary = {"preset": args.preset, "scale": args.scale, "name": name, "text": text, "vision": vision,
               "tie_word_embeddings": tie, "tokenizer_tokens": len(tok),
               "frames": [args.frames, args.height, args.width],
               **need}
    print(common.table([{"what": k, "value": (f"{v / GB:.2f} GB" if k.endswith("bytes") else v)}
                        for k, v in need.items()], [("what", "what"), ("value", "value")],
                       f"{name}: {PRESETS[args.preset]['description']}; text {text['num_hidden_layers']} layers x "
                       f"{text['hidden_size']}, vision {vision['depth']} blocks x {vision['hidden_size']}"))
    if args.dry_run:
        common.write_json(args.report, common.report("fullsize_bundle", vars_json(args), summary))
        return 0

    for target in {out, ckpt_dir}:
        if target.exists():
            if not args.overwrite:
                raise SystemExit(f"{target} exists; pass --overwrite to replace it")
            shutil.rmtree(target)
    free = _free_bytes(out.parent if out.parent != Path("") else Path("."))
    ck_free = _free_bytes(ckpt_dir.parent)
    same_fs = _same_fs(out, ckpt_dir)
    peak = need["disk_peak_bytes"]
    if same_fs and free < peak:
        raise SystemExit(f"not enough disk: building {name} needs ~{peak / GB:.1f} GB free at its peak (checkpoint "
                         f"{need['checkpoint_bytes'] / GB:.1f} GB + bundle {need['bundle_bytes'] / GB:.1f} GB), "
                         f"{free / GB:.1f} GB free under {out.parent.resolve()}. Free space, put --checkpoint-dir on "
                         "another disk, or use a smaller --preset/--scale.")
    if not same_fs and (ck_free < need["checkpoint_bytes"] * 1.03 or free < need["bundle_bytes"] * 1.03):
        raise SystemExit(f"not enough disk: checkpoint needs {need['checkpoint_bytes'] / GB:.1f} GB "
                         f"({ck_free / GB:.1f} free), bundle {need['bundle_bytes'] / GB:.1f} GB ({free / GB:.1f} free)")
    mem = _mem_available()
    if mem is not None and mem < need["ram_peak_bytes"]:
        common.note(f"warning: ~{need['ram_peak_bytes'] / GB:.1f} GB of memory may be needed, "
                    f"{mem / GB:.1f} GB available; lower --shard-gb if writing fails")

    t0 = time.perf_counter()
    w = write_checkpoint(ckpt_dir, config, params, seed=args.seed, shard_gb=args.shard_gb, progress=progress)
    write_tokenizer_files(ckpt_dir, tok)
    summary["checkpoint"] = {"path": str(ckpt_dir), **w}
    common.note(f"checkpoint {ckpt_dir}: {w['bytes'] / GB:.2f} GB in {w['shards']} shard(s), "
                f"{w['write_s']:.1f}s ({w['bytes'] / GB / max(w['write_s'], 1e-9):.2f} GB/s)")
    if export:
        from vidjudge.export.hf import export_hf

        t = time.perf_counter()
        common.note(f"exporting the bundle ({args.frames} frames of {args.height}x{args.width}; "
                    "vision tower to ONNX) ...")
        export_hf(ckpt_dir, out, num_frames=args.frames, height=args.height, width=args.width, name=name)
        summary["export_s"] = time.perf_counter() - t
        files = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
        summary["bundle"] = {"path": str(out), "bytes": sum(files.values()),
                             "encoder_files": {k: v for k, v in files.items() if k.startswith("encoder/")}}
        common.note(f"bundle {out}: {summary['bundle']['bytes'] / GB:.2f} GB, export {summary['export_s']:.1f}s; "
                    f"encoder files {summary['bundle']['encoder_files']}")
        if not args.keep_checkpoint and ckpt_dir != out:
            shutil.rmtree(ckpt_dir)
    summary["total_s"] = time.perf_counter() - t0
    print(f"\nbuilt {out if export else ckpt_dir} in {summary['total_s']:.1f}s")
    common.write_json(args.report, common.report("fullsize_bundle", vars_json(args), summary))
    return 0


def _same_fs(a: Path, b: Path) -> bool:
    def dev(p: Path) -> int:
        while not p.exists():
            p = p.parent
        return os.stat(p).st_dev
    return dev(a) == dev(b)


def vars_json(args) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


if __name__ == "__main__":
    sys.exit(main())
