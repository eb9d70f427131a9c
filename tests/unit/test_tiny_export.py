"""The tiny random Qwen2.5-VL checkpoint: offline, reloadable, deterministic, scoring-ready tokenizer."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may touch the hub

import numpy as np
import pytest
import torch

from vidjudge.export.tiny import LEVEL_WORDS, QUESTIONS, SPECIAL_TOKENS, build_tiny_checkpoint


def test_files(tiny_checkpoint):
    names = {p.name for p in tiny_checkpoint.iterdir()}
    for required in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                     "preprocessor_config.json", "video_preprocessor_config.json", "generation_config.json"):
        assert required in names, required
    assert not any(n.endswith(".bin") for n in names)
    video = json.loads((tiny_checkpoint / "video_preprocessor_config.json").read_text())
    assert video["video_processor_type"] == "Qwen2VLVideoProcessor"
    assert (video["patch_size"], video["temporal_patch_size"], video["merge_size"]) == (14, 2, 2)


def test_config_sizes_vllm_accepts(tiny_checkpoint):
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(tiny_checkpoint, local_files_only=True)
    text, vision = cfg.text_config, cfg.vision_config
    head_dim = text.hidden_size // text.num_attention_heads
    assert (text.hidden_size, text.num_attention_heads, text.num_hidden_layers) == (64, 2, 2)
    assert head_dim >= 32
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
    assert vision.out_hidden_size == text.hidden_size
    assert (vision.hidden_size, vision.depth, vision.patch_size, vision.spatial_merge_size,
            vision.temporal_patch_size, vision.window_size, list(vision.fullatt_block_indexes),
            vision.tokens_per_second) == (32, 2, 14, 2, 2, 112, [1], 2)
    assert cfg.tie_word_embeddings is False and text.tie_word_embeddings is False


def test_reloads_and_runs(tiny_checkpoint):
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint, local_files_only=True)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_checkpoint, dtype=torch.float32,
                                                               local_files_only=True).eval()
    cfg = model.config
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    assert (cfg.image_token_id, cfg.video_token_id) == (ids["<|image_pad|>"], ids["<|video_pad|>"])
    assert (cfg.vision_start_token_id, cfg.vision_end_token_id) == (ids["<|vision_start|>"], ids["<|vision_end|>"])
    assert cfg.text_config.eos_token_id == ids["<|im_end|>"] == tok.eos_token_id
    assert cfg.text_config.pad_token_id == ids["<|endoftext|>"] == tok.pad_token_id
    assert cfg.text_config.vocab_size == len(tok) == 1000
    assert all(p.dtype == torch.float32 for p in model.parameters())

    # One video of 2 frames of 56x56 (grid 1x4x4 -> 4 tokens) through the whole model.
    text = tok.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTIONS[0][0]}]}],
        tokenize=False, add_generation_prompt=True) + QUESTIONS[0][1]
    text = text.replace("<|video_pad|>", "<|video_pad|>" * 4)
    input_ids = torch.tensor([tok.encode(text, add_special_tokens=False)])
    mm_types = (input_ids == cfg.video_token_id).long() * 2
    pixels = torch.randn(16, 3 * 2 * 14 * 14, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(input_ids=input_ids, pixel_values_videos=pixels, video_grid_thw=torch.tensor([[1, 4, 4]]),
                    second_per_grid_ts=torch.tensor([1.0]), mm_token_type_ids=mm_types)
    logits = out.logits[0, -1]
    assert logits.shape == (1000,) and torch.isfinite(logits).all()
    level_ids = [tok.convert_tokens_to_ids("Ġ" + w) for w in LEVEL_WORDS]
    probs = torch.softmax(logits[level_ids], -1)
    assert probs.max() < 0.999  # random, but not degenerate


def test_level_words_single_tokens(tiny_checkpoint):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tiny_checkpoint, local_files_only=True)
    raw = Tokenizer.from_file(str(tiny_checkpoint / "tokenizer.json"))  # what the bundle loader uses
    seen = set()
    for w in LEVEL_WORDS:
        for text in (w, " " + w):
            hf_ids = hf.encode(text, add_special_tokens=False)
            raw_ids = raw.encode(text, add_special_tokens=False).ids
            assert len(hf_ids) == 1 and hf_ids == raw_ids, (text, hf_ids, raw_ids)
            seen.add(hf_ids[0])
            assert hf.decode(hf_ids) == text
    assert len(seen) == 2 * len(LEVEL_WORDS)
    for t in SPECIAL_TOKENS:
        assert len(raw.encode(t, add_special_tokens=False).ids) == 1


def test_builtin_questions_compact(tiny_checkpoint):
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(tiny_checkpoint / "tokenizer.json"))
    for question, answer in QUESTIONS:
        for text in (question.replace("{prompt}", ""), answer):
            n = len(raw.encode(text, add_special_tokens=False).ids)
            assert n <= len(text.split()) + 3, (text, n)  # about one token per word


def test_chat_template(tiny_checkpoint):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint, local_files_only=True)
    text = tok.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Hi"}]}],
        tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                    "<|vision_start|><|video_pad|><|vision_end|>Hi<|im_end|>\n<|im_start|>assistant\n")


def test_image_processor_config_loads(tiny_checkpoint):
    from transformers import AutoImageProcessor

    proc = AutoImageProcessor.from_pretrained(tiny_checkpoint, local_files_only=True)
    assert (proc.patch_size, proc.temporal_patch_size, proc.merge_size) == (14, 2, 2)
    out = proc(images=[np.zeros((56, 56, 3), np.uint8)], do_resize=False, return_tensors="np")
    assert out["pixel_values"].shape == (16, 1176)


def test_deterministic(tiny_checkpoint, tmp_path):
    again = build_tiny_checkpoint(tmp_path / "again", seed=0)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (tiny_checkpoint / name).read_bytes(), name
    torch_state = torch.random.get_rng_state()
    other = build_tiny_checkpoint(tmp_path / "other", seed=1)
    assert torch.equal(torch.random.get_rng_state(), torch_state)  # the caller's RNG is untouched
    assert (other / "model.safetensors").read_bytes() != (tiny_checkpoint / "model.safetensors").read_bytes()
    assert (other / "tokenizer.json").read_bytes() == (tiny_checkpoint / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("word", LEVEL_WORDS)
def test_level_word_ids_distinct_from_special(tiny_checkpoint, word):
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(tiny_checkpoint / "tokenizer.json"))
    special = {raw.token_to_id(t) for t in SPECIAL_TOKENS}
    assert raw.encode(" " + word, add_special_tokens=False).ids[0] not in special
