"""Qwen2.5-VL's vision tower for one fixed frame grid, exportable to ONNX.

Every video of a bundle is resized to the same frame size and frame count, so
every video has the same patch grid (t, h, w). Everything the Hugging Face
tower computes from `grid_thw` with data-dependent shapes (rotary position ids,
the window permutation, `cu_seqlens` / `cu_window_seqlens`) is therefore a
constant: it is precomputed here once, in Python, and the forward pass is plain
tensor algebra with static shapes except for the batch dimension.

Attention: HF (transformers 5.19, non-flash path) splits the packed sequence at
`cu_seqlens` and attends within each piece. Here the pieces are contiguous
blocks of the window-permuted sequence, so attention is computed per block with
a reshape (full-attention layers: one block per temporal patch group; windowed
layers: one block per window when all windows have the same size, otherwise one
block per temporal group with an additive block-diagonal window mask). The
resulting attention pattern is exactly the block-diagonal mask given by HF's
`cu_seqlens` (checked by `effective_mask` in the tests), at a cost of
O(N * block) instead of O(N^2).

Output: the merger's tokens in HF's final order (window permutation reversed),
i.e. `model.model.visual(...).pooler_output` of transformers 5.19, with a batch
dimension: [B, t*h*w/merge^2, out_hidden_size].
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

VISUAL_PREFIXES = ("model.visual.", "visual.")  # transformers >= 4.52 layout, original Qwen layout


# --------------------------------------------------------------------------- grid constants


def vision_position_ids(grid_thw: tuple[int, int, int], merge: int) -> np.ndarray:
    """(t*h*w, 2) int64 (row, col) of each patch, patches in merge-block order, repeated over t."""
    t, h, w = grid_thw
    hpos, wpos = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    shape = (h // merge, merge, w // merge, merge)
    hpos = hpos.reshape(shape).transpose(0, 2, 1, 3).reshape(-1)
    wpos = wpos.reshape(shape).transpose(0, 2, 1, 3).reshape(-1)
    return np.tile(np.stack([hpos, wpos], axis=-1), (t, 1)).astype(np.int64)


def window_index(grid_thw: tuple[int, int, int], merge: int, window_size: int, patch_size: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """HF's window permutation of merged tokens and the window boundaries in patches.

    Returns (index: (t*h*w/merge^2,) int64, cu_window_seqlens: (num_windows+1,) int64); empty
    windows are dropped (HF pads a whole extra window row when the grid divides evenly and then
    removes the repeats with unique_consecutive).
    """
    t, h, w = grid_thw
    ws = window_size // merge // patch_size
    if ws < 1:
        raise ValueError(f"window_size {window_size} is smaller than one merged token")
    lh, lw = h // merge, w // merge
    unit = merge * merge
    index = np.arange(t * lh * lw).reshape(t, lh, lw)
    order: list[np.ndarray] = []
    cu = [0]
    for ti in range(t):
        for r in range(0, lh, ws):
            for c in range(0, lw, ws):
                win = index[ti, r:r + ws, c:c + ws].reshape(-1)
                order.append(win)
                cu.append(cu[-1] + win.size * unit)
    return np.concatenate(order).astype(np.int64), np.asarray(cu, dtype=np.int64)


def full_cu_seqlens(grid_thw: tuple[int, int, int]) -> np.ndarray:
    """HF's cu_seqlens for full-attention layers: one segment per temporal patch group."""
    t, h, w = grid_thw
    return np.arange(t + 1, dtype=np.int64) * (h * w)


@dataclass(frozen=True)
class BlockLayout:
    """Attention within contiguous blocks of `block` tokens, optionally with an additive mask
    (block x block) shared by all blocks."""

    block: int
    mask: np.ndarray | None  # bool (block, block): True where attention is allowed


