"""A tiny random-weight Qwen2.5-VL checkpoint, built offline in seconds.

Used by tests, the demo bundle and CI: same architecture as the real judges
(Qwen2.5-VL: windowed vision tower with merger, mRoPE text decoder) at sizes
vLLM still accepts (DESIGN.md §5: text head_dim >= 32, mrope sections summing
to head_dim / 2, vision out_hidden_size == text hidden size).

The tokenizer is a byte-level BPE trained here with `tokenizers` on a small
corpus holding Qwen2.5-VL's special tokens, the ChatML scaffolding, the level
words (each one token, with and without a leading space) and the built-in
questions. Nothing is downloaded.

Determinism: the same seed gives bit-identical `model.safetensors` (weights are
drawn inside a forked RNG, so the caller's RNG state is untouched).
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
LEVEL_WORDS = ("excellent", "good", "fair", "poor", "bad")
ANSWER_WORDS = ("yes", "no")  # the yes/no head's words, single tokens too
VOCAB_SIZE = 1000
SYSTEM_PROMPT = "You are a helpful assistant."

# The built-in dimensions (server/dimensions.py BUILTIN) and the tiny bundle's extra ones (below);
# in the corpus so they tokenize compactly.
QUESTIONS = (
    ("How is the visual quality of this video?", "The quality of the video is"),
    ("How well does this video match its prompt? Prompt: {prompt}",
     "The alignment of the video with the prompt is"),
    ("{question} Answer yes or no.", "The answer is"),
)
# Dimensions the tiny bundle adds to the built-in ones, one per head that needs no generated text:
# a regression head (tiny random MLP, weights `quality_mlp`) and a yes/no QA head.
TINY_DIMENSIONS = [
    dict(name="quality_regression", head="regression",
         description="Visual quality from a regression head on the last hidden state (0-100).",
         question="How is the visual quality of this video?", answer_prefix="The quality of the video is",
         weights="quality_mlp", output_scale=100.0, scale=[0.0, 100.0]),
    dict(name="qa", head="yes_no", description="Answers a yes/no question about the video (the request's).",
         question="{question} Answer yes or no.", answer_prefix="The answer is", levels=["yes", "no"]),
]
MLP_LAYERS = (64, 16, 1)  # text hidden size -> ... -> 1

# Qwen2-VL / Qwen2.5-VL's chat template (default system message, image/video placeholders).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Frame-size limits written to the processor configs (the server resizes frames itself).
MIN_PIXELS = 28 * 28 * 4
MAX_PIXELS = 28 * 28 * 256

TEXT_CONFIG = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
    num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-6,
    max_window_layers=2, use_sliding_window=False, initializer_range=0.2, tie_word_embeddings=False,
)
VISION_CONFIG = dict(
    depth=2, hidden_size=32, intermediate_size=64, num_heads=2, in_channels=3, out_hidden_size=64,
    patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
    fullatt_block_indexes=[1], tokens_per_second=2, hidden_act="silu", initializer_range=0.05,
)
# Text weights ~N(0, 0.2) give a random model whose level-word probabilities visibly depend on the
# input. Vision weights ~N(0, 0.05) make the merged visual tokens about as large as the text
# embeddings (std ~0.2); at 0.2 they would be ~15x larger (std ~3, max ~15), and float32 rounding
# differences between runtimes (conv/GEMM summation order) would reach ~1e-5 in absolute terms.
_WORDS = """
a an the this that these those it its is are was were be been being has have had do does did
and or but not no yes with without from into onto over under above below between through during
before after while when where which who whom what how why very more most less least much many few
some any each every all both other another same different new old young small large big little
long short high low fast slow early late good better best bad worse worst fair poor excellent
video videos image images picture frame frames clip clips scene scenes shot shots camera cameras
motion moving moves move movement still static smooth smoothly jitter jittery shaky stable blur
blurry blurred sharp sharpness focus focused noise noisy grain grainy artifact artifacts artefact
compression blocky blockiness flicker flickering frozen freeze colour color colours colors bright
brightness dark darkness contrast light lighting shadow shadows sunlight night day morning evening
person people man woman child children dog dogs cat cats bird birds horse fish animal animals car
cars street road city building buildings house room kitchen garden park forest tree trees flower
flowers river lake sea ocean beach mountain mountains sky cloud clouds rain snow water fire smoke
walk walks walking run runs running jump jumps jumping dance dances dancing play plays playing
sit sits sitting stand stands standing look looks looking turn turns turning fly flies flying swim
eat eats eating drink hold holds holding open close opens closes ride rides riding drive drives
red green blue yellow white black orange purple pink brown gray grey golden silver wooden metal
prompt prompts caption captions description text match matches matching aligned alignment follow
follows object objects subject subjects background foreground left right center centre top bottom
realistic realism natural unnatural physics consistent consistency temporal spatial detail details
texture textures face faces hand hands body bodies eye eyes quality aesthetic aesthetics overall
score scores rating ratings level levels judge judges evaluate evaluation answer question assistant
user system helpful generated generation model models render rendered rendering style cinematic
""".split()
MROPE_SECTION = [4, 6, 6]
ROPE_THETA = 1_000_000.0


def _corpus() -> list[str]:
    """Training text for the BPE tokenizer; fixed, so the tokenizer is reproducible."""
    words = ", ".join(LEVEL_WORDS[:-1]) + " or " + LEVEL_WORDS[-1]
    lines: list[str] = []
    for question, answer in QUESTIONS:
        q = question.replace("{prompt}", "a cat plays the piano in a sunny room")
        lines += [
            f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n"
            f"<|vision_start|><|video_pad|><|vision_end|>{q}<|im_end|>\n<|im_start|>assistant\n{answer}",
            f"<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{q}<|im_end|>\n",
        ]
        lines += [question, answer, q] * 20
        for w in LEVEL_WORDS:
            lines += [f"{answer} {w}.", f"{answer} {w}"] * 10
    lines += [f"<|im_start|>user\nRate this video. Answer with one word: {words}.<|im_end|>\n"
              "<|im_start|>assistant\n"] * 20
    for w in LEVEL_WORDS + ANSWER_WORDS:
        lines += [w, " " + w, f"{w}\n", f" {w}.", w.capitalize(), f"It is {w}.", f"the video is {w}"] * 40
    lines += ["the quick brown fox jumps over the lazy dog. " * 4,
              "0 1 2 3 4 5 6 7 8 9 10 100 2025 . , ; : ! ? ' \" ( ) [ ] { } - _ / \\"] * 30
    # Generic descriptive English so that the vocabulary fills up to about VOCAB_SIZE.
    for i, word in enumerate(_WORDS):
        lines += [f"{word} {_WORDS[(7 * i + 3) % len(_WORDS)]}", f" {word}", word.capitalize()] * 3
    return lines


def build_tokenizer():
    """Train the byte-level BPE tokenizer; returns a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=list(SPECIAL_TOKENS), min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)

    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )
    hf_tok.chat_template = CHAT_TEMPLATE
    for w in LEVEL_WORDS + ANSWER_WORDS:
        for text in (w, " " + w):
            ids = hf_tok.encode(text, add_special_tokens=False)
            if len(ids) != 1:
                raise AssertionError(f"level word {text!r} is not a single token: {ids}")
    for t in SPECIAL_TOKENS:
        ids = hf_tok.encode(t, add_special_tokens=False)
        if len(ids) != 1:
            raise AssertionError(f"special token {t!r} does not encode to one id: {ids}")
    return hf_tok


