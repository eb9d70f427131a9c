"""LOVE's inference computation, one video at a time, on the ORIGINAL-format checkpoint folders (tests only).

An independent path, not the serving code: it re-expresses what IntMeGroup/LOVE@919fe92 does
(train/infer_perception.py, infer_correspondence.py, eval_qa.py, train/dataset.py, the internvl_chat_infer
model and its swin_backbone.py), in float32 on CPU:

- decoding every frame with PyAV (the reference uses decord; both count frames in presentation order);
- the 8-frame index rule and the PIL bicubic 448 x 448 tile with torchvision's ToTensor + Normalize;
- test-mode SampleFrames for 4 x 32 frames, the fragment grid on the whole [C, T, H, W] video with the
  reference's upsampling (torch.nn.functional.interpolate) and grid arithmetic; the crop offsets, which
  the reference draws with torch.randint, are an argument (the tests pass the serving rule's offsets);
- the checkpoint read as the reference loads it: safetensors, then lora_weights.pth over it; the
  conversation string built as preprocess_internlm builds it and tokenized by the checkpoint's own slow
  tokenizer (its remote code, use_fast=False, add_eos_token=False);
- transformers' own modules with the weights mapped here: InternVLForConditionalGeneration (InternVL
  vision tower, pixel shuffle, projector) over a Llama text model (InternLM2's wqkv split here); LoRA kept
  unmerged, applied at run time by forward hooks (W x + s B A x);
- the Swin3D re-expressed from swin_backbone.py's control flow (window partition per block, cyclic
  shifts and their masks, the global fragment position index, the bf16 product of attention and values);
- the forward of modeling_internvl_chat.py: embeddings of <IMG_CONTEXT> replaced (frames first, the
  motion vectors at the last context token and 3, 6, 9 before it), the full sequence through the LLM, the
  final-norm hidden state at index -4 into mlpscore; QA: argmax of the teacher-forced answer positions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

IGNORE_INDEX = -100
INTERNLM2_IM_END = 92542  # the reference drops this label id when it decodes the QA answer span
SYSTEM = ("你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, "
          "是一个有用无害的人工智能助手。")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- video


def decode_all(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def frame_indices(n_frames: int, segments: int = 8) -> list[int]:
    start, end = max(0, round(-100000 * 1.0)), min(round(100000 * 1.0), n_frames - 1)
    seg = float(end - start) / segments
    return [int(start + seg / 2 + np.round(seg * i)) for i in range(segments)]


def frames_tensor(frames: list[np.ndarray]) -> torch.Tensor:
    """The 8 tiles: PIL resize to 448 x 448 (PIL's default filter, bicubic), ToTensor, Normalize."""
    from PIL import Image

    out = []
    for i in frame_indices(len(frames)):
        img = Image.fromarray(frames[i]).convert("RGB").resize((448, 448))
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous().float().div(255)
        out.append((x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None])
    return torch.stack(out)


def clip_frame_indices(n_frames: int, clip_len: int = 32, num_clips: int = 4) -> np.ndarray:
    avg = (n_frames - clip_len + 1) / float(num_clips)
    if n_frames > clip_len - 1:
        offsets = (np.arange(num_clips) * avg + avg / 2.0).astype(np.int32)
    else:
        offsets = np.zeros((num_clips,), dtype=np.int32)
    inds = offsets[:, None] + np.arange(clip_len)[None, :]
    return np.mod(inds, n_frames).reshape(-1)


def fragments_tensor(frames: list[np.ndarray], rnd_h: np.ndarray, rnd_w: np.ndarray) -> torch.Tensor:
    """[4, 3, 32, 224, 224]: the reference's load_video_fast with its random offsets given."""
    idx = clip_frame_indices(len(frames))
    video = torch.stack([torch.from_numpy(frames[i]) for i in idx], 0).permute(3, 0, 1, 2)  # C, T, H, W uint8
    dur_t, res_h, res_w = video.shape[-3:]
    fh = fw = 7
    fs = 32
    ratio = min(res_h / (fh * fs), res_w / (fw * fs))
    if ratio < 1:
        big = F.interpolate(video / 255.0, scale_factor=1 / ratio, mode="bilinear")
        video = (big * 255.0).type_as(video)
    hgrids = [min(res_h // fh * i, res_h - fs) for i in range(fh)]
    wgrids = [min(res_w // fw * i, res_w - fs) for i in range(fw)]
    target = torch.zeros(video.shape[:-2] + (fh * fs, fw * fs))
    for i, hs in enumerate(hgrids):
        for j, ws in enumerate(wgrids):
            for t in range(dur_t // 32):
                h0, w0 = hs + int(rnd_h[i, j, t]), ws + int(rnd_w[i, j, t])
                target[:, t * 32:(t + 1) * 32, i * fs:(i + 1) * fs, j * fs:(j + 1) * fs] = \
                    video[:, t * 32:(t + 1) * 32, h0:h0 + fs, w0:w0 + fs]
    mean, std = torch.tensor([123.675, 116.28, 103.53]), torch.tensor([58.395, 57.12, 57.375])
    v = ((target.permute(1, 2, 3, 0) - mean) / std).permute(3, 0, 1, 2)
    return v.reshape(v.shape[0], 4, -1, *v.shape[2:]).transpose(0, 1)


# --------------------------------------------------------------------------- checkpoint


@dataclass
class Original:
    folder: Path
    config: dict
    state: dict

    @classmethod
    def load(cls, folder: Path) -> "Original":
        from safetensors.torch import load_file

        state = {k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()}
        lora = torch.load(folder / "lora_weights.pth", map_location="cpu", weights_only=True)
        for k, v in lora.items():  # model.load_state_dict(lora, strict=False)
            if k in state:
                state[k] = v.float()
        return cls(folder, json.loads((folder / "config.json").read_text()), state)

    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.folder, trust_remote_code=True, use_fast=False,
                                             add_eos_token=False)


def _qkv_rows(w: torch.Tensor, heads: int, kv: int, hd: int):
    g = heads // kv
    w = w.reshape(kv, g + 2, hd, -1)
    return w[:, :g].reshape(heads * hd, -1), w[:, g].reshape(kv * hd, -1), w[:, g + 1].reshape(kv * hd, -1)


def _hook_lora(module: torch.nn.Module, a: torch.Tensor, b: torch.Tensor, scale: float) -> None:
    def hook(mod, inputs, output):
        return output + scale * F.linear(F.linear(inputs[0], a), b)

    module.register_forward_hook(hook)


def build_hf_model(ck: Original, image_token_id: int):
    """transformers' InternVLForConditionalGeneration (Llama text model), weights mapped from the checkpoint,
    LoRA of the vision tower and the LLM applied by hooks."""
    from transformers import InternVLConfig, InternVLForConditionalGeneration, LlamaConfig
    from transformers.models.internvl.configuration_internvl import InternVLVisionConfig

    cfg, sd = ck.config, ck.state
    v, m = cfg["vision_config"], cfg["llm_config"]
    vcfg = InternVLVisionConfig(hidden_size=v["hidden_size"], num_hidden_layers=v["num_hidden_layers"],
                                num_attention_heads=v["num_attention_heads"], attention_bias=v["qkv_bias"],
                                intermediate_size=v["intermediate_size"], hidden_act=v["hidden_act"],
                                norm_type=v["norm_type"], layer_norm_eps=v["layer_norm_eps"],
                                image_size=[cfg["force_image_size"]] * 2, patch_size=[v["patch_size"]] * 2,
                                use_mean_pooling=True, use_qk_norm=False)
    scaling = m.get("rope_scaling") or {}
    rope = {"rope_type": scaling.get("type", "default"), "rope_theta": float(m["rope_theta"])}
    if scaling:
        rope["factor"] = float(scaling["factor"])
    tcfg = LlamaConfig(vocab_size=m["vocab_size"], hidden_size=m["hidden_size"],
                       intermediate_size=m["intermediate_size"], num_hidden_layers=m["num_hidden_layers"],
                       num_attention_heads=m["num_attention_heads"], num_key_value_heads=m["num_key_value_heads"],
                       max_position_embeddings=m["max_position_embeddings"], rms_norm_eps=m["rms_norm_eps"],
                       rope_parameters=rope, attention_bias=m["bias"], hidden_act=m["hidden_act"],
                       tie_word_embeddings=False)
    config = InternVLConfig(vision_config=vcfg, text_config=tcfg, image_token_id=image_token_id,
                            downsample_ratio=cfg["downsample_ratio"], projector_hidden_act="gelu",
                            tie_word_embeddings=False)
    config._attn_implementation = "eager"
    config.vision_config._attn_implementation = "eager"
    config.text_config._attn_implementation = "eager"
    model = InternVLForConditionalGeneration(config).eval()
    h, heads, kv = m["hidden_size"], m["num_attention_heads"], m["num_key_value_heads"]
    hd = h // heads
    vp, lp = "vision_model.base_model.model.", "language_model.base_model.model."
    new = {}
    c = v["hidden_size"]
    new["model.vision_tower.embeddings.cls_token"] = sd[vp + "embeddings.class_embedding"]
    new["model.vision_tower.embeddings.position_embeddings"] = sd[vp + "embeddings.position_embedding"]
    new["model.vision_tower.embeddings.patch_embeddings.projection.weight"] = sd[vp + "embeddings.patch_embedding.weight"]
    new["model.vision_tower.embeddings.patch_embeddings.projection.bias"] = sd[vp + "embeddings.patch_embedding.bias"]
    for i in range(v["num_hidden_layers"]):
        s, o = f"{vp}encoder.layers.{i}.", f"model.vision_tower.encoder.layer.{i}."
        for a, b in (("q", 0), ("k", 1), ("v", 2)):
            new[o + f"attention.{a}_proj.weight"] = sd[s + "attn.qkv.base_layer.weight"][b * c:(b + 1) * c]
            new[o + f"attention.{a}_proj.bias"] = sd[s + "attn.qkv.base_layer.bias"][b * c:(b + 1) * c]
        new[o + "attention.projection_layer.weight"] = sd[s + "attn.proj.base_layer.weight"]
        new[o + "attention.projection_layer.bias"] = sd[s + "attn.proj.base_layer.bias"]
        for n in ("fc1", "fc2"):
            new[o + f"mlp.{n}.weight"] = sd[s + f"mlp.{n}.base_layer.weight"]
            new[o + f"mlp.{n}.bias"] = sd[s + f"mlp.{n}.base_layer.bias"]
        for a, b in (("norm1", "layernorm_before"), ("norm2", "layernorm_after")):
            new[o + f"{b}.weight"], new[o + f"{b}.bias"] = sd[s + f"{a}.weight"], sd[s + f"{a}.bias"]
        new[o + "lambda_1"], new[o + "lambda_2"] = sd[s + "ls1"], sd[s + "ls2"]
    for a, b in (("0", "layer_norm"), ("1", "linear_1"), ("3", "linear_2")):
        new[f"model.multi_modal_projector.{b}.weight"] = sd[f"mlp1.{a}.weight"]
        new[f"model.multi_modal_projector.{b}.bias"] = sd[f"mlp1.{a}.bias"]
    new["model.language_model.embed_tokens.weight"] = sd[lp + "model.tok_embeddings.weight"]
    new["model.language_model.norm.weight"] = sd[lp + "model.norm.weight"]
    new["lm_head.weight"] = sd[lp + "output.weight"]
    for i in range(m["num_hidden_layers"]):
        s, o = f"{lp}model.layers.{i}.", f"model.language_model.layers.{i}."
        q, k, vv = _qkv_rows(sd[s + "attention.wqkv.base_layer.weight"], heads, kv, hd)
        new[o + "self_attn.q_proj.weight"], new[o + "self_attn.k_proj.weight"], new[o + "self_attn.v_proj.weight"] = q, k, vv
        new[o + "self_attn.o_proj.weight"] = sd[s + "attention.wo.base_layer.weight"]
        new[o + "mlp.gate_proj.weight"] = sd[s + "feed_forward.w1.base_layer.weight"]
        new[o + "mlp.up_proj.weight"] = sd[s + "feed_forward.w3.base_layer.weight"]
        new[o + "mlp.down_proj.weight"] = sd[s + "feed_forward.w2.base_layer.weight"]
        new[o + "input_layernorm.weight"] = sd[s + "attention_norm.weight"]
        new[o + "post_attention_layernorm.weight"] = sd[s + "ffn_norm.weight"]
    missing, unexpected = model.load_state_dict(new, strict=False)
    assert not unexpected and not [k for k in missing if "inv_freq" not in k], (missing, unexpected)

    # LoRA, unmerged (PEFT: scaling = lora_alpha / r, the reference's alpha = 2 r).
    vs, ls = 2.0, 2.0
    for i in range(v["num_hidden_layers"]):
        s = f"{vp}encoder.layers.{i}."
        layer = model.model.vision_tower.encoder.layer[i]
        a, b = sd[s + "attn.qkv.lora_A.default.weight"], sd[s + "attn.qkv.lora_B.default.weight"]
        for n, part in zip(("q_proj", "k_proj", "v_proj"), b.split(c)):
            _hook_lora(getattr(layer.attention, n), a, part, vs)
        _hook_lora(layer.attention.projection_layer, sd[s + "attn.proj.lora_A.default.weight"],
                   sd[s + "attn.proj.lora_B.default.weight"], vs)
        for n in ("fc1", "fc2"):
            _hook_lora(getattr(layer.mlp, n), sd[s + f"mlp.{n}.lora_A.default.weight"],
                       sd[s + f"mlp.{n}.lora_B.default.weight"], vs)
    for i in range(m["num_hidden_layers"]):
        s = f"{lp}model.layers.{i}."
        layer = model.model.language_model.layers[i]
        a = sd[s + "attention.wqkv.lora_A.default.weight"]
        for n, part in zip(("q_proj", "k_proj", "v_proj"),
                           _qkv_rows(sd[s + "attention.wqkv.lora_B.default.weight"], heads, kv, hd)):
            _hook_lora(getattr(layer.self_attn, n), a, part, ls)
        for src, mod in (("attention.wo", layer.self_attn.o_proj), ("feed_forward.w1", layer.mlp.gate_proj),
                         ("feed_forward.w3", layer.mlp.up_proj), ("feed_forward.w2", layer.mlp.down_proj)):
            _hook_lora(mod, sd[s + f"{src}.lora_A.default.weight"], sd[s + f"{src}.lora_B.default.weight"], ls)
    return model


# --------------------------------------------------------------------------- Swin3D (swin_backbone.py)


def _window_partition(x, ws):
    b, d, h, w, c = x.shape
    x = x.view(b, d // ws[0], ws[0], h // ws[1], ws[1], w // ws[2], ws[2], c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).contiguous().view(-1, ws[0] * ws[1] * ws[2], c)


def _window_reverse(win, ws, b, d, h, w):
    x = win.view(b, d // ws[0], h // ws[1], w // ws[2], ws[0], ws[1], ws[2], -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).contiguous().view(b, d, h, w, -1)


def _window_and_shift(size, window, shift):
    w, s = list(window), list(shift)
    for i in range(3):
        if size[i] <= window[i]:
            w[i], s[i] = size[i], 0
    return tuple(w), tuple(s)


def _shift_mask(d, h, w, ws, ss):
    img = torch.zeros((1, d, h, w, 1))
    cnt = 0
    for a in (slice(-ws[0]), slice(-ws[0], -ss[0]), slice(-ss[0], None)):
        for b in (slice(-ws[1]), slice(-ws[1], -ss[1]), slice(-ss[1], None)):
            for c in (slice(-ws[2]), slice(-ws[2], -ss[2]), slice(-ss[2], None)):
                img[:, a, b, c, :] = cnt
                cnt += 1
    mw = _window_partition(img, ws).squeeze(-1)
    m = mw.unsqueeze(1) - mw.unsqueeze(2)
    return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)


def _fragment_index(d, h, w, frags, ws, ss):
    grid = torch.stack(torch.meshgrid(*(torch.arange(f) for f in frags), indexing="ij")).float()
    coords = F.interpolate(grid[None], size=(d, h, w)).long().permute(0, 2, 3, 4, 1)
    coords = torch.roll(coords, shifts=(-ss[0], -ss[1], -ss[2]), dims=(1, 2, 3))
    wc = _window_partition(coords, ws)
    return wc[:, None, :] - wc[:, :, None]


def _relative_index(ws):
    coords = torch.stack(torch.meshgrid(*(torch.arange(x) for x in ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += ws[0] - 1
    rel[:, :, 1] += ws[1] - 1
    rel[:, :, 2] += ws[2] - 1
    rel[:, :, 0] *= (2 * ws[1] - 1) * (2 * ws[2] - 1)
    rel[:, :, 1] *= 2 * ws[2] - 1
    return rel.sum(-1)


class RefSwin:
    """swin_backbone.SwinTransformer3D's forward (adaptive window at its base 32x224x224) + the evaluator's mean."""

    def __init__(self, sd: dict, prefix: str = "fragments_backbone.", window=(8, 7, 7)):
        self.sd = {k[len(prefix):]: v.float() for k, v in sd.items() if k.startswith(prefix)}
        self.window = window
        self.rpi = _relative_index(window)

    def _ln(self, x, key):
        return F.layer_norm(x, x.shape[-1:], self.sd[key + ".weight"], self.sd[key + ".bias"])

    def _lin(self, x, key, bias=True):
        return F.linear(x, self.sd[key + ".weight"], self.sd.get(key + ".bias") if bias else None)

    def _attention(self, x, key, mask, fmask, ws):
        b_, n, c = x.shape
        table = self.sd[key + ".relative_position_bias_table"]
        heads = table.shape[1]
        qkv = self._lin(x, key + ".qkv").reshape(b_, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * (c // heads) ** -0.5
        attn = q @ k.transpose(-2, -1)
        rpi = self.rpi.reshape(*self.window, *self.window)[:ws[0], :ws[1], :ws[2], :ws[0], :ws[1], :ws[2]]
        rpb = table[rpi.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1).contiguous()
        frag = self.sd.get(key + ".fragment_position_bias_table")
        fgate = fmask.abs().sum(-1)
        nw = fmask.shape[0]
        rpb = rpb.unsqueeze(0)
        fgate = fgate.unsqueeze(1)
        if frag is not None:
            fpb = frag[rpi.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1).contiguous()
            rpb = rpb * fgate + fpb * (1 - fgate)
        attn = (attn.view(b_ // nw, nw, heads, n, n) + rpb.unsqueeze(0)).view(-1, heads, n, n)
        if mask is not None:
            attn = attn.view(b_ // nw, nw, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, heads, n, n)
        attn = torch.softmax(attn, dim=-1)
        out = (attn.to(torch.bfloat16) @ v.to(torch.bfloat16)).transpose(1, 2).reshape(b_, n, c)
        return self._lin(out.float(), key + ".proj")

    def _block(self, x, key, mask, shift):
        b, d, h, w, c = x.shape
        ws, ss = _window_and_shift((d, h, w), self.window, shift)
        shortcut = x
        x = self._ln(x, key + ".norm1")
        if any(s > 0 for s in ss):
            x = torch.roll(x, shifts=(-ss[0], -ss[1], -ss[2]), dims=(1, 2, 3))
            attn_mask = mask
        else:
            attn_mask = None
        win = _window_partition(x, ws)
        gpi = _fragment_index(d, h, w, (1,) + ws[1:], ws, ss)
        out = self._attention(win, key + ".attn", attn_mask, gpi, ws)
        x = _window_reverse(out.view(-1, *(ws + (c,))), ws, b, d, h, w)
        if any(s > 0 for s in ss):
            x = torch.roll(x, shifts=ss, dims=(1, 2, 3))
        x = shortcut + x
        return x + self._lin(F.gelu(self._lin(self._ln(x, key + ".norm2"), key + ".mlp.fc1")), key + ".mlp.fc2")

    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        sd = self.sd
        w = sd["patch_embed.proj.weight"]
        x = F.conv3d(clips, w, sd["patch_embed.proj.bias"], stride=tuple(w.shape[2:]))
        x = self._ln(x.permute(0, 2, 3, 4, 1), "patch_embed.norm").permute(0, 4, 1, 2, 3)
        layer = 0
        while f"layers.{layer}.blocks.0.norm1.weight" in sd:
            b, c, d, h, w_ = x.shape
            full_shift = tuple(s // 2 for s in self.window)
            ws, ss = _window_and_shift((d, h, w_), self.window, full_shift)
            x = x.permute(0, 2, 3, 4, 1)
            mask = _shift_mask(d, h, w_, ws, ss)
            j = 0
            while f"layers.{layer}.blocks.{j}.norm1.weight" in sd:
                x = self._block(x, f"layers.{layer}.blocks.{j}", mask, (0, 0, 0) if j % 2 == 0 else full_shift)
                j += 1
            if f"layers.{layer}.downsample.reduction.weight" in sd:
                x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], -1)
                x = self._lin(self._ln(x, f"layers.{layer}.downsample.norm"), f"layers.{layer}.downsample.reduction",
                              bias=False)
            x = x.permute(0, 4, 1, 2, 3)
            layer += 1
        x = self._ln(x.permute(0, 2, 3, 4, 1), "norm").permute(0, 4, 1, 2, 3)
        return x.mean((-3, -2, -1))


# --------------------------------------------------------------------------- the forward


def conversation(question: str, answer: str) -> str:
    """preprocess_internlm's string: internlm2-chat (MPT separators), the first 12 <image> expanded."""
    frames = "\n".join(f"Frame{i + 1}: <image>" for i in range(8))
    special = frames + "\nMotion Feature: <image><image><image><image>" + "\nMotion Feature2: <image>"
    user = ("<video>\n" + question).replace("<video>\n", special).strip()
    text = (f"<|im_start|>system\n{SYSTEM}<|im_end|><|im_start|>user\n{user}<|im_end|>"
            f"<|im_start|>assistant\n{answer.strip()}<|im_end|>")
    counts = [256] * 12
    counts[-4:-1] = [1, 1, 1, 1]  # the reference's list assignment: 13 entries, the first 12 used
    for i in range(12):
        text = text.replace("<image>", "<img>" + "<IMG_CONTEXT>" * counts[i] + "</img>", 1)
    return text


def labels_for(tokenizer, text: str, input_ids: list[int]) -> list[int]:
    """preprocess_internlm's target masking for one human/gpt turn."""
    target = list(input_ids)
    target[0] = IGNORE_INDEX
    role = "<|im_start|>assistant\n"
    parts = text.split(role)
    n = len(tokenizer(parts[0] + role).input_ids) - 1
    for i in range(1, 1 + n):
        target[i] = IGNORE_INDEX
    cur = 1 + n + len(tokenizer(parts[-1]).input_ids) - 1
    for i in range(cur, len(target)):
        target[i] = IGNORE_INDEX
    pad = tokenizer.pad_token_id
    if cur != sum(1 for t in input_ids if t != pad):
        target = [IGNORE_INDEX] * len(target)
    return target


@dataclass
class Motion:
    """The Swin3D's pooled features of one video's four clips (shared by the skills)."""

    features: torch.Tensor  # (4, F)


def motion_features(swin_sd: dict, frames: list[np.ndarray], rnd_h, rnd_w) -> Motion:
    with torch.no_grad():
        return Motion(RefSwin(swin_sd)(fragments_tensor(frames, rnd_h, rnd_w)))


@dataclass
class Result:
    input_ids: list[int]
    hidden: torch.Tensor  # (L, H) final-norm hidden states
    logits: torch.Tensor  # (L, V)
    score: float  # mlpscore(hidden[-4]) (its 0..1 output)
    answer_span: str  # QA: the reference's decoded argmax span
    answer_argmax: str  # argmax at the answer position only (what the InternLM2 tokenizer's id would give)


def run(ck: Original, model, tokenizer, frames: list[np.ndarray], motion: Motion, question: str, answer: str) -> Result:
    """One forward of modeling_internvl_chat.InternVLChatModel (the infer variant) on one video."""
    ctx = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    text = conversation(question, answer)
    ids = tokenizer(text).input_ids
    input_ids = torch.tensor([ids])
    sd = ck.state
    with torch.no_grad():
        vit = model.model.get_image_features(pixel_values=frames_tensor(frames), vision_feature_layer=-1,
                                             vision_feature_select_strategy="default").pooler_output
        fast = F.layer_norm(motion.features, motion.features.shape[-1:], sd["fast_mlp.0.weight"], sd["fast_mlp.0.bias"])
        fast = F.linear(F.gelu(F.linear(fast, sd["fast_mlp.1.weight"], sd["fast_mlp.1.bias"])),
                        sd["fast_mlp.3.weight"], sd["fast_mlp.3.bias"])
        embeds = model.model.language_model.embed_tokens(input_ids).clone()
        b, n, c = embeds.shape
        embeds = embeds.reshape(b * n, c)
        selected = input_ids == ctx
        cum = torch.cumsum(selected, dim=1)
        last = (cum == cum.max(dim=1, keepdim=True)[0]) & selected
        pos = int(torch.nonzero(last[0])[0])
        last[:, pos - 3] = True
        last[:, pos - 6] = True
        last[:, pos - 9] = True
        sel1 = selected.clone()
        sel1[last] = False
        embeds[sel1.view(-1)] = embeds[sel1.view(-1)] * 0.0 + vit.reshape(-1, c)
        embeds[last.view(-1)] = embeds[last.view(-1)] * 0.0 + fast.reshape(-1, c)
        out = model.model.language_model(inputs_embeds=embeds.reshape(b, n, c))
        hidden = out.last_hidden_state[0]
        logits = model.lm_head(hidden)
        x = hidden[-4]
        for i in range(1, 6):
            x = F.relu(F.linear(x, sd[f"mlpscore.fc{i}.weight"], sd[f"mlpscore.fc{i}.bias"]))
    labels = labels_for(tokenizer, text, ids)
    shift_labels = labels[1:]
    argmax = torch.argmax(logits[:-1], dim=-1).tolist()
    kept = [t for t in shift_labels if t != IGNORE_INDEX and t != INTERNLM2_IM_END]
    span = tokenizer.decode(argmax[-len(kept) - 1:-1])
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    kept2 = [t for t in shift_labels if t != IGNORE_INDEX and t != im_end]
    own = tokenizer.decode(argmax[-len(kept2) - 1:-1])
    return Result(ids, hidden, logits, float(x.reshape(-1)[0]), span, own)


def judge(text: str) -> str:
    """eval_qa.py's reading of an answer: 'Yes' if it contains yes, else 'No' if it contains no."""
    if "yes" in text.lower():
        return "Yes"
    if "no" in text.lower():
        return "No"
    return text
