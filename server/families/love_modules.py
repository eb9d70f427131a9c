"""LOVE's two visual encoders as plain torch modules (the torch encoder backend and the ONNX export).

- `InternVisionEncoder`: InternViT (LOVE: InternViT-300M, 448 px, patch 14) with the skill's LoRA
  merged, then pixel shuffle (v2, ratio 0.5) and `mlp1`: [B, F, 3, 448, 448] -> [B, F * 256, llm_hidden].
- `MotionEncoder`: the Swin3D of DOVER's fragments branch (LOVE-pretrain's temporal.pth), mean-pooled
  over time and space, then each skill's `fast_mlp`: [B, clips, 3, 32, 224, 224] -> [B, skills, clips,
  llm_hidden]. The Swin3D runs once per video whatever the number of skills.

Sizes come from the weights and configs, never from constants (the reference code hard-codes
1024/4096/768 and Swin3D-T defaults). Both modules follow the reference's arithmetic, including what
it does oddly (see DESIGN.md 2.1):

- Swin3D's window attention with fragment position biases: the bias of a token pair is
  `rel * g + frag * (1 - g)` with `g` the L1 distance between the two tokens' fragment cells (an
  integer, not a 0/1 gate), and cyclic-shift masks of -100 (not -inf).
- The attention probabilities and values are rounded to bfloat16 before their product, and the product
  is bfloat16 (`attn.to(torch.bfloat16)`, `v.to(torch.bfloat16)` in the reference's attention, whatever
  the model's dtype); `bf16_attention=False` drops that rounding.
- The adaptive window of the reference (`get_adaptive_window_size`) is the base window at LOVE's fixed
  clip size (32 x 224 x 224); windows shrink per stage where the feature map is smaller than the
  window (the last stage's 7 x 7 map: window (8, 7, 7), shift (4, 0, 0)).

All the layout arithmetic (windows, shifts, masks, fragment cells, relative indices) is computed once
in NumPy at construction; the forward is static-shaped tensor algebra except for the batch axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# --------------------------------------------------------------------------- Swin3D layout (NumPy)


def relative_position_index(window: tuple[int, int, int]) -> np.ndarray:
    """(N, N) index into a ((2wd-1)(2wh-1)(2ww-1), heads) bias table for tokens of one window."""
    wd, wh, ww = window
    coords = np.stack(np.meshgrid(np.arange(wd), np.arange(wh), np.arange(ww), indexing="ij")).reshape(3, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0)
    rel = rel + np.array([wd - 1, wh - 1, ww - 1])
    return (rel[..., 0] * (2 * wh - 1) * (2 * ww - 1) + rel[..., 1] * (2 * ww - 1) + rel[..., 2]).astype(np.int64)


def stage_window(size: tuple[int, int, int], window: tuple[int, int, int], shift: tuple[int, int, int]):
    """The window and shift a stage uses on a (D, H, W) map: a window no larger than the map, and no
    shift along an axis the window covers whole."""
    w, s = list(window), list(shift)
    for i in range(3):
        if size[i] <= window[i]:
            w[i], s[i] = size[i], 0
    return tuple(w), tuple(s)


def window_tokens(grid: np.ndarray, window: tuple[int, int, int]) -> np.ndarray:
    """(D, H, W, ...) -> (num_windows, wd*wh*ww, ...): tokens grouped by window, windows in raster order."""
    d, h, w = grid.shape[:3]
    wd, wh, ww = window
    rest = grid.shape[3:]
    g = grid.reshape(d // wd, wd, h // wh, wh, w // ww, ww, *rest)
    g = g.transpose(0, 2, 4, 1, 3, 5, *range(6, 6 + len(rest)))
    return g.reshape((d // wd) * (h // wh) * (w // ww), wd * wh * ww, *rest)


def shift_regions(size: tuple[int, int, int], window: tuple[int, int, int], shift: tuple[int, int, int]) -> np.ndarray:
    """(num_windows, N) region label of each token of a shifted block; attention across regions is masked
    with -100. Regions are labelled as the reference does: for each axis the slices [:-w], [-w:-s], [-s:],
    later labels overwriting earlier ones (so a zero shift makes the whole axis one region)."""
    label = np.zeros(size, np.float32)
    cnt = 0
    def slices(w, s):
        return (slice(None, -w), slice(-w, -s if s else 0), slice(-s if s else 0, None))
    for sd in slices(window[0], shift[0]):
        for sh in slices(window[1], shift[1]):
            for sw in slices(window[2], shift[2]):
                label[sd, sh, sw] = cnt
                cnt += 1
    return window_tokens(label, window)


def shift_mask(size: tuple[int, int, int], window: tuple[int, int, int], shift: tuple[int, int, int]) -> np.ndarray:
    """(num_windows, N, N) additive mask of a shifted block: 0 within a region, -100 across regions."""
    win = shift_regions(size, window, shift)
    diff = win[:, None, :] - win[:, :, None]
    return np.where(diff != 0, np.float32(-100.0), np.float32(0.0)).astype(np.float32)


def fragment_cells(size: tuple[int, int, int], window: tuple[int, int, int], shift: tuple[int, int, int],
                   fragments: tuple[int, int, int]) -> np.ndarray:
    """(num_windows, N, 3) fragment cell of each token after the cyclic shift: the (fd, fh, fw) grid
    resized to the map by nearest-neighbour interpolation (torch's `nearest`: floor(i * in / out))."""
    axes = []
    for n_in, n_out in zip(fragments, size):
        scale = np.float32(n_in / n_out)
        axes.append(np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64), n_in - 1))
    cells = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    cells = np.roll(cells, shift=(-shift[0], -shift[1], -shift[2]), axis=(0, 1, 2))
    return window_tokens(cells, window)


