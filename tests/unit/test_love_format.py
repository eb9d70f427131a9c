"""The tiny LOVE checkpoints are in the released on-disk format, the converter reads that format as the
reference loads it, and every served prompt's token ids equal what the checkpoint's own slow tokenizer
produces for the reference's conversation (BOS first, no EOS)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import love_reference as R
from vidjudge.export.hf import ExportError
from vidjudge.export.love import export_love, merge_lora, read_skill
from vidjudge.server.bundle import load_bundle

QUESTIONS = {
    "perception": ("How is the quality of the video?", "The quality of the video is good."),
    "correspondence": ("How would you rate the correspondence of this video and its prompt? prompt:{prompt}",
                       "The correspondence of the video and its prompt is good."),
}
PROMPTS = ["A cat is drinking a cup of water.", "一只猫 {braces} <image> and\ttabs ", "x"]
QA_QUESTIONS = ["Is there a cat in the video?", "Does the video show {prompt}? ", "有没有狗?"]


def test_checkpoint_folders_hold_the_released_files(love_checkpoints):
    for skill in ("perception", "correspondence", "qa"):
        folder = love_checkpoints[skill]
        names = {p.name for p in folder.iterdir()}
        assert {"config.json", "model.safetensors", "lora_weights.pth", "tokenizer.model", "tokenizer_config.json",
                "added_tokens.json", "tokenization_internlm3.py", "generation_config.json",
                "training_args.bin"} <= names
        cfg = json.loads((folder / "config.json").read_text())
        assert cfg["model_type"] == "internvl_chat" and cfg["use_backbone_lora"] == cfg["use_llm_lora"] == 16
        assert cfg["llm_config"]["architectures"] == ["InternLM2ForCausalLM"]
        keys = set(load_file(str(folder / "model.safetensors")))
        for k in ("vision_model.base_model.model.encoder.layers.0.attn.qkv.base_layer.weight",
                  "vision_model.base_model.model.encoder.layers.0.attn.qkv.base_layer.bias",
                  "vision_model.base_model.model.encoder.layers.1.mlp.fc2.lora_A.default.weight",
                  "language_model.base_model.model.model.layers.0.attention.wqkv.lora_B.default.weight",
                  "language_model.base_model.model.model.layers.1.feed_forward.w3.base_layer.weight",
                  "language_model.base_model.model.output.weight", "mlp1.1.weight", "fast_mlp.3.bias",
                  "mlpscore.fc5.bias", "evaluator.fragments_backbone.layers.0.blocks.1.attn.fragment_position_bias_table"):
            assert k in keys, k
    pre = torch.load(love_checkpoints["temporal"], weights_only=True)
    assert set(pre) == {"state_dict"} and all(k.startswith("fragments_backbone.") for k in pre["state_dict"])


def test_lora_weights_pth_wins_over_the_state_dict(love_checkpoints):
    folder = love_checkpoints["perception"]
    state = load_file(str(folder / "model.safetensors"))
    pth = torch.load(folder / "lora_weights.pth", weights_only=True)
    assert pth and all(".lora_" in k for k in pth)
    assert all(not torch.equal(state[k], v) for k, v in pth.items())  # the tiny folders differ on purpose
    skill = read_skill("perception", folder)
    assert skill.overlaid == len(pth)
    assert all(torch.equal(skill.state[k], v) for k, v in pth.items())


def test_merged_lora_is_base_plus_two_b_a(love_checkpoints):
    skill = read_skill("perception", love_checkpoints["perception"])
    p = "vision_model.base_model.model."
    vision = {k[len(p):]: v for k, v in skill.state.items() if k.startswith(p)}
    merged = merge_lora(vision, 16)
    stem = "encoder.layers.1.attn.proj"
    want = vision[stem + ".base_layer.weight"].float() + 2.0 * (
        vision[stem + ".lora_B.default.weight"].float() @ vision[stem + ".lora_A.default.weight"].float())
    torch.testing.assert_close(merged[stem + ".weight"], want)
    assert torch.equal(merged[stem + ".bias"], vision[stem + ".base_layer.bias"])
    assert not any("lora" in k or "base_layer" in k for k in merged)


def _reference_ids(tok, question: str, answer: str) -> list[int]:
    return tok(R.conversation(question, answer)).input_ids


def test_prompt_token_ids_equal_the_slow_reference_tokenizer(love_bundle, love_checkpoints):
    bundle = load_bundle(love_bundle)
    fam = bundle.family
    tok = R.Original.load(love_checkpoints["perception"]).tokenizer()
    assert tok.__class__.__name__ == "InternLM3Tokenizer"  # the checkpoint's own (remote) slow tokenizer
    for skill, (question, answer) in QUESTIONS.items():
        dim = bundle.dimensions[f"love.{skill}"]
        for prompt in PROMPTS:
            q = dim.render_question(prompt, {})
            assert q.rstrip() == question.replace("{prompt}", prompt).rstrip()
            ref = _reference_ids(tok, question.replace("{prompt}", prompt), answer)
            assert ref[0] == tok.bos_token_id and ref[-1] == tok.convert_tokens_to_ids("<|im_end|>")
            served = fam.prompt_ids(q, dim.answer_prefix)
            # The served prompt is the reference's input without "good", "." and <|im_end|>: its last token
            # is the one at the reference's index -4 (the hidden state mlpscore reads).
            assert list(served) == ref[:-3]
            assert tok.convert_ids_to_tokens(ref[-4]) == "▁is"
    qa = bundle.dimensions["love.qa"]
    for question in QA_QUESTIONS:
        for answer in ("Yes", "No"):
            ref = _reference_ids(tok, question, answer)
            assert list(fam.prompt_ids(qa.render_question("", {"question": question}), qa.answer_prefix)) == ref[:-2]
            assert ref[-2] == qa.level_token_ids[0 if answer == "Yes" else 1]


def test_prompt_layout_has_twelve_spans_and_the_literal_thirteenth_image(love_bundle):
    fam = load_bundle(love_bundle).family
    ids = fam.prompt_ids("How is the quality of the video?", "The quality of the video is")
    ctx = fam.tokenizer.added["<IMG_CONTEXT>"]
    assert sum(1 for i in ids if i == ctx) == 8 * 256 + 4
    text = fam.tokenizer.decode([i for i in ids if i != ctx])
    assert "Motion Feature2: <image>How is the quality" in text and text.count("<image>") == 1
    # The motion vectors sit at the last context token and 3, 6, 9 before it (<img> ctx </img> each).
    pos = [i for i, t in enumerate(ids) if t == ctx]
    assert pos[-4:] == [pos[-1] - 9, pos[-1] - 6, pos[-1] - 3, pos[-1]]


def test_bundle_layout(love_bundle):
    b = load_bundle(love_bundle)
    m = b.manifest
    assert m.family == "love" and set(b.dimensions) == {"love.perception", "love.correspondence", "love.qa"}
    assert set(m.encoders) == {"vision.perception", "vision.correspondence", "vision.qa", "motion"}
    assert m.encoders["motion"].output_shape[0] == 3  # three different fast_mlps in the tiny checkpoints
    assert set(m.adapters) == {"perception", "correspondence", "qa"} and set(m.heads) == {"perception", "correspondence"}
    llm = json.loads((b.llm_path / "config.json").read_text())
    assert llm["model_type"] == "llama" and llm["rope_parameters"]["rope_type"] == "dynamic"
    assert not (b.llm_path / "tokenization_internlm3.py").exists()  # the bundle runs none of the checkpoint's code
    assert b.family.encoders_for([b.dimensions["love.qa"]]) == ("vision.qa", "motion")


def test_converter_refuses_what_it_cannot_serve(love_checkpoints, tmp_path):
    c = love_checkpoints
    bad = tmp_path / "not-love"
    shutil.copytree(c["qa"], bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model_type"] = "llava"
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ExportError, match="internvl_chat"):
        export_love(c["perception"], c["correspondence"], bad, c["temporal"], tmp_path / "b1", onnx=False)
    # A skill whose frozen base LLM differs: one base + adapters cannot serve it.
    other = tmp_path / "other-base"
    shutil.copytree(c["qa"], other)
    state = load_file(str(other / "model.safetensors"))
    key = "language_model.base_model.model.model.norm.weight"
    state[key] = state[key] * 2
    from safetensors.torch import save_file

    save_file(state, str(other / "model.safetensors"))
    with pytest.raises(ExportError, match="base LLM weights differ"):
        export_love(c["perception"], c["correspondence"], other, c["temporal"], tmp_path / "b2", onnx=False)