def block_layout(cu_seqlens: np.ndarray, frame_len: int, n: int) -> BlockLayout:
    """Static layout equivalent to the block-diagonal mask of `cu_seqlens` over n tokens."""
    cu = np.asarray(cu_seqlens, dtype=np.int64)
    if cu[0] != 0 or cu[-1] != n or np.any(np.diff(cu) <= 0):
        raise ValueError(f"bad cu_seqlens {cu.tolist()} for {n} tokens")
    lengths = np.diff(cu)
    if np.all(lengths == lengths[0]):
        return BlockLayout(int(lengths[0]), None)
    # Unequal segments: they never cross a temporal group; mask within each group.
    if n % frame_len or not set(range(0, n + 1, frame_len)) <= set(cu.tolist()):
        raise ValueError("attention segments cross temporal groups")
    seg = np.repeat(np.arange(lengths.size), lengths)
    groups = seg.reshape(n // frame_len, frame_len)
    rel = groups - groups[:, :1]
    if np.any(rel != rel[0]):
        raise ValueError("window layout differs between temporal groups")
    pattern = rel[0]
    return BlockLayout(frame_len, pattern[:, None] == pattern[None, :])


def dense_mask(cu_seqlens: np.ndarray, n: int) -> np.ndarray:
    """(n, n) bool block-diagonal mask of cu_seqlens (for tests and debugging)."""
    seg = np.repeat(np.arange(len(cu_seqlens) - 1), np.diff(np.asarray(cu_seqlens)))
    if seg.size != n:
        raise ValueError("cu_seqlens does not cover n tokens")
    return seg[:, None] == seg[None, :]


# --------------------------------------------------------------------------- the module


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    var = x.pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(var + eps))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class FixedGridVisionEncoder(nn.Module):
    """Qwen2.5-VL vision tower for one grid; forward: [B, N, C*T*P*P] -> [B, N/merge^2, out_hidden].

    `visual` is the HF tower (`model.model.visual`); its parameters are shared, not copied.
    """

    def __init__(self, visual: nn.Module, grid_thw: tuple[int, int, int], patch_matmul: bool = False) -> None:
        super().__init__()
        # patch_matmul: compute the patch embedding (a Conv3d whose stride equals its kernel) as one
        # MatMul. Same maths, different float32 summation order than HF's Conv3d; used for export
        # because onnxruntime's CPU Conv3d is ~10x slower than its MatMul here.
        self.patch_matmul = bool(patch_matmul)
        cfg = visual.config
        t, h, w = (int(v) for v in grid_thw)
        merge = int(cfg.spatial_merge_size)
        if t < 1 or h % merge or w % merge or h < merge or w < merge:
            raise ValueError(f"grid {grid_thw}: h and w must be positive multiples of spatial_merge_size {merge}")
        self.grid_thw = (t, h, w)
        self.merge = merge
        self.unit = merge * merge
        self.num_patches = t * h * w
        self.num_tokens = self.num_patches // self.unit
        self.hidden = int(cfg.hidden_size)
        self.num_heads = int(cfg.num_heads)
        self.head_dim = self.hidden // self.num_heads
        self.out_hidden = int(cfg.out_hidden_size)
        self.in_dim = int(cfg.in_channels) * int(cfg.temporal_patch_size) * int(cfg.patch_size) ** 2
        self.fullatt = frozenset(int(i) for i in cfg.fullatt_block_indexes)
        self.scaling = self.head_dim ** -0.5

        self.patch_embed = visual.patch_embed
        self.blocks = visual.blocks
        self.merger = visual.merger

        # Window permutation (of merged tokens) and its inverse.
        win_idx, cu_window = window_index(self.grid_thw, merge, int(cfg.window_size), int(cfg.patch_size))
        self.cu_window_seqlens = cu_window
        self.cu_seqlens = full_cu_seqlens(self.grid_thw)
        self.register_buffer("window_index", torch.from_numpy(win_idx), persistent=False)
        self.register_buffer("reverse_index", torch.from_numpy(np.argsort(win_idx)), persistent=False)

        # Rotary cos/sin from HF's own rotary module, then window-permuted like HF does.
        pos = torch.from_numpy(vision_position_ids(self.grid_thw, merge))
        with torch.no_grad():
            cos, sin = visual.rotary_pos_emb(torch.zeros(1), pos)
        self.register_buffer("cos", self._permute(cos.float().unsqueeze(0))[0].contiguous(), persistent=False)
        self.register_buffer("sin", self._permute(sin.float().unsqueeze(0))[0].contiguous(), persistent=False)

        frame_len = h * w
        self.full_layout = block_layout(self.cu_seqlens, frame_len, self.num_patches)
        self.window_layout = block_layout(cu_window, frame_len, self.num_patches)
        for name, layout in (("full_mask", self.full_layout), ("window_mask", self.window_layout)):
            mask = None
            if layout.mask is not None:
                mask = torch.zeros(layout.mask.shape, dtype=torch.float32)
                mask[~torch.from_numpy(layout.mask)] = torch.finfo(torch.float32).min
            self.register_buffer(name, mask, persistent=False)

    # -- helpers ---------------------------------------------------------------------------

    def _permute(self, x: torch.Tensor) -> torch.Tensor:
        """Reorder patches [B, N, D] by the window permutation (merge units move together)."""
        d = x.shape[-1]
        x = x.reshape(-1, self.num_tokens, self.unit, d).index_select(1, self.window_index)
        return x.reshape(-1, self.num_patches, d)

    def layout_for(self, layer: int) -> BlockLayout:
        return self.full_layout if layer in self.fullatt else self.window_layout

    def effective_mask(self, layer: int) -> np.ndarray:
        """(N, N) bool attention pattern layer `layer` really uses, in window-permuted order."""
        layout = self.layout_for(layer)
        nb = self.num_patches // layout.block
        inner = np.ones((layout.block, layout.block), bool) if layout.mask is None else layout.mask
        return np.kron(np.eye(nb, dtype=bool), inner).astype(bool)

    def _attention(self, attn: nn.Module, x: torch.Tensor, layer: int) -> torch.Tensor:
        n, nh, hd = self.num_patches, self.num_heads, self.head_dim
        qkv = attn.qkv(x).reshape(-1, n, 3, nh, hd).permute(2, 0, 3, 1, 4)  # 3, B, H, N, hd
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * self.cos + _rotate_half(q) * self.sin
        k = k * self.cos + _rotate_half(k) * self.sin
        layout = self.layout_for(layer)
        nb, bl = n // layout.block, layout.block
        q = q.reshape(-1, nh, nb, bl, hd)
        k = k.reshape(-1, nh, nb, bl, hd)
        v = v.reshape(-1, nh, nb, bl, hd)
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scaling
        mask = self.full_mask if layer in self.fullatt else self.window_mask
        if mask is not None:
            scores = scores + mask
        probs = torch.softmax(scores, dim=-1)
        out = torch.matmul(probs, v)  # B, H, nb, bl, hd
        out = out.reshape(-1, nh, n, hd).transpose(1, 2).reshape(-1, n, nh * hd)
        return attn.proj(out)

    # -- forward ---------------------------------------------------------------------------

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pe = self.patch_embed
        weight = pe.proj.weight
        if self.patch_matmul:
            x = torch.matmul(pixel_values.to(weight.dtype), weight.reshape(self.hidden, -1).t())
        else:  # exactly HF's Conv3d
            x = pixel_values.reshape(-1, pe.in_channels, pe.temporal_patch_size, pe.patch_size, pe.patch_size)
            x = pe.proj(x.to(weight.dtype)).reshape(-1, self.num_patches, self.hidden)
        x = self._permute(x)
        for i, blk in enumerate(self.blocks):
            x = x + self._attention(blk.attn, _rms_norm(x, blk.norm1.weight, blk.norm1.variance_epsilon), i)
            x = x + blk.mlp(_rms_norm(x, blk.norm2.weight, blk.norm2.variance_epsilon))
        ln = self.merger.ln_q
        x = _rms_norm(x, ln.weight, ln.variance_epsilon)
        x = self.merger.mlp(x.reshape(-1, self.num_tokens, self.unit * self.hidden))
        return x.index_select(1, self.reverse_index)


