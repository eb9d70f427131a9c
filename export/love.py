"""`vidjudge export love PERCEPTION CORRESPONDENCE QA TEMPORAL OUT`: the released LOVE checkpoints -> one bundle.

Input: the three skill folders as downloaded from the hub (LOVE-Perception, LOVE-Correspondence, LOVE-QA:
`internvl_chat` config.json, the whole state dict in safetensors with the LoRA NOT merged and PEFT-wrapped
key names, `lora_weights.pth`, the SentencePiece tokenizer) and LOVE-pretrain's `temporal.pth` (the Swin3D
of the motion branch). See export/love_tiny.py for the layout, what is verified and what is inferred.

What the reference does on load, and so what this does (train/infer_perception.py, eval_qa.py):
1. The state dict, then `lora_weights.pth` over it (strict=False: its LoRA tensors win; names the model
   does not have are ignored). LoRA scaling = alpha / r with alpha = 2 r (`wrap_*_lora(r, 2 r)`).
2. The Swin3D: temporal.pth is loaded first, then the checkpoint's `evaluator.*` tensors over it, so the
   checkpoint's copy is what runs; temporal.pth fills what a checkpoint lacks.

Output (family `love`, server/families/love.py reads it):
- encoder/vision.<skill>.onnx (+ .safetensors for the torch backend): InternViT with the skill's vision
  LoRA merged, pixel shuffle, the skill's mlp1; [B, 8, 3, 448, 448] -> [B, 2048, hidden].
- encoder/motion.onnx (+ .safetensors): the Swin3D once, mean pooling, every distinct fast_mlp;
  [B, 4, 3, 32, 224, 224] -> [B, rows, 4, hidden] (skills share a row when their fast_mlp is equal).
- llm/: the InternLM2 decoder as a Llama checkpoint (wqkv split into q/k/v, same rotary convention,
  dynamic rope scaling kept), the base weights every skill shares (checked equal), the tokenizer files.
- adapters/<skill>/: the skill's LLM LoRA in PEFT format on the Llama module names (wqkv's LoRA B split
  like the weight, its A shared by q/k/v: exact).
- heads/<skill>.safetensors: mlpscore (fc1..fc5, ReLU after every layer) for the MOS skills.
- dimensions.toml: love.perception, love.correspondence (regression, 0-100), love.qa (yes/no).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from vidjudge import __version__
from vidjudge.export.hf import CHECKED_DIRS, ExportError
from vidjudge.server.bundle import FORMAT_VERSION, MANIFEST, Manifest, checksum_tree
from vidjudge.server.dimensions import parse_dimensions, render_dimensions

log = logging.getLogger(__name__)

SKILLS = ("perception", "correspondence", "qa")
SYSTEM_MESSAGE = ("你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, "
                  "是一个有用无害的人工智能助手。")  # InternVL's internlm2-chat template (the reference's --conv_style)
LLM_LORA_TARGETS = ("attention.wqkv", "attention.wo", "feed_forward.w1", "feed_forward.w2", "feed_forward.w3")
LLAMA_NAMES = {"attention.wo": "self_attn.o_proj", "feed_forward.w1": "mlp.gate_proj",
               "feed_forward.w3": "mlp.up_proj", "feed_forward.w2": "mlp.down_proj"}
VISION_PREFIXES = ("vision_model.base_model.model.", "vision_model.")
LLM_PREFIXES = ("language_model.base_model.model.", "language_model.")
TOKENIZER_FILES = ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")

DIMENSIONS = [
    dict(name="love.perception", head="regression",
         description="LOVE-Perception: perceptual quality MOS (0-100), AIGVE-60K.",
         question="How is the quality of the video?", answer_prefix="The quality of the video is",
         weights="perception", output_scale=100.0, scale=[0.0, 100.0], adapter="perception"),
    dict(name="love.correspondence", head="regression",
         description="LOVE-Correspondence: text-video correspondence MOS (0-100), AIGVE-60K.",
         question="How would you rate the correspondence of this video and its prompt? prompt:{prompt}",
         answer_prefix="The correspondence of the video and its prompt is",
         weights="correspondence", output_scale=100.0, scale=[0.0, 100.0], adapter="correspondence"),
    # The QA answer starts right after "assistant\n"; the answer words' casing is INFERRED (AIGVE-60K's QA
    # strings are not in the reference repository): edit levels in dimensions.toml if yours differ.
    dict(name="love.qa", head="yes_no", description="LOVE-QA: answers the request's yes/no question about the video.",
         question="{question}", answer_prefix="", levels=["Yes", "No"], level_prefix="", adapter="qa"),
]
# The reference's teacher-forced answers; the regression prompt ends before the level word, and the
# reference reads index -4 of these (the token before the level word): checked at export.
REFERENCE_ANSWERS = {"perception": "The quality of the video is good.",
                     "correspondence": "The correspondence of the video and its prompt is good."}


# --------------------------------------------------------------------------- reading a skill folder


@dataclasses.dataclass
class Skill:
    name: str
    folder: Path
    config: dict
    state: dict  # name -> torch tensor, after lora_weights.pth
    overlaid: int  # LoRA tensors lora_weights.pth replaced


def _safetensors_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return [folder / n for n in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ExportError(f"{folder}: no *.safetensors weights (expected model.safetensors or a sharded index)")
    return files


def read_skill(name: str, folder: Path) -> Skill:
    import torch
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise ExportError(f"{folder}: no config.json (is this a LOVE checkpoint folder?)")
    config = json.loads(cfg_path.read_text())
    if config.get("model_type") != "internvl_chat":
        raise ExportError(f"{folder}: model_type {config.get('model_type')!r}, expected internvl_chat")
    arch = (config.get("llm_config", {}).get("architectures") or ["?"])[0]
    if arch != "InternLM2ForCausalLM":
        raise ExportError(f"{folder}: LLM {arch}; LOVE's is InternLM2ForCausalLM")
    state: dict = {}
    for f in _safetensors_files(folder):
        state.update(load_file(str(f)))
    overlaid = 0
    lora_path = folder / "lora_weights.pth"
    if lora_path.is_file():
        for key, value in torch.load(lora_path, map_location="cpu", weights_only=True).items():
            if key in state:  # load_state_dict(strict=False): unknown names are ignored
                if tuple(state[key].shape) != tuple(value.shape):
                    raise ExportError(f"{lora_path}: {key} has shape {tuple(value.shape)}, the state dict "
                                      f"{tuple(state[key].shape)}")
                state[key] = value.to(state[key].dtype)
                overlaid += 1
    elif name == "qa":
        raise ExportError(f"{folder}: lora_weights.pth is missing (the reference's eval_qa.py always loads it)")
    return Skill(name, folder, config, state, overlaid)


def _strip(state: dict, prefixes: tuple[str, ...]) -> dict:
    for p in prefixes:
        sub = {k[len(p):]: v for k, v in state.items() if k.startswith(p)}
        if sub:
            return sub
    return {}


def _lora_scaling(rank: int) -> float:
    return (2 * rank) / rank  # lora_alpha = 2 r in the reference's wrap_backbone_lora / wrap_llm_lora


def merge_lora(sub: dict, rank: int) -> dict:
    """Weights with every PEFT LoRA merged: W = base + (alpha / r) B A, float32; other tensors as they are."""
    out, scale = {}, _lora_scaling(rank) if rank else 0.0
    for key, value in sub.items():
        if ".lora_A." in key or ".lora_B." in key:
            continue
        if ".base_layer." in key:
            stem, tail = key.split(".base_layer.")
            w = value.float()
            a, b = sub.get(f"{stem}.lora_A.default.weight"), sub.get(f"{stem}.lora_B.default.weight")
            if tail == "weight" and a is not None and b is not None:
                w = w + scale * (b.float() @ a.float())
            out[f"{stem}.{tail}"] = w
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------- LLM: InternLM2 -> Llama


def _split_wqkv(w, heads: int, kv_heads: int, head_dim: int):
    """InternLM2's packed rows (per KV head: its query heads, then k, then v) -> q, k, v rows."""
    groups = heads // kv_heads
    w = w.reshape(kv_heads, groups + 2, head_dim, -1)
    q = w[:, :groups].reshape(heads * head_dim, -1)
    return q, w[:, -2].reshape(kv_heads * head_dim, -1), w[:, -1].reshape(kv_heads * head_dim, -1)