def build_config(tokenizer, text_overrides: dict | None = None, vision_overrides: dict | None = None):
    """The tiny model's config; the overrides change sizes or init ranges (export/train.py's judge)."""
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = dict(
        TEXT_CONFIG,
        **(text_overrides or {}),
        vocab_size=len(tokenizer),
        rope_parameters={"rope_type": "default", "mrope_section": list(MROPE_SECTION), "rope_theta": ROPE_THETA},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        dtype="float32",
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=dict(VISION_CONFIG, **(vision_overrides or {})),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
        dtype="float32",
    )


def _processor_files(out_dir: Path) -> None:
    """preprocessor_config.json (written by the PIL image processor) and a hand-written
    video_preprocessor_config.json (the HF video processor class needs torchvision, which this
    environment cannot import; the keys are those Qwen2VLVideoProcessor reads)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    common = dict(patch_size=VISION_CONFIG["patch_size"], temporal_patch_size=VISION_CONFIG["temporal_patch_size"],
                  merge_size=VISION_CONFIG["spatial_merge_size"])
    size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
    img = Qwen2VLImageProcessorPil(size=dict(size), **common)
    img.save_pretrained(out_dir)
    cfg_path = out_dir / "preprocessor_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["image_processor_type"] = "Qwen2VLImageProcessor"  # resolves to the torchvision or PIL backend
    cfg["processor_class"] = "Qwen2_5_VLProcessor"
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

    video = dict(
        video_processor_type="Qwen2VLVideoProcessor",
        processor_class="Qwen2_5_VLProcessor",
        do_convert_rgb=True, do_resize=True, do_rescale=True, do_normalize=True,
        rescale_factor=1 / 255, image_mean=cfg["image_mean"], image_std=cfg["image_std"],
        resample=3, size=dict(size), do_sample_frames=False, **common,
    )
    (out_dir / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2, sort_keys=True) + "\n")


def build_tiny_checkpoint(out_dir: Path, seed: int = 0) -> Path:
    """Save a tiny random Qwen2.5-VL (safetensors, float32) with tokenizer and processor configs.

    Returns `out_dir`. Offline and deterministic: the same seed gives bit-identical weights.
    """
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    config = build_config(tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).eval()
    model.generation_config.do_sample = False
    model.generation_config.bos_token_id = config.text_config.bos_token_id
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    _processor_files(out_dir)
    return out_dir


def write_tiny_mlp(path: Path, seed: int = 0) -> Path:
    """Random weights of a regression head (fc1..fcN, LOVE's mlpscore layout) for the tiny model's hidden size.
    The last layer is a small perturbation of a positive bias, so that after the final ReLU most outputs
    land around 0.5 (a MOS around 50 once multiplied by 100) and still differ between videos."""
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed + 1)
    tensors = {}
    for i, (n_in, n_out) in enumerate(zip(MLP_LAYERS, MLP_LAYERS[1:]), start=1):
        scale = (1.0 if n_out > 1 else 0.1) / np.sqrt(n_in)
        tensors[f"fc{i}.weight"] = (rng.standard_normal((n_out, n_in)) * scale).astype(np.float32)
        tensors[f"fc{i}.bias"] = np.full(n_out, 0.1 if n_out > 1 else 0.5, dtype=np.float32)
    path = Path(path)
    save_file(tensors, str(path))
    return path


def write_tiny_lora(checkpoint_dir: Path, out_dir: Path, seed: int = 0, rank: int = 8) -> Path:
    """A random LoRA adapter (PEFT format) on the tiny model's language model (attention q/v/o projections),
    as a fine-tune of a judge is shipped. PEFT initialises B to zero (no effect); random A and B make the
    adapter change the scores, so tests can tell it is applied."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(checkpoint_dir, dtype=torch.float32)
    # q_proj / v_proj / o_proj exist in the language model only (the vision tower has qkv / proj).
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj", "o_proj"],
                        lora_dropout=0.0, bias="none")
    peft_model = get_peft_model(model, config)
    gen = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    peft_model.save_pretrained(out_dir)
    return Path(out_dir)


def main(argv: list[str] | None = None) -> None:
    import sys

    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "tiny-qwen25vl")
    seed = int(args[1]) if len(args) > 1 else 0
    print(build_tiny_checkpoint(out, seed=seed))


if __name__ == "__main__":
    main()
