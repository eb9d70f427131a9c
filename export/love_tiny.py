"""Tiny random LOVE checkpoints in the released on-disk format, built offline in seconds.

`build_love_checkpoints(root)` writes what a user downloads from the hub:

    root/LOVE-Perception/  root/LOVE-Correspondence/  root/LOVE-QA/   (one folder per skill)
        config.json                 model_type internvl_chat, vision_config + llm_config sub-configs,
                                    use_backbone_lora / use_llm_lora = the LoRA rank, template internlm2-chat
        model.safetensors           the whole state dict in bf16, LoRA NOT merged, PEFT-wrapped key names:
                                    vision_model.base_model.model.encoder.layers.N.attn.qkv.base_layer.{weight,bias}
                                    vision_model.base_model.model.encoder.layers.N.attn.qkv.lora_A.default.weight ...
                                    language_model.base_model.model.model.layers.N.attention.wqkv.base_layer.weight ...
                                    language_model.base_model.model.output.weight, mlp1.*, fast_mlp.*, mlpscore.fc1..5,
                                    evaluator.fragments_backbone.* (the Swin3D, a copy of temporal.pth)
        lora_weights.pth            every LoRA tensor under the same names (the reference loads it over the state
                                    dict, strict=False); here deliberately NOT equal to the safetensors' LoRA, as
                                    when training saved its best evaluation after its last save_model
        tokenizer.model             SentencePiece (BPE, byte fallback, no dummy prefix), trained here
        tokenizer_config.json       InternLM3Tokenizer via auto_map, add_bos_token, add_eos_token false, added tokens
        added_tokens.json           InternVL's <img> </img> <IMG_CONTEXT> <quad> ... after the SentencePiece vocabulary
        special_tokens_map.json, tokenization_internlm3.py (our own, export/love_tokenizer_code.py),
        generation_config.json, training_args.bin (a placeholder; the converter never reads it)
    root/temporal.pth               {"state_dict": {"fragments_backbone.*": ...}} float32, with the fragment
                                    position bias tables (LOVE-pretrain's motion branch)

What is verified and what is inferred (see also the README, "LOVE"):
- Verified from the reference code (IntMeGroup/LOVE@919fe92): the config keys and how they are read, the
  module tree and therefore every key below the PEFT prefix, LoRA rank -> alpha = 2 x rank and its target
  modules, lora_weights.pth's naming (named_parameters of the wrapped model) and how it is loaded, the
  Swin3D's parameters and buffers, temporal.pth's {"state_dict": {"fragments_backbone.*"}} layout.
- Confirmed by the developers' reading of the real files (DESIGN.md 2.1): the PEFT key names above, the
  files beside the weights.
- INFERRED: the exact text of the real tokenization_internlm3.py, tokenizer_config.json's fields and the
  ids of the special tokens (the tiny tokenizer has its own small vocabulary; the converter reads ids
  from the files, never assumes them); whether real folders are sharded (the converter reads both).

Sizes are small so tests stay fast; everything the converter and our reference implementation need
is read from config.json and the weights (the reference code hard-codes 4096 / 768 / Swin3D-T, a
limitation of that code, not of the format). The Swin3D keeps LOVE's patch (2,4,4) and window (8,7,7)
on 32x224x224 clips, with a small embedding and depths. Deterministic: a seed gives the same bytes.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SKILLS = ("perception", "correspondence", "qa")
FOLDERS = {"perception": "LOVE-Perception", "correspondence": "LOVE-Correspondence", "qa": "LOVE-QA"}

# InternVL's conversation template `internlm2-chat` (the reference passes --conv_style internlm2-chat).
SYSTEM_MESSAGE = ("你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, "
                  "是一个有用无害的人工智能助手。")
CHAT_TOKENS = ("<|im_start|>", "<|im_end|>", "<|action_start|>", "<|action_end|>", "<|interpreter|>", "<|plugin|>")
# InternVL's tokens, added after the SentencePiece vocabulary (train/constants.py; the reference's add_tokens
# finds them present and adds nothing).
INTERNVL_TOKENS = ("<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>")
QUESTIONS = {
    "perception": ("How is the quality of the video?", "The quality of the video is good."),
    "correspondence": ("How would you rate the correspondence of this video and its prompt? prompt:{prompt}",
                       "The correspondence of the video and its prompt is good."),
}
SP_VOCAB = 1000
ANSWER_WORDS = ("Yes", "No")  # LOVE-QA's answers (casing INFERRED); single pieces of the tiny vocabulary
# A random LM head rarely makes "Yes" or "No" the argmax of a position, which would leave the reference's
# argmax-based QA answer undefined on the tiny model. The answer is read after "assistant\n": the "\n"
# embedding is enlarged so that it dominates the final hidden state there, and the Yes/No output rows share
# a component along it (both logits high, so one of them is the argmax) plus opposite random parts (so
# P(Yes) varies between videos instead of saturating).
NEWLINE_EMBED_SCALE = 3.0
ANSWER_COMMON = 0.8
LORA_RANK = 16

VISION = dict(hidden_size=32, num_attention_heads=2, num_hidden_layers=2, intermediate_size=64, patch_size=14,
              image_size=448, norm_type="layer_norm", layer_norm_eps=1e-6, qkv_bias=True, qk_normalization=False,
              hidden_act="gelu", initializer_factor=0.1, num_channels=3, drop_path_rate=0.1, use_flash_attn=True)
LLM = dict(hidden_size=128, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2,
           intermediate_size=256, rms_norm_eps=1e-5, rope_theta=50000000, rope_scaling={"factor": 2.0, "type": "dynamic"},
           max_position_embeddings=32768, hidden_act="silu", bias=False)
SWIN = dict(embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), patch_size=(2, 4, 4), window_size=(8, 7, 7),
            mlp_ratio=4.0, frag_biases=(True, True, True, False))
MLPSCORE = (32, 16, 8, 4, 1)  # after the LLM hidden size; the real head is 4096 -> 1024 -> 256 -> 64 -> 16 -> 1


# --------------------------------------------------------------------------- tokenizer


def _corpus() -> list[str]:
    words = ("excellent good fair poor bad yes no Yes No the a of and is are video videos prompt quality frame "
             "motion feature correspondence rate rating how would you this its cat dog plays piano sunny room "
             "red car drives along street at night person walks beach waves camera moves slowly bird flies "
             "over mountains there is does show any in on with what colour color moving object scene").split()
    lines = []
    for q, a in QUESTIONS.values():
        q = q.replace("{prompt}", "A cat is drinking a cup of water.")
        frames = "\n".join(f"Frame{i + 1}: <image>" for i in range(8))
        lines += [f"<|im_start|>system\n{SYSTEM_MESSAGE}<|im_end|><|im_start|>user\n{frames}\nMotion Feature: "
                  f"<image><image><image><image>\nMotion Feature2: <image>{q}<|im_end|><|im_start|>assistant\n{a}"
                  "<|im_end|>"] * 20
        lines += [q, a] * 20
    for w in words:
        lines += [w, f" {w}", f"{w}.", f"Is there a {w} in the video?", f"The {w} is {w}."] * 6
    lines += ["Is there a cat in the video? Yes", "Does the video show a red car? No",
              "0 1 2 3 4 5 6 7 8 9 10 100 2025 . , ; : ! ? ' \" ( ) [ ] { } - _ / \\ < > = + * & % $ # @"] * 20
    return lines


def build_tokenizer_files(out_dir: Path, vocab_size: int = SP_VOCAB) -> dict[str, int]:
    """Train the SentencePiece model and write the tokenizer files; returns token -> id of the special tokens."""
    import sentencepiece as spm

    from vidjudge.export.love_tokenizer_code import CODE

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()), model_writer=model, model_type="bpe", vocab_size=vocab_size,
        character_coverage=1.0, byte_fallback=True, normalization_rule_name="identity", add_dummy_prefix=False,
        remove_extra_whitespaces=False, split_digits=True, allow_whitespace_only_pieces=True,
        user_defined_symbols=list(CHAT_TOKENS) + ["\n"], unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1, minloglevel=2, hard_vocab_limit=False, max_sentence_length=1 << 16, shuffle_input_sentence=False)
    (out_dir / "tokenizer.model").write_bytes(model.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    n = sp.get_piece_size()
    ids = {"<unk>": 0, "<s>": 1, "</s>": 2, **{t: sp.piece_to_id(t) for t in CHAT_TOKENS}}
    answers = {w: sp.piece_to_id(w) for w in ANSWER_WORDS + ("\n",)}
    if any(i == sp.unk_id() for i in answers.values()):
        raise AssertionError(f"answer words are not single pieces: {answers}")
    added = {t: n + i for i, t in enumerate(INTERNVL_TOKENS)}

    def entry(token: str) -> dict:
        return {"content": token, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                "special": True}

    decoder = {str(i): entry(t) for t, i in {**ids, **added}.items()}
    config = {
        "add_bos_token": True, "add_eos_token": False, "added_tokens_decoder": decoder,
        "additional_special_tokens": list(CHAT_TOKENS),
        "auto_map": {"AutoTokenizer": ["tokenization_internlm3.InternLM3Tokenizer", None]},
        "bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>",
        "clean_up_tokenization_spaces": False, "model_max_length": 4096, "tokenizer_class": "InternLM3Tokenizer",
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    (out_dir / "added_tokens.json").write_text(json.dumps(added, indent=2) + "\n")
    (out_dir / "special_tokens_map.json").write_text(json.dumps(
        {"additional_special_tokens": list(CHAT_TOKENS), "bos_token": "<s>", "eos_token": "</s>",
         "pad_token": "</s>", "unk_token": "<unk>"}, indent=2) + "\n")
    (out_dir / "tokenization_internlm3.py").write_text(CODE)
    return {**ids, **added, **answers}


# --------------------------------------------------------------------------- weights


@dataclass
class _Draw:
    """Seeded normal draws, returned as float32 arrays (saved in bf16 by the caller)."""

    rng: np.random.Generator
    out: dict[str, np.ndarray] = field(default_factory=dict)

    def normal(self, key: str, shape, std: float, mean: float = 0.0) -> np.ndarray:
        a = (self.rng.standard_normal(shape) * std + mean).astype(np.float32)
        self.out[key] = a
        return a

    def put(self, key: str, value) -> None:
        self.out[key] = np.asarray(value)


def _linear(d: _Draw, key: str, n_out: int, n_in: int, bias: bool = True, gain: float = 1.0) -> None:
    d.normal(f"{key}.weight", (n_out, n_in), gain / np.sqrt(n_in))
    if bias:
        d.normal(f"{key}.bias", (n_out,), 0.05)


def _norm(d: _Draw, key: str, n: int, bias: bool = True) -> None:
    d.normal(f"{key}.weight", (n,), 0.1, mean=1.0)
    if bias:
        d.normal(f"{key}.bias", (n,), 0.05)


def swin_state_dict(seed: int, cfg: dict = SWIN) -> dict[str, np.ndarray]:
    """Random Swin3D weights under DOVER's names (fragments_backbone.*), float32, buffers included."""
    d = _Draw(np.random.default_rng(seed))
    e, (pt, ph, pw), (wd, wh, ww) = cfg["embed_dim"], cfg["patch_size"], cfg["window_size"]
    p = "fragments_backbone."
    d.normal(p + "patch_embed.proj.weight", (e, 3, pt, ph, pw), 1.0 / np.sqrt(3 * pt * ph * pw))
    d.normal(p + "patch_embed.proj.bias", (e,), 0.05)
    _norm(d, p + "patch_embed.norm", e)
    table = (2 * wd - 1) * (2 * wh - 1) * (2 * ww - 1)
    from vidjudge.server.families.love_modules import relative_position_index

    rpi = relative_position_index((wd, wh, ww)).astype(np.int64)
    dims = [e * 2 ** i for i in range(len(cfg["depths"]))]
    for li, (depth, heads, dim) in enumerate(zip(cfg["depths"], cfg["num_heads"], dims)):
        for b in range(depth):
            k = f"{p}layers.{li}.blocks.{b}."
            _norm(d, k + "norm1", dim)
            d.normal(k + "attn.relative_position_bias_table", (table, heads), 0.5)
            if cfg["frag_biases"][li]:
                d.normal(k + "attn.fragment_position_bias_table", (table, heads), 0.5)
            d.put(k + "attn.relative_position_index", rpi.copy())
            _linear(d, k + "attn.qkv", 3 * dim, dim)
            _linear(d, k + "attn.proj", dim, dim)
            _norm(d, k + "norm2", dim)
            _linear(d, k + "mlp.fc1", int(dim * cfg["mlp_ratio"]), dim)
            _linear(d, k + "mlp.fc2", dim, int(dim * cfg["mlp_ratio"]))
        if li < len(cfg["depths"]) - 1:
            d.normal(f"{p}layers.{li}.downsample.reduction.weight", (2 * dim, 4 * dim), 1 / np.sqrt(4 * dim))
            _norm(d, f"{p}layers.{li}.downsample.norm", 4 * dim)
    _norm(d, p + "norm", dims[-1])
    return d.out