@dataclass(frozen=True)
class SwinConfig:
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    patch_size: tuple[int, int, int] = (2, 4, 4)
    window_size: tuple[int, int, int] = (8, 7, 7)
    mlp_ratio: float = 4.0
    frag_biases: tuple[bool, ...] = (True, True, True, False)
    clip: tuple[int, int, int] = (32, 224, 224)  # frames, height, width of one clip
    layer_norm_eps: float = 1e-5

    @classmethod
    def from_state_dict(cls, sd: dict, prefix: str = "fragments_backbone.", **kw) -> "SwinConfig":
        """Sizes read from the weights (embedding, depths, heads, which stages carry fragment biases)."""
        w = sd[prefix + "patch_embed.proj.weight"]
        depths, heads, frag = [], [], []
        li = 0
        while any(k.startswith(f"{prefix}layers.{li}.") for k in sd):
            b = 0
            while f"{prefix}layers.{li}.blocks.{b}.norm1.weight" in sd:
                b += 1
            depths.append(b)
            heads.append(int(sd[f"{prefix}layers.{li}.blocks.0.attn.relative_position_bias_table"].shape[1]))
            frag.append(f"{prefix}layers.{li}.blocks.0.attn.fragment_position_bias_table" in sd)
            li += 1
        table = int(sd[f"{prefix}layers.0.blocks.0.attn.relative_position_bias_table"].shape[0])
        window = kw.pop("window_size", cls.window_size)
        if table != (2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1):
            raise ValueError(f"relative position tables hold {table} rows, not those of window {window}")
        hidden = int(sd[f"{prefix}layers.0.blocks.0.mlp.fc1.weight"].shape[0])
        return cls(embed_dim=int(w.shape[0]), depths=tuple(depths), num_heads=tuple(heads),
                   patch_size=tuple(int(x) for x in w.shape[2:]), window_size=tuple(window),
                   mlp_ratio=hidden / int(w.shape[0]), frag_biases=tuple(frag), **kw)

    @property
    def num_features(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)


