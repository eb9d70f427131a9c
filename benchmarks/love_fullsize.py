"""A random-weight LOVE bundle with the real model's shapes (InternVL3-9B + Swin3D-T), offline.

    python -m vidjudge.benchmarks.love_fullsize bundles/love-9b-random --preset 9b            # GPU machine
    python -m vidjudge.benchmarks.love_fullsize bundles/love-9b-random --preset 9b --dry-run  # sizes only
    python -m vidjudge.benchmarks.love_fullsize /tmp/love-small --preset small                # CPU, seconds

Throughput depends on shapes, not on what the weights learned: this writes the bundle `vidjudge export
love` would write from the three released skills, with random weights, without the 3 x 18 GB of
original checkpoints:

1. llm/: the LLM as the converter writes it (Llama layout; 9b: hidden 4096, 48 layers, 32 heads, 2 KV
   heads, FFN 10240, vocabulary 128142, rope theta 5e7 with dynamic scaling x2), drawn in bfloat16 tensor
   by tensor from seeded generators and written shard by shard (peak memory about one shard); the tiny
   LOVE SentencePiece tokenizer (its ids fit in the vocabulary; the rows past it are padding);
2. adapters/<skill>/: a random rank-16 LoRA per skill on q/k/v/o/gate/up/down (as converted);
3. encoder/: per skill an InternViT-300M (1024 hidden, 24 layers, 16 heads, 448 px) + pixel shuffle +
   mlp1 as safetensors (bfloat16), one Swin3D-T (embed 96, depths 2/2/6/2, heads 3/6/12/24) with three
   fast_mlps; ONNX too with ``--onnx`` (float32: ~1.4 GB per vision encoder);
4. heads/: random mlpscore heads (4096 -> 1024 -> 256 -> 64 -> 16 -> 1), dimensions, manifest.

Sizes (9b): LLM ~8.9 B parameters = ~17.8 GB, vision encoders 3 x 0.34 B = ~2.0 GB in bf16, Swin3D-T +
fast_mlps ~0.08 B, adapters ~3 x 0.08 GB. ``--scale F`` keeps a fraction F of the layers at full width.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from vidjudge.benchmarks import common
from vidjudge.benchmarks.fullsize_bundle import GB, Param, make_tensor, shard_plan

SKILLS = ("perception", "correspondence", "qa")
PRESETS: dict[str, dict[str, Any]] = {
    "9b": dict(
        vision=dict(hidden_size=1024, num_attention_heads=16, num_hidden_layers=24, intermediate_size=4096,
                    patch_size=14, image_size=448),
        llm=dict(hidden_size=4096, num_attention_heads=32, num_key_value_heads=2, num_hidden_layers=48,
                 intermediate_size=10240, vocab_size=128142, rope_theta=50000000,
                 rope_scaling={"type": "dynamic", "factor": 2.0}, max_position_embeddings=32768, rms_norm_eps=1e-5,
                 hidden_act="silu", bias=False),
        swin=dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
        mlpscore=(1024, 256, 64, 16, 1), description="LOVE (InternVL3-9B + Swin3D-T) shapes"),
    "small": dict(
        vision=dict(hidden_size=64, num_attention_heads=2, num_hidden_layers=2, intermediate_size=128,
                    patch_size=14, image_size=448),
        llm=dict(hidden_size=256, num_attention_heads=2, num_key_value_heads=1, num_hidden_layers=2,
                 intermediate_size=512, vocab_size=128142, rope_theta=50000000,
                 rope_scaling={"type": "dynamic", "factor": 2.0}, max_position_embeddings=32768, rms_norm_eps=1e-5,
                 hidden_act="silu", bias=False),
        swin=dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2)),
        mlpscore=(64, 16, 8, 4, 1), description="small LOVE structure (head_dim 128, vocabulary 128142)"),
}
LORA_RANK = 16


def preset(name: str, scale: float = 1.0) -> dict:
    if name not in PRESETS:
        raise SystemExit(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    if not 0 < scale <= 1:
        raise SystemExit("--scale must be in (0, 1]")
    p = json.loads(json.dumps(PRESETS[name]))
    if scale < 1:
        p["llm"]["num_hidden_layers"] = max(1, round(p["llm"]["num_hidden_layers"] * scale))
        p["vision"]["num_hidden_layers"] = max(1, round(p["vision"]["num_hidden_layers"] * scale))
    return p


def llm_plan(llm: dict) -> list[Param]:
    """Every tensor of the converted (Llama layout) decoder, from a meta-device model."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from vidjudge.export.love import llama_config

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**llama_config(llm)))
    plan = []
    for key, t in model.state_dict().items():
        init = "ones" if t.dim() == 1 and "norm" in key else "normal"
        plan.append(Param(key, tuple(t.shape), init, 0.02))
    return plan


