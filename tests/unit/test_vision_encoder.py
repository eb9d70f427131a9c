"""Fixed-grid vision encoder: equals the HF Qwen2.5-VL tower, exports to ONNX with a dynamic batch,
and the encoder backends agree."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from vidjudge.export.vision import (
    FixedGridVisionEncoder,
    build_encoder,
    dense_mask,
    export_vision_onnx,
    full_cu_seqlens,
    load_hf_visual,
    vision_position_ids,
    window_index,
)
from vidjudge.server.encoder import create_encoder

TOL = 1e-5
TINY_GRID = (4, 8, 8)  # 8 frames of 112x112: one window per frame
WINDOWED_GRID = (1, 16, 16)  # 2 frames of 224x224: 4 equal windows per frame
RAGGED_GRID = (2, 12, 20)  # 4 frames of 168x280: windows of unequal size -> masked blocks
GRIDS = [TINY_GRID, WINDOWED_GRID, RAGGED_GRID]


def _pixels(batch: int, grid, seed: int) -> np.ndarray:
    """Normalised pixel values of random uint8 frames, one different video per batch row."""
    n = grid[0] * grid[1] * grid[2]
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=(batch, n, 3, 2 * 14 * 14), dtype=np.uint8).astype(np.float32) / 255
    mean = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)[:, None]
    std = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)[:, None]
    return ((raw - mean) / std).reshape(batch, n, -1).astype(np.float32)


@pytest.fixture(scope="module")
def hf_models(tiny_checkpoint):
    from transformers import Qwen2_5_VLForConditionalGeneration

    out = {}
    for impl in ("eager", "sdpa"):
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            tiny_checkpoint, dtype=torch.float32, attn_implementation=impl, local_files_only=True).eval()
        out[impl] = model.model.visual
    return out


@pytest.fixture(scope="module")
def visual(tiny_checkpoint):
    return load_hf_visual(tiny_checkpoint)


@pytest.mark.parametrize("grid", GRIDS + [(3, 6, 10), (1, 2, 2)])
def test_grid_constants_match_hf(grid, visual):
    from transformers.vision_utils import get_vision_cu_seqlens, get_vision_position_ids, get_vision_window_index

    g = torch.tensor([grid])
    np.testing.assert_array_equal(vision_position_ids(grid, 2), get_vision_position_ids(g, 2).numpy())
    idx, cu_win = window_index(grid, 2, 112, 14)
    hf_idx, hf_cu_win = get_vision_window_index(g, spatial_merge_size=2, window_size=112, patch_size=14)
    np.testing.assert_array_equal(idx, hf_idx.numpy())
    np.testing.assert_array_equal(cu_win, hf_cu_win.numpy())
    cu_full = get_vision_cu_seqlens(g).numpy()
    np.testing.assert_array_equal(full_cu_seqlens(grid), cu_full)

    enc = FixedGridVisionEncoder(visual, grid)
    n = enc.num_patches
    # The attention pattern each layer really computes is HF's block-diagonal cu_seqlens mask.
    for layer in range(len(enc.blocks)):
        cu = cu_full if layer in enc.fullatt else hf_cu_win.numpy()
        np.testing.assert_array_equal(enc.effective_mask(layer), dense_mask(cu, n))


def test_windowing_really_exercised(visual):
    enc = FixedGridVisionEncoder(visual, WINDOWED_GRID)
    assert len(enc.cu_window_seqlens) - 1 == 4 * WINDOWED_GRID[0]  # 4 windows per frame
    assert enc.window_layout.block == 64 and enc.full_layout.block == 256
    assert not np.array_equal(enc.window_index.numpy(), np.arange(enc.num_tokens))
    ragged = FixedGridVisionEncoder(visual, RAGGED_GRID)
    assert ragged.window_layout.mask is not None and ragged.full_layout.mask is None


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("grid", GRIDS)
def test_matches_hf_tower(grid, impl, hf_models, visual):
    hf = hf_models[impl]
    enc = FixedGridVisionEncoder(visual, grid).eval()
    n = enc.num_patches
    for batch, seed in ((1, 0), (3, 1)):
        x = torch.from_numpy(_pixels(batch, grid, seed))
        with torch.no_grad():
            out = enc(x)
            ref = hf(x.reshape(batch * n, -1), grid_thw=torch.tensor([grid] * batch))
        # transformers 5.19: BaseModelOutputWithPooling; pooler_output = merged tokens, all videos
        # concatenated, window order reversed; last_hidden_state = the blocks' output (patches).
        assert ref.pooler_output.shape == (batch * enc.num_tokens, 64)
        ref = ref.pooler_output.reshape(batch, enc.num_tokens, -1)
        assert out.shape == ref.shape == (batch, n // 4, 64)
        diff = (out - ref).abs().max().item()
        assert diff <= TOL, (grid, impl, batch, diff)
        if batch > 1:  # different videos give different embeddings
            assert (out[0] - out[1]).abs().max() > 1e-3


@pytest.mark.parametrize("grid", [TINY_GRID, RAGGED_GRID])
def test_patch_matmul_variant(grid, hf_models, visual):
    """The export variant computes the patch Conv3d as a MatMul: same result up to float32 rounding."""
    enc = FixedGridVisionEncoder(visual, grid, patch_matmul=True).eval()
    x = torch.from_numpy(_pixels(2, grid, seed=5))
    with torch.no_grad():
        out = enc(x)
        ref = hf_models["sdpa"](x.reshape(-1, x.shape[-1]), grid_thw=torch.tensor([grid] * 2)).pooler_output
    assert (out - ref.reshape(out.shape)).abs().max().item() <= TOL


def test_rejects_bad_grid(visual):
    with pytest.raises(ValueError):
        FixedGridVisionEncoder(visual, (1, 7, 8))


@pytest.fixture(scope="module")
def onnx_files(tiny_checkpoint, tmp_path_factory):
    import onnx

    out = {}
    root = tmp_path_factory.mktemp("onnx")
    for grid in (TINY_GRID, RAGGED_GRID):
        path = export_vision_onnx(tiny_checkpoint, grid, root / f"vision_{'x'.join(map(str, grid))}.onnx")
        onnx.checker.check_model(str(path))
        out[grid] = path
    return out


@pytest.mark.parametrize("grid", [TINY_GRID, RAGGED_GRID])
def test_onnx_matches_torch(grid, onnx_files, tiny_checkpoint):
    n = grid[0] * grid[1] * grid[2]
    ort_enc = create_encoder("onnxruntime", onnx_path=onnx_files[grid])
    torch_enc = create_encoder("torch", torch_module=lambda: build_encoder(tiny_checkpoint, grid),
                               input_shape=(n, 1176), output_shape=(n // 4, 64))
    assert ort_enc.input_shape == torch_enc.input_shape == (n, 1176)
    assert ort_enc.output_shape == torch_enc.output_shape == (n // 4, 64)
    assert ort_enc.name == "onnxruntime-cpu"
    for batch in (1, 4):  # the batch axis is really dynamic
        x = _pixels(batch, grid, seed=10 + batch)
        a, b = ort_enc.encode(x), torch_enc.encode(x)
        assert a.shape == b.shape == (batch, n // 4, 64) and a.dtype == np.float32
        assert np.abs(a - b).max() <= TOL
    ort_enc.close()
    torch_enc.close()


def test_encoder_batching_and_errors(onnx_files):
    enc = create_encoder("onnxruntime", onnx_path=onnx_files[TINY_GRID], threads=1, max_batch=2)
    x = _pixels(5, TINY_GRID, seed=3)
    whole = enc.encode(x)  # split into runs of 2, 2, 1
    assert whole.shape == (5, 64, 64)
    np.testing.assert_allclose(whole[4:], enc.encode(x[4:]), rtol=0, atol=1e-6)
    assert enc.encode(x[:0]).shape == (0, 64, 64)
    with pytest.raises(ValueError, match="shape"):
        enc.encode(x[0])
    with pytest.raises(ValueError, match="shape"):
        enc.encode(x[:, :10])
    enc.close()
    with pytest.raises(RuntimeError):
        enc.encode(x)
    with pytest.raises(ValueError, match="unknown encoder backend"):
        create_encoder("tensorflow")


def test_unavailable_provider_is_refused(onnx_files):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA provider present")
    with pytest.raises(ValueError, match="not available"):
        create_encoder("onnxruntime", onnx_path=onnx_files[TINY_GRID], providers=["cuda"])