def _round_bf16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).to(x.dtype)


class _SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_hidden: int, frag_bias: bool, size, window, shift,
                 cfg: SwinConfig, bf16_attention: bool):
        super().__init__()
        self.dim, self.heads = dim, heads
        self.size, self.window, self.shift = size, window, shift
        self.scale = (dim // heads) ** -0.5
        self.bf16_attention = bf16_attention
        self.norm1 = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.fc1 = nn.Linear(dim, mlp_hidden)
        self.fc2 = nn.Linear(mlp_hidden, dim)
        full = cfg.window_size
        table = (2 * full[0] - 1) * (2 * full[1] - 1) * (2 * full[2] - 1)
        self.rel_table = nn.Parameter(torch.zeros(table, heads))
        self.frag_table = nn.Parameter(torch.zeros(table, heads)) if frag_bias else None
        # The reference indexes the full window's table with the sub-window's tokens.
        rpi = relative_position_index(full).reshape(*full, *full)
        wd, wh, ww = window
        self.register_buffer("rpi", torch.from_numpy(rpi[:wd, :wh, :ww, :wd, :wh, :ww].reshape(-1)), persistent=False)
        n = wd * wh * ww
        self.n = n
        # The reference's fragment grid for these biases is (1, window rows, window cols) of the block.
        cells = fragment_cells(size, window, shift, (1, wh, ww))  # (nW, N, 3)
        self.num_windows = cells.shape[0]
        # Fragment cells of the tokens; the gate (nW x N x N) is computed from them in the forward, so that
        # the exported graph holds nW x N x 3 numbers instead of nW x N x N.
        self.register_buffer("cells", torch.from_numpy(cells.astype(np.float32)) if frag_bias else None,
                             persistent=False)
        # Region labels (nW x N) rather than the mask itself (nW x N x N): the graph stays small.
        self.register_buffer("regions", torch.from_numpy(shift_regions(size, window, shift))
                             if any(shift) else None, persistent=False)

    def _bias(self) -> torch.Tensor:
        """Relative (and fragment) position bias, plus the shift mask: (1 or nW, H, N, N). Computed in the
        graph when exporting; cached in eager inference (it depends on the weights only)."""
        if torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.is_grad_enabled():
            return self._compute_bias()
        key = (self.rel_table._version, self.rel_table.data_ptr(), self.rel_table.device, self.rel_table.dtype)
        if getattr(self, "_cache_key", None) != key:
            self._cache, self._cache_key = self._compute_bias(), key
        return self._cache

    def _compute_bias(self) -> torch.Tensor:
        bias = self._position_bias()
        if self.regions is None:
            return bias
        mask = (self.regions[:, None, :] != self.regions[:, :, None]).to(bias.dtype) * -100.0  # (nW, N, N)
        return bias + mask[:, None]

    def _position_bias(self) -> torch.Tensor:
        rel = self.rel_table[self.rpi].reshape(self.n, self.n, self.heads).permute(2, 0, 1)  # (H, N, N)
        if self.frag_table is None:
            return rel[None]
        frag = self.frag_table[self.rpi].reshape(self.n, self.n, self.heads).permute(2, 0, 1)
        # The reference's gate: the L1 distance between the two tokens' fragment cells (0 inside one cell).
        gate = (self.cells[:, None, :, :] - self.cells[:, :, None, :]).abs().sum(-1)[:, None]  # (nW, 1, N, N)
        return rel[None] * gate + frag[None] * (1 - gate)  # (nW, H, N, N)

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        d, h, w = self.size
        wd, wh, ww = self.window
        c, heads = self.dim, self.heads
        if any(self.shift):
            x = torch.roll(x, shifts=tuple(-s for s in self.shift), dims=(1, 2, 3))
        # window partition: (B, D, H, W, C) -> (B * nW, N, C)
        x = x.reshape(b, d // wd, wd, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 5, 2, 4, 6, 7)
        x = x.reshape(b * self.num_windows, self.n, c)
        qkv = self.qkv(x).reshape(-1, self.n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        # The reference adds the position bias, then the shift mask; with the mask folded into the bias
        # first the sum can differ in the last bit where both are non-zero (-100 + b).
        attn = attn.reshape(b, self.num_windows, heads, self.n, self.n) + self._bias()[None]
        attn = torch.softmax(attn.reshape(-1, heads, self.n, self.n), dim=-1)
        if self.bf16_attention:
            x = _round_bf16(_round_bf16(attn) @ _round_bf16(v))
        else:
            x = attn @ v
        x = self.proj(x.transpose(1, 2).reshape(-1, self.n, c))
        # window reverse
        x = x.reshape(b, d // wd, h // wh, w // ww, wd, wh, ww, c).permute(0, 1, 4, 2, 5, 3, 6, 7)
        x = x.reshape(b, d, h, w, c)
        if any(self.shift):
            x = torch.roll(x, shifts=self.shift, dims=(1, 2, 3))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._attention(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class _PatchMerging(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class Swin3D(nn.Module):
    """[N, 3, T, H, W] normalised clips -> [N, num_features] (final norm, mean over T, H, W)."""

    def __init__(self, cfg: SwinConfig, bf16_attention: bool = True):
        super().__init__()
        self.cfg = cfg
        pt, ph, pw = cfg.patch_size
        t, h, w = cfg.clip
        if t % pt or h % ph or w % pw:
            raise ValueError(f"clip {cfg.clip} is not a multiple of the patch {cfg.patch_size}")
        self.patch = cfg.patch_size
        self.grid = (t // pt, h // ph, w // pw)
        e = cfg.embed_dim
        self.patch_weight = nn.Parameter(torch.zeros(e, 3, pt, ph, pw))
        self.patch_bias = nn.Parameter(torch.zeros(e))
        self.patch_norm = nn.LayerNorm(e, eps=cfg.layer_norm_eps)
        self.stages = nn.ModuleList()
        self.merges = nn.ModuleList()
        size = self.grid
        for i, (depth, heads) in enumerate(zip(cfg.depths, cfg.num_heads)):
            dim = e * 2 ** i
            shift_full = tuple(x // 2 for x in cfg.window_size)
            blocks = []
            for j in range(depth):
                window, shift = stage_window(size, cfg.window_size, (0, 0, 0) if j % 2 == 0 else shift_full)
                if any(a % b for a, b in zip(size, window)):
                    raise ValueError(f"stage {i}: map {size} is not a multiple of window {window} (padding is "
                                     "not implemented: LOVE's clips never need it)")
                blocks.append(_SwinBlock(dim, heads, int(dim * cfg.mlp_ratio), cfg.frag_biases[i], size, window,
                                         shift, cfg, bf16_attention))
            self.stages.append(nn.ModuleList(blocks))
            if i < len(cfg.depths) - 1:
                if size[1] % 2 or size[2] % 2:
                    raise ValueError(f"stage {i}: odd map {size} (padding is not implemented)")
                self.merges.append(_PatchMerging(dim, cfg.layer_norm_eps))
                size = (size[0], size[1] // 2, size[2] // 2)
        self.norm = nn.LayerNorm(cfg.num_features, eps=cfg.layer_norm_eps)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        n = clips.shape[0]
        pt, ph, pw = self.patch
        gt, gh, gw = self.grid
        # Patch embedding (a Conv3d whose stride is its kernel) as one MatMul: same maths, and
        # onnxruntime's CPU MatMul is much faster than its Conv3d.
        x = clips.reshape(n, 3, gt, pt, gh, ph, gw, pw).permute(0, 2, 4, 6, 1, 3, 5, 7)
        x = x.reshape(n, gt, gh, gw, -1) @ self.patch_weight.reshape(self.cfg.embed_dim, -1).t() + self.patch_bias
        x = self.patch_norm(x)
        for i, blocks in enumerate(self.stages):
            for blk in blocks:
                x = blk(x)
            if i < len(self.merges):
                x = self.merges[i](x)
        return self.norm(x).mean(dim=(1, 2, 3))

    def load_reference(self, sd: dict[str, torch.Tensor], prefix: str = "fragments_backbone.") -> None:
        """Load DOVER/LOVE weights (`fragments_backbone.*`, as in temporal.pth)."""
        own = {}
        p = prefix
        own["patch_weight"] = sd[p + "patch_embed.proj.weight"]
        own["patch_bias"] = sd[p + "patch_embed.proj.bias"]
        own["patch_norm.weight"], own["patch_norm.bias"] = sd[p + "patch_embed.norm.weight"], sd[p + "patch_embed.norm.bias"]
        for i, blocks in enumerate(self.stages):
            for j, blk in enumerate(blocks):
                k = f"{p}layers.{i}.blocks.{j}."
                o = f"stages.{i}.{j}."
                for a, b in (("norm1", "norm1"), ("norm2", "norm2"), ("attn.qkv", "qkv"), ("attn.proj", "proj"),
                             ("mlp.fc1", "fc1"), ("mlp.fc2", "fc2")):
                    own[o + b + ".weight"], own[o + b + ".bias"] = sd[k + a + ".weight"], sd[k + a + ".bias"]
                own[o + "rel_table"] = sd[k + "attn.relative_position_bias_table"]
                if blk.frag_table is not None:
                    own[o + "frag_table"] = sd[k + "attn.fragment_position_bias_table"]
            if i < len(self.merges):
                k = f"{p}layers.{i}.downsample."
                own[f"merges.{i}.norm.weight"], own[f"merges.{i}.norm.bias"] = sd[k + "norm.weight"], sd[k + "norm.bias"]
                own[f"merges.{i}.reduction.weight"] = sd[k + "reduction.weight"]
        own["norm.weight"], own["norm.bias"] = sd[p + "norm.weight"], sd[p + "norm.bias"]
        self.load_state_dict({k: v.float() for k, v in own.items()}, strict=True)


class FastMlp(nn.Module):
    """LOVE's `fast_mlp`: LayerNorm -> Linear -> GELU -> Linear (motion feature -> LLM embedding)."""

    def __init__(self, n_in: int, hidden: int, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(n_in, eps=eps)
        self.fc1 = nn.Linear(n_in, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))

    def load_reference(self, sd: dict[str, torch.Tensor], prefix: str = "fast_mlp.") -> None:
        self.load_state_dict({"norm.weight": sd[prefix + "0.weight"], "norm.bias": sd[prefix + "0.bias"],
                              "fc1.weight": sd[prefix + "1.weight"], "fc1.bias": sd[prefix + "1.bias"],
                              "fc2.weight": sd[prefix + "3.weight"], "fc2.bias": sd[prefix + "3.bias"]})


class MotionEncoder(nn.Module):
    """[B, clips, 3, T, H, W] -> [B, skills, clips, hidden]: one Swin3D pass, every skill's fast_mlp."""

    def __init__(self, swin: Swin3D, projectors: list[FastMlp]):
        super().__init__()
        self.swin = swin
        self.projectors = nn.ModuleList(projectors)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        b, c = clips.shape[:2]
        feats = self.swin(clips.reshape(b * c, *clips.shape[2:]))  # (B * clips, F)
        out = torch.stack([p(feats) for p in self.projectors], dim=0)  # (S, B * clips, H)
        return out.reshape(len(self.projectors), b, c, -1).transpose(0, 1)


# --------------------------------------------------------------------------- InternViT + projector


@dataclass(frozen=True)
class VisionConfig:
    hidden_size: int = 1024
    num_attention_heads: int = 16
    num_hidden_layers: int = 24
    intermediate_size: int = 4096
    patch_size: int = 14
    image_size: int = 448
    norm_type: str = "layer_norm"
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    hidden_act: str = "gelu"
    downsample_ratio: float = 0.5
    llm_hidden: int = 4096
    projector_eps: float = 1e-5

    @classmethod
    def from_internvl(cls, config: dict) -> "VisionConfig":
        """From an internvl_chat config.json (its vision_config and LLM width)."""
        v = config["vision_config"]
        if v.get("qk_normalization"):
            raise ValueError("InternViT with qk_normalization (InternViT-6B) is not supported; LOVE uses the 300M")
        if config.get("ps_version", "v1") != "v2":
            raise ValueError(f"ps_version {config.get('ps_version')!r}: only pixel shuffle v2 is supported")
        if config.get("select_layer", -1) != -1:
            raise ValueError("only select_layer -1 (the last ViT layer) is supported")
        if v.get("hidden_act", "gelu") != "gelu" or v.get("norm_type", "layer_norm") not in ("layer_norm", "rms_norm"):
            raise ValueError(f"unsupported InternViT act/norm {v.get('hidden_act')}/{v.get('norm_type')}")
        return cls(hidden_size=v["hidden_size"], num_attention_heads=v["num_attention_heads"],
                   num_hidden_layers=v["num_hidden_layers"], intermediate_size=v["intermediate_size"],
                   patch_size=v["patch_size"], image_size=config.get("force_image_size") or v["image_size"],
                   norm_type=v.get("norm_type", "layer_norm"), layer_norm_eps=v.get("layer_norm_eps", 1e-6),
                   qkv_bias=v.get("qkv_bias", True), downsample_ratio=config.get("downsample_ratio", 0.5),
                   llm_hidden=config["llm_config"]["hidden_size"])

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def tokens_per_image(self) -> int:
        return int(self.grid ** 2 * self.downsample_ratio ** 2)


class _RmsNorm(nn.Module):
    def __init__(self, n: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class _VitLayer(nn.Module):
    def __init__(self, c: VisionConfig):
        super().__init__()
        norm = (lambda: nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)) if c.norm_type == "layer_norm" else \
            (lambda: _RmsNorm(c.hidden_size, c.layer_norm_eps))
        self.heads = c.num_attention_heads
        self.scale = (c.hidden_size // c.num_attention_heads) ** -0.5
        self.norm1, self.norm2 = norm(), norm()
        self.qkv = nn.Linear(c.hidden_size, 3 * c.hidden_size, bias=c.qkv_bias)
        self.proj = nn.Linear(c.hidden_size, c.hidden_size)
        self.fc1 = nn.Linear(c.hidden_size, c.intermediate_size)
        self.fc2 = nn.Linear(c.intermediate_size, c.hidden_size)
        self.ls1 = nn.Parameter(torch.ones(c.hidden_size))
        self.ls2 = nn.Parameter(torch.ones(c.hidden_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(b, n, c)) * self.ls1
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x)))) * self.ls2


class InternVisionEncoder(nn.Module):
    """[B, F, 3, S, S] normalised frames -> [B, F * tokens_per_image, llm_hidden] (mlp1 output)."""

    def __init__(self, c: VisionConfig):
        super().__init__()
        self.c = c
        p, h = c.patch_size, c.hidden_size
        self.patch_weight = nn.Parameter(torch.zeros(h, 3, p, p))
        self.patch_bias = nn.Parameter(torch.zeros(h))
        self.cls = nn.Parameter(torch.zeros(1, 1, h))
        self.pos = nn.Parameter(torch.zeros(1, 1 + c.grid ** 2, h))
        self.layers = nn.ModuleList(_VitLayer(c) for _ in range(c.num_hidden_layers))
        scale = int(round(1 / c.downsample_ratio))
        n_in = h * scale * scale
        self.proj_norm = nn.LayerNorm(n_in, eps=c.projector_eps)
        self.proj_fc1 = nn.Linear(n_in, c.llm_hidden)
        self.proj_fc2 = nn.Linear(c.llm_hidden, c.llm_hidden)

    def _pixel_shuffle(self, x: torch.Tensor) -> torch.Tensor:
        """InternVL's pixel shuffle v2 on (N, W, H, C) with ratio r: (N, W*r, H*r, C/r^2)."""
        n, w, h, c = x.shape
        r = self.c.downsample_ratio
        x = x.reshape(n, w, int(h * r), int(c / r)).permute(0, 2, 1, 3)
        x = x.reshape(n, int(h * r), int(w * r), int(c / (r * r)))
        return x.permute(0, 2, 1, 3)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, f = frames.shape[:2]
        c = self.c
        g, p = c.grid, c.patch_size
        x = frames.reshape(b * f, 3, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b * f, g * g, 3 * p * p)
        x = x @ self.patch_weight.reshape(c.hidden_size, -1).t() + self.patch_bias
        x = torch.cat([self.cls.expand(b * f, 1, c.hidden_size), x], dim=1) + self.pos
        for layer in self.layers:
            x = layer(x)
        x = x[:, 1:].reshape(b * f, g, g, c.hidden_size)
        x = self._pixel_shuffle(x)
        x = x.reshape(b * f, -1, x.shape[-1])
        x = self.proj_fc2(F.gelu(self.proj_fc1(self.proj_norm(x))))
        return x.reshape(b, -1, c.llm_hidden)


def vision_state_dict(merged: dict[str, torch.Tensor], c: VisionConfig) -> dict[str, torch.Tensor]:
    """InternVisionEncoder's parameters from merged InternViT weights (`embeddings.*`, `encoder.layers.*`,
    PEFT prefix and LoRA already removed) and `mlp1.*`. The position embedding is resized to the frame grid
    the way the reference does on every forward (bicubic, align_corners=False; identity at the same size)."""
    out = {"patch_weight": merged["embeddings.patch_embedding.weight"],
           "patch_bias": merged["embeddings.patch_embedding.bias"],
           "cls": merged["embeddings.class_embedding"]}
    pos = merged["embeddings.position_embedding"].float()
    n = pos.shape[1] - 1
    side = int(math.isqrt(n))
    if side * side != n:
        raise ValueError(f"position embedding of {n} patches is not a square grid")
    patch = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    patch = F.interpolate(patch, size=(c.grid, c.grid), mode="bicubic", align_corners=False)
    out["pos"] = torch.cat([pos[:, :1], patch.reshape(1, -1, c.grid * c.grid).permute(0, 2, 1)], dim=1)
    for i in range(c.num_hidden_layers):
        k = f"encoder.layers.{i}."
        o = f"layers.{i}."
        for a, b_ in (("norm1", "norm1"), ("norm2", "norm2")):
            out[o + b_ + ".weight"] = merged[k + a + ".weight"]
            if c.norm_type == "layer_norm":
                out[o + b_ + ".bias"] = merged[k + a + ".bias"]
        for a, b_ in (("attn.qkv", "qkv"), ("attn.proj", "proj"), ("mlp.fc1", "fc1"), ("mlp.fc2", "fc2")):
            out[o + b_ + ".weight"] = merged[k + a + ".weight"]
            if k + a + ".bias" in merged:
                out[o + b_ + ".bias"] = merged[k + a + ".bias"]
        out[o + "ls1"], out[o + "ls2"] = merged[k + "ls1"], merged[k + "ls2"]
    out.update({"proj_norm.weight": merged["mlp1.0.weight"], "proj_norm.bias": merged["mlp1.0.bias"],
                "proj_fc1.weight": merged["mlp1.1.weight"], "proj_fc1.bias": merged["mlp1.1.bias"],
                "proj_fc2.weight": merged["mlp1.3.weight"], "proj_fc2.bias": merged["mlp1.3.bias"]})
    return {k: v.float() for k, v in out.items()}