def _vision_base(d: _Draw, v: dict) -> None:
    c, ps = v["hidden_size"], v["patch_size"]
    p = "vision_model.base_model.model."
    d.normal(p + "embeddings.class_embedding", (1, 1, c), 0.5)
    d.normal(p + "embeddings.patch_embedding.weight", (c, 3, ps, ps), 1 / np.sqrt(3 * ps * ps))
    d.normal(p + "embeddings.patch_embedding.bias", (c,), 0.05)
    d.normal(p + "embeddings.position_embedding", (1, 1 + (v["image_size"] // ps) ** 2, c), 0.5)
    for i in range(v["num_hidden_layers"]):
        k = f"{p}encoder.layers.{i}."
        d.normal(k + "ls1", (c,), 0.1, mean=0.5)
        d.normal(k + "ls2", (c,), 0.1, mean=0.5)
        _norm(d, k + "norm1", c)
        _norm(d, k + "norm2", c)
        for name, n_out, n_in in (("attn.qkv", 3 * c, c), ("attn.proj", c, c), ("mlp.fc1", v["intermediate_size"], c),
                                  ("mlp.fc2", c, v["intermediate_size"])):
            _linear(d, k + name + ".base_layer", n_out, n_in)


def _llm_base(d: _Draw, m: dict, vocab: int) -> None:
    h, nh, nkv = m["hidden_size"], m["num_attention_heads"], m["num_key_value_heads"]
    hd = h // nh
    p = "language_model.base_model.model."
    d.normal(p + "model.tok_embeddings.weight", (vocab, h), 1.0)
    for i in range(m["num_hidden_layers"]):
        k = f"{p}model.layers.{i}."
        _norm(d, k + "attention_norm", h, bias=False)
        _norm(d, k + "ffn_norm", h, bias=False)
        _linear(d, k + "attention.wqkv.base_layer", (nh + 2 * nkv) * hd, h, bias=False)
        _linear(d, k + "attention.wo.base_layer", h, nh * hd, bias=False)
        _linear(d, k + "feed_forward.w1.base_layer", m["intermediate_size"], h, bias=False)
        _linear(d, k + "feed_forward.w3.base_layer", m["intermediate_size"], h, bias=False)
        _linear(d, k + "feed_forward.w2.base_layer", h, m["intermediate_size"], bias=False)
    _norm(d, p + "model.norm", h, bias=False)
    d.normal(p + "output.weight", (vocab, h), 1.0 / np.sqrt(h))


def _lora(base: dict[str, np.ndarray], seed: int, rank: int, b_std: float) -> dict[str, np.ndarray]:
    """Random LoRA A/B for every `*.base_layer.weight` (PEFT initialises B to zero; random B changes the model)."""
    d = _Draw(np.random.default_rng(seed))
    for key, w in base.items():
        if key.endswith(".base_layer.weight"):
            stem = key[: -len(".base_layer.weight")]
            d.normal(stem + ".lora_A.default.weight", (rank, w.shape[1]), 1 / np.sqrt(w.shape[1]))
            d.normal(stem + ".lora_B.default.weight", (w.shape[0], rank), b_std / np.sqrt(rank))
    return d.out


def _heads(d: _Draw, llm_hidden: int, swin_features: int, skill_seed: int) -> None:
    h = llm_hidden
    d.normal("mlp1.0.weight", (VISION["hidden_size"] * 4,), 0.1, mean=1.0)
    d.normal("mlp1.0.bias", (VISION["hidden_size"] * 4,), 0.05)
    _linear(d, "mlp1.1", h, VISION["hidden_size"] * 4)
    _linear(d, "mlp1.3", h, h)
    _norm(d, "fast_mlp.0", swin_features)
    _linear(d, "fast_mlp.1", h, swin_features)
    _linear(d, "fast_mlp.3", h, h)
    # mlpscore: ReLU after every layer, the last too; a positive last bias keeps most outputs above 0.
    sizes = (h,) + MLPSCORE
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:]), start=1):
        if n_out == 1:
            d.normal(f"mlpscore.fc{i}.weight", (1, n_in), 0.3 / np.sqrt(n_in))
            d.put(f"mlpscore.fc{i}.bias", np.array([0.5], np.float32))
        else:
            _linear(d, f"mlpscore.fc{i}", n_out, n_in)
            d.out[f"mlpscore.fc{i}.bias"] = np.abs(d.out[f"mlpscore.fc{i}.bias"]) + 0.05