def llama_state_dict(llm: dict, cfg: dict) -> dict:
    """InternLM2ForCausalLM base weights (PEFT prefix removed, LoRA dropped) -> LlamaForCausalLM names."""
    h, heads, kv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = h // heads
    base = {k.replace(".base_layer.", "."): v for k, v in llm.items() if ".lora_" not in k}
    out = {"model.embed_tokens.weight": base["model.tok_embeddings.weight"],
           "model.norm.weight": base["model.norm.weight"], "lm_head.weight": base["output.weight"]}
    for i in range(cfg["num_hidden_layers"]):
        p, o = f"model.layers.{i}.", f"model.layers.{i}."
        q, k, v = _split_wqkv(base[p + "attention.wqkv.weight"], heads, kv, hd)
        out[o + "self_attn.q_proj.weight"], out[o + "self_attn.k_proj.weight"], out[o + "self_attn.v_proj.weight"] = q, k, v
        if p + "attention.wqkv.bias" in base:
            qb, kb, vb = _split_wqkv(base[p + "attention.wqkv.bias"][:, None], heads, kv, hd)
            out[o + "self_attn.q_proj.bias"], out[o + "self_attn.k_proj.bias"] = qb[:, 0], kb[:, 0]
            out[o + "self_attn.v_proj.bias"] = vb[:, 0]
        for src, dst in LLAMA_NAMES.items():
            out[o + dst + ".weight"] = base[p + src + ".weight"]
            if p + src + ".bias" in base:
                out[o + dst + ".bias"] = base[p + src + ".bias"]
        out[o + "input_layernorm.weight"] = base[p + "attention_norm.weight"]
        out[o + "post_attention_layernorm.weight"] = base[p + "ffn_norm.weight"]
    return {k: v.contiguous() for k, v in out.items()}