# --------------------------------------------------------------------------- loading / export


def _visual_weight_files(checkpoint_dir: Path) -> list[Path]:
    index = checkpoint_dir / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [checkpoint_dir / n for n in names]
    files = sorted(checkpoint_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{checkpoint_dir}: no *.safetensors weights")
    return files


def load_hf_visual(checkpoint_dir: Path | str) -> nn.Module:
    """The HF Qwen2.5-VL vision tower of a checkpoint, float32, eval mode.

    Reads only the vision weights (`model.visual.*` or `visual.*`) from the safetensors files,
    so a 7B checkpoint does not have to be loaded whole.
    """
    from safetensors import safe_open
    from transformers import AutoConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    checkpoint_dir = Path(checkpoint_dir)
    if not (checkpoint_dir / "config.json").is_file():  # never fall through to a hub lookup
        raise FileNotFoundError(f"{checkpoint_dir}: not a Hugging Face checkpoint directory (no config.json)")
    config = AutoConfig.from_pretrained(checkpoint_dir, local_files_only=True)
    if getattr(config, "model_type", None) != "qwen2_5_vl":
        raise ValueError(f"{checkpoint_dir}: model_type {getattr(config, 'model_type', None)!r}, "
                         "expected 'qwen2_5_vl'")
    vcfg = config.vision_config
    vcfg._attn_implementation = "eager"
    with torch.device("meta"):
        visual = Qwen2_5_VisionTransformerPretrainedModel._from_config(vcfg, dtype=torch.float32)
    wanted = set(visual.state_dict().keys())
    state: dict[str, torch.Tensor] = {}
    for path in _visual_weight_files(checkpoint_dir):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                for prefix in VISUAL_PREFIXES:
                    if key.startswith(prefix) and key[len(prefix):] in wanted:
                        state[key[len(prefix):]] = f.get_tensor(key).to(torch.float32)
                        break
    missing = wanted - set(state)
    if missing:
        raise ValueError(f"{checkpoint_dir}: vision weights missing: {sorted(missing)[:5]}...")
    visual.load_state_dict(state, strict=True, assign=True)
    # Non-persistent buffers (rotary inv_freq) are not in the checkpoint: rebuild them on CPU.
    rot = visual.rotary_pos_emb
    inv_freq, _ = rot.compute_axial_rope_parameters(vcfg)
    rot.inv_freq = inv_freq.to(torch.float32)
    rot.original_inv_freq = inv_freq.clone().to(torch.float32)
    return visual.eval()


def build_encoder(checkpoint_dir: Path | str, grid_thw: tuple[int, int, int],
                  patch_matmul: bool = False) -> FixedGridVisionEncoder:
    return FixedGridVisionEncoder(load_hf_visual(checkpoint_dir), tuple(grid_thw), patch_matmul=patch_matmul).eval()


def export_vision_onnx(checkpoint_dir: Path | str, grid_thw: tuple[int, int, int], out_path: Path | str,
                       opset: int = 18) -> Path:
    """Export the fixed-grid encoder to ONNX with a dynamic batch axis.

    Input `pixel_values` [batch, N, C*T*P*P] float32, output `embeds` [batch, N/merge^2, out_hidden].
    Uses the dynamo exporter (torch.export + onnxscript), then runs onnx.checker.
    """
    enc = build_encoder(checkpoint_dir, grid_thw, patch_matmul=True)
    example = torch.zeros(2, enc.num_patches, enc.in_dim, dtype=torch.float32)  # batch 2: avoid 0/1 specialisation
    return export_module_onnx(enc, example, out_path, opset=opset)


def export_module_onnx(module: nn.Module, example: torch.Tensor, out_path: Path | str, opset: int = 18) -> Path:
    """Export `module` ([batch, ...] float32 `pixel_values` -> `embeds`) to ONNX with a dynamic batch axis
    (dynamo exporter: torch.export + onnxscript), then run onnx.checker. `example` should have batch 2
    (batch 1 would be specialised). Weights go to an external data file past 1 GiB."""
    import onnx

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=4096)
    params_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.export internals (pytree LeafSpec)
        program = torch.onnx.export(
            module, (example,), dynamo=True, opset_version=opset,
            input_names=["pixel_values"], output_names=["embeds"],
            dynamic_shapes=({0: batch},),
            optimize=True, verbose=False,
        )
    program.save(str(out_path), external_data=params_bytes > (1 << 30))
    onnx.checker.check_model(str(out_path))
    return out_path


def main(argv: list[str] | None = None) -> None:
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 5:
        raise SystemExit("usage: python -m vidjudge.export.vision CHECKPOINT T H W OUT.onnx")
    t0 = time.perf_counter()
    out = export_vision_onnx(Path(args[0]), (int(args[1]), int(args[2]), int(args[3])), Path(args[4]))
    print(f"{out} ({time.perf_counter() - t0:.1f}s)")


if __name__ == "__main__":
    main()