def _config(vocab: int) -> dict:
    """config.json of a skill folder: the reference's InternVLChatConfig.to_dict() layout, tiny sizes."""
    llm = dict(LLM, architectures=["InternLM2ForCausalLM"], model_type="internlm2", vocab_size=vocab,
               bos_token_id=1, eos_token_id=2, pad_token_id=2, attn_implementation="eager", torch_dtype="bfloat16",
               tie_word_embeddings=False, use_cache=False, initializer_range=0.02, pretraining_tp=1,
               auto_map={"AutoConfig": "configuration_internlm2.InternLM2Config",
                         "AutoModel": "modeling_internlm2.InternLM2ForCausalLM",
                         "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"})
    vision = dict(VISION, architectures=["InternVisionModel"], model_type="intern_vit_6b", torch_dtype="bfloat16",
                  attention_dropout=0.0, dropout=0.0, initializer_range=1e-10,
                  auto_map={"AutoConfig": "configuration_intern_vit.InternVisionConfig",
                            "AutoModel": "modeling_intern_vit.InternVisionModel"})
    return {
        "architectures": ["InternVLChatModel"], "model_type": "internvl_chat",
        "auto_map": {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
                     "AutoModel": "modeling_internvl_chat.InternVLChatModel",
                     "AutoModelForCausalLM": "modeling_internvl_chat.InternVLChatModel"},
        "downsample_ratio": 0.5, "dynamic_image_size": True, "force_image_size": 448, "hidden_size": LLM["hidden_size"],
        "llm_config": llm, "vision_config": vision, "max_dynamic_patch": 6, "min_dynamic_patch": 1,
        "pad2square": False, "ps_version": "v2", "select_layer": -1, "system_message": None,
        "template": "internlm2-chat", "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "use_backbone_lora": LORA_RANK, "use_llm_lora": LORA_RANK, "use_img_start_end_token": True,
        "use_thumbnail": True, "transformers_version": "4.48.3",
    }