def peft_adapter(llm: dict, cfg: dict) -> dict:
    """The LLM LoRA of a skill as PEFT tensors on Llama names (wqkv's B split like the weight, A shared)."""
    h, heads, kv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = h // heads
    out = {}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        o = f"base_model.model.model.layers.{i}."
        a = llm.get(p + "attention.wqkv.lora_A.default.weight")
        b = llm.get(p + "attention.wqkv.lora_B.default.weight")
        if a is not None and b is not None:
            for name, part in zip(("q_proj", "k_proj", "v_proj"), _split_wqkv(b, heads, kv, hd)):
                out[f"{o}self_attn.{name}.lora_A.weight"] = a.clone()
                out[f"{o}self_attn.{name}.lora_B.weight"] = part.contiguous()
        for src, dst in LLAMA_NAMES.items():
            a = llm.get(f"{p}{src}.lora_A.default.weight")
            b = llm.get(f"{p}{src}.lora_B.default.weight")
            if a is not None and b is not None:
                out[f"{o}{dst}.lora_A.weight"], out[f"{o}{dst}.lora_B.weight"] = a.contiguous(), b.contiguous()
    return out


def llama_config(cfg: dict) -> dict:
    """config.json of the converted decoder (transformers' Llama, which vLLM serves as well)."""
    rope = {"rope_type": "default", "rope_theta": float(cfg.get("rope_theta", 10000.0))}
    scaling = cfg.get("rope_scaling")
    if scaling:
        # InternLM2's dynamic NTK equals plain rope up to max_position_embeddings, as transformers' "dynamic"
        # and vLLM's DynamicNTKScalingRotaryEmbedding (max_trained_positions = max_position) both compute.
        rope = {**rope, "rope_type": scaling.get("type") or scaling.get("rope_type"), "factor": float(scaling["factor"])}
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": cfg["vocab_size"], "hidden_size": cfg["hidden_size"],
        "intermediate_size": cfg["intermediate_size"], "num_hidden_layers": cfg["num_hidden_layers"],
        "num_attention_heads": cfg["num_attention_heads"], "num_key_value_heads": cfg["num_key_value_heads"],
        "head_dim": cfg["hidden_size"] // cfg["num_attention_heads"],
        "hidden_act": cfg.get("hidden_act", "silu"), "max_position_embeddings": cfg["max_position_embeddings"],
        "rms_norm_eps": cfg["rms_norm_eps"], "rope_parameters": rope, "attention_bias": bool(cfg.get("bias", False)),
        "mlp_bias": bool(cfg.get("bias", False)), "tie_word_embeddings": False,
        "bos_token_id": cfg.get("bos_token_id", 1), "eos_token_id": cfg.get("eos_token_id", 2),
        "pad_token_id": cfg.get("pad_token_id", 2), "dtype": "bfloat16", "use_cache": True,
    }