def sizes(p: dict) -> dict:
    from vidjudge.server.families.love_modules import VisionConfig

    llm = sum(x.numel for x in llm_plan(p["llm"]))
    v = VisionConfig(**p["vision"], llm_hidden=p["llm"]["hidden_size"])
    h = v.hidden_size
    vit = (3 * v.patch_size ** 2 * h + h + h + (1 + v.grid ** 2) * h
           + v.num_hidden_layers * (4 * h * h + 4 * h + 2 * h * v.intermediate_size + v.intermediate_size + h + 6 * h))
    proj = 4 * h * 2 + 4 * h * v.llm_hidden + v.llm_hidden + v.llm_hidden ** 2 + v.llm_hidden
    m = p["llm"]
    lora = sum(LORA_RANK * (a + b) for a, b in _lora_shapes(m)) * m["num_hidden_layers"]
    return {"llm_params": llm, "llm_bytes": 2 * llm, "vision_params_each": vit + proj,
            "vision_bytes": 3 * 2 * (vit + proj), "adapter_params_each": lora, "adapter_bytes": 3 * 2 * lora}


def _lora_shapes(m: dict) -> list[tuple[int, int]]:
    h, hd = m["hidden_size"], m["hidden_size"] // m["num_attention_heads"]
    kv = m["num_key_value_heads"] * hd
    f = m["intermediate_size"]
    return [(h, h), (h, kv), (h, kv), (h, h), (h, f), (h, f), (f, h)]  # q k v o gate up down: (in, out)


def write_llm(out: Path, llm: dict, seed: int, shard_gb: float, progress: common.Progress) -> dict:
    from safetensors.torch import save_file

    from vidjudge.export.love import llama_config
    from vidjudge.export.love_tiny import build_tokenizer_files

    out.mkdir(parents=True)
    ids = build_tokenizer_files(out)
    if max(ids.values()) >= llm["vocab_size"]:
        raise AssertionError("the tokenizer does not fit the vocabulary")
    (out / "config.json").write_text(json.dumps(llama_config(llm), indent=2) + "\n")
    (out / "tokenization_internlm3.py").unlink()  # a bundle carries no tokenizer code
    plan = llm_plan(llm)
    shards = shard_plan(plan, int(shard_gb * GB))
    weight_map, written, total = {}, 0, sum(p.nbytes for p in plan)
    for i, shard in enumerate(shards):
        name = "model.safetensors" if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for p in shard:
            tensors[p.name] = make_tensor(p, seed)
            written += p.nbytes
            progress.update(f"LLM weights: {written / GB:.2f} / {total / GB:.2f} GB")
        save_file(tensors, str(out / name), metadata={"format": "pt"})
        weight_map.update({p.name: name for p in shard})
    if len(shards) > 1:
        (out / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2) + "\n")
    progress.done()
    return {"shards": len(shards), "bytes": total}


def write_adapters(out: Path, llm: dict, seed: int) -> dict:
    import torch

    from vidjudge.export.love import write_peft

    names = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    groups = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn"}
    records = {}
    for k, skill in enumerate(SKILLS):
        g = torch.Generator().manual_seed(seed + 1000 + k)
        tensors = {}
        for layer in range(llm["num_hidden_layers"]):
            for name, (n_in, n_out) in zip(names, _lora_shapes(llm)):
                stem = f"base_model.model.model.layers.{layer}.{groups.get(name, 'mlp')}.{name}"
                tensors[stem + ".lora_A.weight"] = (torch.randn(LORA_RANK, n_in, generator=g) / math.sqrt(n_in)).bfloat16()
                tensors[stem + ".lora_B.weight"] = (torch.randn(n_out, LORA_RANK, generator=g) * 0.01).bfloat16()
        write_peft(out / "adapters" / skill, tensors, LORA_RANK)
        records[skill] = {"path": f"adapters/{skill}", "rank": LORA_RANK}
    return records


def write_encoders(out: Path, p: dict, seed: int, onnx: bool) -> tuple[dict, dict]:
    import torch
    from safetensors.torch import save_file

    from vidjudge.server.families.love_modules import (FastMlp, InternVisionEncoder, MotionEncoder, Swin3D,
                                                       SwinConfig, VisionConfig)

    (out / "encoder").mkdir(parents=True)
    hidden = p["llm"]["hidden_size"]
    vcfg = VisionConfig(**p["vision"], llm_hidden=hidden)
    encoders = {}
    for k, skill in enumerate(SKILLS):
        torch.manual_seed(seed + 2000 + k)
        module = InternVisionEncoder(vcfg).eval()
        with torch.no_grad():
            for name, t in module.named_parameters():
                if name in ("cls", "pos") or name.startswith("layers.") and name.endswith(("ls1", "ls2")):
                    t.normal_(0, 0.1 if "ls" in name else 0.02)
        name = f"vision.{skill}"
        save_file({n: t.detach().bfloat16().contiguous() for n, t in module.state_dict().items()},
                  str(out / f"encoder/{name}.safetensors"))
        if onnx:
            from vidjudge.export.vision import export_module_onnx

            export_module_onnx(module, torch.zeros(2, 8, 3, vcfg.image_size, vcfg.image_size), out / f"encoder/{name}.onnx")
        encoders[name] = dict(view="frames", onnx=f"encoder/{name}.onnx", input_shape=(8, 3, vcfg.image_size, vcfg.image_size),
                              output_shape=(8 * vcfg.tokens_per_image, hidden))
    scfg = SwinConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in p["swin"].items()})
    torch.manual_seed(seed + 3000)
    motion = MotionEncoder(Swin3D(scfg), [FastMlp(scfg.num_features, hidden) for _ in SKILLS]).eval()
    with torch.no_grad():
        for name, t in motion.named_parameters():
            if name.endswith(("rel_table", "frag_table", "patch_weight")):
                t.normal_(0, 0.02)
    save_file({n: t.detach().bfloat16().contiguous() for n, t in motion.state_dict().items()},
              str(out / "encoder/motion.safetensors"))
    if onnx:
        from vidjudge.export.vision import export_module_onnx

        export_module_onnx(motion, torch.zeros(2, 4, 3, 32, 224, 224), out / "encoder/motion.onnx")
    encoders["motion"] = dict(view="motion", onnx="encoder/motion.onnx", input_shape=(4, 3, 32, 224, 224),
                              output_shape=(len(SKILLS), 4, hidden))
    family_config = dict(skills={s: {"vision": f"vision.{s}", "motion_row": i} for i, s in enumerate(SKILLS)},
                         vision=dataclasses.asdict(vcfg), swin=dataclasses.asdict(scfg), bf16_attention=True,
                         tokens_per_frame=vcfg.tokens_per_image, num_frames=8, clips=4)
    return encoders, family_config