def _save_bf16_safetensors(tensors: dict[str, np.ndarray], path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    out = {}
    for k, v in tensors.items():
        t = torch.from_numpy(np.ascontiguousarray(v))
        out[k] = t.to(torch.bfloat16) if t.is_floating_point() else t
    save_file(out, str(path), metadata={"format": "pt"})


def build_love_checkpoints(root: Path, seed: int = 0) -> dict[str, Path]:
    """Write the three skill folders and temporal.pth under `root`; returns {skill: folder, "temporal": file}."""
    import torch

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    swin = swin_state_dict(seed + 100)
    torch.save({"state_dict": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in swin.items()}},
               root / "temporal.pth")
    paths: dict[str, Path] = {"temporal": root / "temporal.pth"}

    # Shared by the three skills: the frozen InternVL3 base (vision and LLM) and the motion backbone.
    tok_dir = root / ".tokenizer"
    ids = build_tokenizer_files(tok_dir)
    vocab = -(-(max(ids.values()) + 1) // 16) * 16  # padded past the tokenizer, as real vocabularies are
    base = _Draw(np.random.default_rng(seed))
    _vision_base(base, VISION)
    _llm_base(base, LLM, vocab)
    p = "language_model.base_model.model."
    emb, head = base.out[p + "model.tok_embeddings.weight"], base.out[p + "output.weight"]
    nl = emb[ids["\n"]] * NEWLINE_EMBED_SCALE
    emb[ids["\n"]] = nl
    c = base.out[p + "model.norm.weight"] * nl / np.sqrt(np.mean(nl ** 2))
    c = c / np.linalg.norm(c)
    u = base.rng.standard_normal(c.shape).astype(np.float32) / np.sqrt(c.size)
    head[ids["Yes"]], head[ids["No"]] = ANSWER_COMMON * c + u, ANSWER_COMMON * c - u
    swin_features = SWIN["embed_dim"] * 2 ** (len(SWIN["depths"]) - 1)
    for k, skill in enumerate(SKILLS):
        out = root / FOLDERS[skill]
        out.mkdir(exist_ok=True)
        for f in tok_dir.iterdir():
            (out / f.name).write_bytes(f.read_bytes())
        own = _Draw(np.random.default_rng(seed + 10 + k))
        # Stage 1 trains mlp1 / fast_mlp per MOS skill; QA starts from InternVL3 (its fast_mlp untrained).
        _heads(own, LLM["hidden_size"], swin_features, seed + 10 + k)
        final = _lora(base.out, seed + 20 + k, LORA_RANK, b_std=0.5)  # in model.safetensors
        best = _lora(base.out, seed + 30 + k, LORA_RANK, b_std=0.5)  # in lora_weights.pth (wins at load)
        state = {**base.out, **own.out, **final, **{"evaluator." + n: v for n, v in swin.items()}}
        _save_bf16_safetensors(state, out / "model.safetensors")
        torch.save({n: torch.from_numpy(v).to(torch.bfloat16) for n, v in best.items()}, out / "lora_weights.pth")
        (out / "config.json").write_text(json.dumps(_config(vocab), indent=2, ensure_ascii=False) + "\n")
        (out / "generation_config.json").write_text(json.dumps(
            {"bos_token_id": 1, "eos_token_id": [2, ids["<|im_end|>"]], "pad_token_id": 2,
             "transformers_version": "4.48.3"}, indent=2) + "\n")
        torch.save({"note": "placeholder for transformers.TrainingArguments; never read"}, out / "training_args.bin")
        paths[skill] = out
    for f in tok_dir.iterdir():
        f.unlink()
    tok_dir.rmdir()
    return paths


def main(argv: list[str] | None = None) -> None:
    import sys

    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "love-tiny")
    for name, path in build_love_checkpoints(out, seed=int(args[1]) if len(args) > 1 else 0).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