def _save_sharded(tensors: dict, out_dir: Path, shard_bytes: int = 4 << 30) -> None:
    from safetensors.torch import save_file

    shards: list[dict] = [{}]
    size = 0
    for k in sorted(tensors):
        n = tensors[k].numel() * tensors[k].element_size()
        if shards[-1] and size + n > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = tensors[k]
        size += n
    if len(shards) == 1:
        save_file(shards[0], str(out_dir / "model.safetensors"), metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out_dir / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (out_dir / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")


# --------------------------------------------------------------------------- the prompt template


def prompt_template(num_frames: int = 8, clips: int = 4) -> str:
    """The reference's conversation with {question} and {answer_prefix} left open: internlm2-chat with
    InternVL's system message, `Frame{i}: <image>` lines, the motion placeholders and the 13th literal
    `<image>` of `Motion Feature2: `, the question glued on without a separator."""
    frames = "\n".join(f"Frame{i + 1}: <image>" for i in range(num_frames))
    user = frames + "\nMotion Feature: " + "<image>" * clips + "\nMotion Feature2: <image>"
    return (f"<|im_start|>system\n{SYSTEM_MESSAGE}<|im_end|><|im_start|>user\n{user}{{question}}<|im_end|>"
            "<|im_start|>assistant\n{answer_prefix}")


def check_prompts(family, dims: dict, reference_tokenizer=None) -> None:
    """Fail the export if the served prompts would not read what the reference reads:
    - each regression prompt must be the reference's teacher-forced conversation minus its last three
      tokens (level word, '.', <|im_end|>): the reference's index -4 is the served last token;
    - with the checkpoint's own tokenizer (`reference_tokenizer`, a transformers slow tokenizer), every
      prompt's ids must equal what it produces for the reference's text."""
    for skill, answer in REFERENCE_ANSWERS.items():
        dim = next(d for d in dims.values() if d.adapter == skill and d.head == "regression")
        question = dim.render_question("a cat plays the piano", {})
        served = family.prompt_ids(question, dim.answer_prefix)
        full = family.prompt_ids(question, answer + "<|im_end|>")
        if tuple(full[:-3]) != tuple(served):
            raise ExportError(f"{dim.name}: the prompt ended at {dim.answer_prefix!r} is not the reference's "
                              f"conversation minus its last three tokens; the hidden state read would differ")
        if reference_tokenizer is not None:
            text = _reference_text(family, question, answer + "<|im_end|>")
            ref = reference_tokenizer(text).input_ids
            if list(ref) != list(full):
                raise ExportError(f"{dim.name}: our tokenizer and the checkpoint's disagree on the prompt "
                                  f"(first difference at {next(i for i, (a, b) in enumerate(zip(ref, full)) if a != b)})")


def _reference_text(family, question: str, answer: str) -> str:
    """The reference's conversation string with the first 12 <image> expanded to <img><IMG_CONTEXT>*n</img>."""
    c = family.config
    text = family.template.replace("{question}", question).replace("{answer_prefix}", answer)
    for n in [c.tokens_per_frame] * c.num_frames + [1] * c.clips:
        text = text.replace(c.image_placeholder, c.image_start + c.context_token * n + c.image_end, 1)
    return text


# --------------------------------------------------------------------------- the converter


def _digest(t) -> str:
    import hashlib

    import torch

    return hashlib.sha256(t.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


def export_love(perception: Path, correspondence: Path, qa: Path, temporal: Path, out: Path, *,
                name: str = "love", overwrite: bool = False, fragment_offsets: str = "middle",
                check_tokenizer: bool = False, onnx: bool = True) -> Path:
    """Convert the three released skill folders and temporal.pth into one bundle at `out`.
    check_tokenizer: also load each checkpoint's own tokenizer (its remote code, trust_remote_code) and
    compare prompt token ids with ours. onnx=False skips the ONNX exports (torch encoder backend only).
    The skills are read one at a time (peak memory: one checkpoint's state dict, ~19 GB for LOVE)."""
    import torch
    from safetensors.torch import save_file

    from vidjudge.server.families.love_modules import (FastMlp, InternVisionEncoder, MotionEncoder, Swin3D,
                                                       SwinConfig, VisionConfig, vision_state_dict)

    out = Path(out)
    folders = {"perception": Path(perception), "correspondence": Path(correspondence), "qa": Path(qa)}
    temporal = Path(temporal)
    if not temporal.is_file():
        raise ExportError(f"{temporal}: temporal.pth not found (LOVE-pretrain's motion branch)")
    for skill, folder in folders.items():
        if not (folder / "config.json").is_file():
            raise ExportError(f"{folder}: no config.json (is this the LOVE-{skill} checkpoint folder?)")
    if out.exists():
        if not overwrite:
            raise ExportError(f"{out} exists; pass --overwrite to replace it")
        shutil.rmtree(out)
    (out / "encoder").mkdir(parents=True)
    frames, clips, clip_len, fragments, fsize = 8, 4, 32, 7, 32
    encoders: dict[str, Any] = {}
    adapters, heads, fast_rows, motion_row = {}, {}, [], {}
    first_cfg = llm_cfg = c = swin_copy = base_digests = None
    src = folders["perception"]
    for skill, folder in folders.items():
        s = read_skill(skill, folder)
        log.info("%s: %d tensors, %d LoRA tensors from lora_weights.pth", folder, len(s.state), s.overlaid)
        if first_cfg is None:
            first_cfg, llm_cfg = s.config, s.config["llm_config"]
            c = VisionConfig.from_internvl(s.config)
        elif s.config["llm_config"] != llm_cfg or VisionConfig.from_internvl(s.config) != c:
            raise ExportError(f"{folder}: its vision or LLM config differs from {src}")

        # 1. Vision: the skill's LoRA merged, + its mlp1.
        vision = _strip(s.state, VISION_PREFIXES)
        if not vision:
            raise ExportError(f"{folder}: no vision_model.* tensors")
        merged = merge_lora(vision, int(s.config.get("use_backbone_lora") or 0))
        merged.update({k: v for k, v in s.state.items() if k.startswith("mlp1.")})
        module = InternVisionEncoder(c)
        try:
            module.load_state_dict(vision_state_dict(merged, c), strict=True)
        except (KeyError, RuntimeError) as e:
            raise ExportError(f"{folder}: vision weights do not fit the config: {e}") from None
        del vision, merged
        enc = f"vision.{skill}"
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(out / f"encoder/{enc}.safetensors"))
        if onnx:
            _export_onnx(module.eval(), torch.zeros(2, frames, 3, c.image_size, c.image_size), out / f"encoder/{enc}.onnx")
        encoders[enc] = dict(view="frames", onnx=f"encoder/{enc}.onnx", input_shape=(frames, 3, c.image_size, c.image_size),
                             output_shape=(frames * c.tokens_per_image, c.llm_hidden))
        del module

        # 2. Motion: the skills must share the Swin3D (evaluator.*); fast_mlps are kept per distinct value.
        copy = {k[len("evaluator."):]: v for k, v in s.state.items() if k.startswith("evaluator.fragments_backbone.")}
        if swin_copy is None:
            swin_copy = copy
        elif copy.keys() != swin_copy.keys() or any(not torch.equal(copy[k], swin_copy[k]) for k in copy):
            raise ExportError("the skills' Swin3D copies (evaluator.*) differ; the bundle shares one motion backbone")
        mlp = {k: v for k, v in s.state.items() if k.startswith("fast_mlp.")}
        for i, row in enumerate(fast_rows):
            if mlp.keys() == row.keys() and all(torch.equal(mlp[k], row[k]) for k in mlp):
                motion_row[skill] = i
                break
        else:
            motion_row[skill] = len(fast_rows)
            fast_rows.append(mlp)

        # 3. LLM: the frozen base must be the same in every skill (written once, as Llama); a PEFT adapter each.
        llm = _strip(s.state, LLM_PREFIXES)
        digests = {k: _digest(v) for k, v in llm.items() if ".lora_" not in k}
        if base_digests is None:
            base_digests = digests
            llm_dir = out / "llm"
            llm_dir.mkdir()
            _save_sharded(llama_state_dict(llm, llm_cfg), llm_dir)
            (llm_dir / "config.json").write_text(json.dumps(llama_config(llm_cfg), indent=2) + "\n")
            if (folder / "generation_config.json").is_file():
                shutil.copy2(folder / "generation_config.json", llm_dir / "generation_config.json")
            for f in TOKENIZER_FILES:  # never the tokenizer's Python code: the bundle runs none of the checkpoint's code
                if (folder / f).is_file():
                    shutil.copy2(folder / f, llm_dir / f)
        elif digests != base_digests:
            raise ExportError(f"the {skill} checkpoint's base LLM weights differ from perception's: the bundle serves "
                              "one base with a LoRA adapter per skill")
        rank = int(s.config.get("use_llm_lora") or 0)
        tensors = peft_adapter(llm, llm_cfg)
        if not rank or not tensors:
            raise ExportError(f"{folder}: no LLM LoRA (use_llm_lora {rank}); each skill needs its adapter")
        write_peft(out / "adapters" / skill, tensors, rank)
        adapters[skill] = {"path": f"adapters/{skill}", "rank": rank}
        del llm, tensors

        # 4. Head: mlpscore of the MOS skills.
        if skill in REFERENCE_ANSWERS:
            mlp = {k[len("mlpscore."):]: v.float().contiguous() for k, v in s.state.items() if k.startswith("mlpscore.")}
            if not mlp:
                raise ExportError(f"{folder}: no mlpscore.* tensors")
            (out / "heads").mkdir(exist_ok=True)
            save_file(mlp, str(out / f"heads/{skill}.safetensors"))
            heads[skill] = {"kind": "mlp", "file": f"heads/{skill}.safetensors", "activation": "relu",
                            "final_activation": True}
        del s

    # 5. The motion encoder: the Swin3D the reference runs (the checkpoints' evaluator copy, loaded over
    #    temporal.pth) and every distinct fast_mlp.
    pretrain = torch.load(temporal, map_location="cpu", weights_only=True)
    swin_sd = {k: v for k, v in pretrain.get("state_dict", pretrain).items() if k.startswith("fragments_backbone.")}
    if not swin_sd:
        raise ExportError(f"{temporal}: no state_dict fragments_backbone.* tensors")
    differs = [k for k, v in swin_copy.items() if k in swin_sd and not torch.equal(v, swin_sd[k].to(v.dtype))]
    if differs:
        log.warning("%d Swin3D tensors of the checkpoints differ from temporal.pth; using the checkpoints' (what "
                    "the reference runs), e.g. %s", len(differs), differs[:3])
    swin_sd = {**swin_sd, **swin_copy}
    scfg = SwinConfig.from_state_dict(swin_sd, clip=(clip_len, fragments * fsize, fragments * fsize))
    swin = Swin3D(scfg)
    swin.load_reference(swin_sd)
    projectors = []
    for r in fast_rows:
        proj = FastMlp(int(r["fast_mlp.0.weight"].shape[0]), c.llm_hidden)
        proj.load_reference({k: v.float() for k, v in r.items()})
        projectors.append(proj)
    motion = MotionEncoder(swin, projectors).eval()
    save_file({k: v.contiguous() for k, v in motion.state_dict().items()}, str(out / "encoder/motion.safetensors"))
    if onnx:
        _export_onnx(motion, torch.zeros(2, clips, 3, clip_len, fragments * fsize, fragments * fsize),
                     out / "encoder/motion.onnx")
    encoders["motion"] = dict(view="motion", onnx="encoder/motion.onnx",
                              input_shape=(clips, 3, clip_len, fragments * fsize, fragments * fsize),
                              output_shape=(len(fast_rows), clips, c.llm_hidden))

    # 6. Dimensions, family settings, manifest (last: a bundle without one is never half-valid).
    family_config = dict(
        skills={s: {"vision": f"vision.{s}", "motion_row": motion_row[s]} for s in SKILLS},
        vision=dataclasses.asdict(c), swin=dataclasses.asdict(scfg), bf16_attention=True,
        tokens_per_frame=c.tokens_per_image, num_frames=frames, clips=clips)
    return finish_bundle(out, name=name, source=", ".join(str(p.resolve()) for p in (*folders.values(), temporal)),
                         encoders=encoders, adapters=adapters, heads=heads, family_config=family_config,
                         image_size=c.image_size, fragment_offsets=fragment_offsets,
                         reference_tokenizer=_reference_tokenizer(src) if check_tokenizer else None)


def finish_bundle(out: Path, *, name: str, source: str, encoders: dict, adapters: dict, heads: dict,
                  family_config: dict, image_size: int = 448, fragment_offsets: str = "middle",
                  clip_len: int = 32, fragments: int = 7, fsize: int = 32, reference_tokenizer=None) -> Path:
    """Write dimensions.toml and the manifest of a LOVE bundle whose encoders, llm/, adapters and heads are in
    place; the prompts are checked (check_prompts) before the manifest is written."""
    from vidjudge.server.families.love import LoveFamily, SentencePieceTokenizer

    frames, clips = family_config["num_frames"], family_config["clips"]
    dims = parse_dimensions(_dimensions_text(), SentencePieceTokenizer(out / "llm").encode, source="LOVE dimensions")
    (out / "dimensions.toml").write_text(render_dimensions(list(dims.values())))
    manifest = Manifest(
        format_version=FORMAT_VERSION, name=name, family="love", vidjudge_version=__version__, source=source,
        views={"frames": dict(sampler="uniform_indices", num_frames=frames, height=image_size, width=image_size,
                              resize="bicubic"),
               "motion": dict(sampler="love_clips", num_frames=clips * clip_len, height=fragments * fsize,
                              width=fragments * fsize, resize="none",
                              options=dict(clip_len=clip_len, fragments=fragments, fragment_size=fsize,
                                           offsets=fragment_offsets))},
        encoders=encoders,
        llm=dict(path="llm", prompt_template=prompt_template(frames, clips)),
        adapters=adapters, heads=heads, family_config=family_config,
        checksums=checksum_tree(out, [d for d in CHECKED_DIRS if (out / d).is_dir()]),
    )
    family = LoveFamily(out, manifest)
    check_prompts(family, dims, reference_tokenizer)
    (out / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
    return out


def _dimensions_text() -> str:
    from vidjudge.server.dimensions import _toml_value

    return "\n".join("[[dimension]]\n" + "\n".join(f"{k} = {_toml_value(v)}" for k, v in d.items()) + "\n"
                     for d in DIMENSIONS)


def write_peft(adir: Path, tensors: dict, rank: int) -> None:
    """A PEFT LoRA directory on the Llama module names (alpha = 2 r, as LOVE's training used)."""
    from safetensors.torch import save_file

    adir.mkdir(parents=True)
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": 2 * rank, "lora_dropout": 0.0,
        "bias": "none", "fan_in_fan_out": False, "use_rslora": False, "use_dora": False, "inference_mode": True,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "modules_to_save": None, "base_model_name_or_path": None, "init_lora_weights": True,
    }
    (adir / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(tensors, str(adir / "adapter_model.safetensors"), metadata={"format": "pt"})


def _reference_tokenizer(folder: Path):
    """The checkpoint's own slow tokenizer, as the reference loads it (runs the folder's tokenizer code)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, trust_remote_code=True, use_fast=False, add_eos_token=False)


def _export_onnx(module, example, path: Path) -> None:
    from vidjudge.export.vision import export_module_onnx

    log.info("exporting %s to ONNX", path.name)
    export_module_onnx(module, example, path)