def write_heads(out: Path, hidden: int, layers: tuple[int, ...], seed: int) -> dict:
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed + 4000)
    (out / "heads").mkdir()
    records = {}
    for skill in ("perception", "correspondence"):
        sizes_ = (hidden,) + tuple(layers)
        t = {}
        for i, (a, b) in enumerate(zip(sizes_, sizes_[1:]), start=1):
            t[f"fc{i}.weight"] = (rng.standard_normal((b, a)) * (0.1 if b == 1 else 1.0) / np.sqrt(a)).astype(np.float32)
            t[f"fc{i}.bias"] = np.full(b, 0.5 if b == 1 else 0.05, np.float32)
        save_file(t, str(out / f"heads/{skill}.safetensors"))
        records[skill] = {"kind": "mlp", "file": f"heads/{skill}.safetensors", "activation": "relu",
                          "final_activation": True}
    return records


def build(out: Path, preset_name: str, *, scale: float = 1.0, seed: int = 0, shard_gb: float = 4.0,
          onnx: bool = False, overwrite: bool = False, progress: common.Progress | None = None) -> dict:
    from vidjudge.export.love import finish_bundle

    progress = progress or common.Progress()
    p = preset(preset_name, scale)
    if out.exists():
        if not overwrite:
            raise SystemExit(f"{out} exists; pass --overwrite")
        shutil.rmtree(out)
    need = sum(v for k, v in sizes(p).items() if k.endswith("bytes")) * (1.6 if onnx else 1.05)
    free = shutil.disk_usage(out.parent if out.parent.exists() else Path(".")).free
    if free < need:
        raise SystemExit(f"{out}: {need / GB:.1f} GB needed, {free / GB:.1f} GB free")
    t0 = time.perf_counter()
    out.mkdir(parents=True)
    llm_info = write_llm(out / "llm", p["llm"], seed, shard_gb, progress)
    adapters = write_adapters(out, p["llm"], seed)
    encoders, family_config = write_encoders(out, p, seed, onnx)
    heads = write_heads(out, p["llm"]["hidden_size"], tuple(p["mlpscore"]), seed)
    finish_bundle(out, name=f"love-{preset_name}-random", source=f"random weights, preset {preset_name}",
                  encoders=encoders, adapters=adapters, heads=heads, family_config=family_config,
                  image_size=p["vision"]["image_size"])
    return {"bundle": str(out), "seconds": time.perf_counter() - t0, "llm": llm_info, "onnx": onnx}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--preset", default="9b", choices=sorted(PRESETS))
    ap.add_argument("--scale", type=float, default=1.0, help="Keep this fraction of the layers (widths kept).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard-gb", type=float, default=4.0)
    ap.add_argument("--onnx", action="store_true", help="Also export the encoders to ONNX (float32).")
    ap.add_argument("--dry-run", action="store_true", help="Print the sizes and stop.")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    p = preset(args.preset, args.scale)
    s = sizes(p)
    print(f"{PRESETS[args.preset]['description']}: LLM {s['llm_params'] / 1e9:.2f} B parameters "
          f"({s['llm_bytes'] / GB:.1f} GB bf16), vision encoders 3 x {s['vision_params_each'] / 1e9:.3f} B "
          f"({s['vision_bytes'] / GB:.1f} GB bf16), adapters 3 x {s['adapter_params_each'] / 1e6:.0f} M")
    if args.dry_run:
        return 0
    info = build(args.out, args.preset, scale=args.scale, seed=args.seed, shard_gb=args.shard_gb, onnx=args.onnx,
                 overwrite=args.overwrite)
    print(f"bundle written to {info['bundle']} in {info['seconds']:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
