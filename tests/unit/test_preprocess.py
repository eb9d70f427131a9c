"""NumPy preprocess equals the Hugging Face Qwen2-VL processors' layout and values."""

from __future__ import annotations

import time

import numpy as np
import pytest

from vidjudge.server.preprocess import PatchSpec, grid_for, preprocess
from vidjudge.server.seam_shim import VIEW, FrameSpec
from vidjudge.server.types import DecodedVideo, FrameView, VideoInfo

SPEC = PatchSpec()


def _video(frames: np.ndarray, duration_s: float = 2.0) -> DecodedVideo:
    t, h, w, _ = frames.shape
    return DecodedVideo(views={VIEW: FrameView(frames, np.linspace(0, duration_s, t, endpoint=False))},
                        info=VideoInfo(width=w, height=h, duration_s=duration_s, avg_fps=24.0, codec="h264"))


def _frames(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


def _hf_image_processor():
    # transformers 5.19: `Qwen2VLImageProcessor` needs torchvision and falls back to this PIL/NumPy
    # backend without it (with a warning); import the backend directly.
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(patch_size=14, temporal_patch_size=2, merge_size=2)


@pytest.mark.parametrize("hw", [(56, 56), (112, 112), (112, 168), (224, 84)])
def test_single_image_bit_exact_vs_hf(hw):
    img = _frames(1, *hw, seed=hw[0] + hw[1])[0]
    ref = _hf_image_processor()(images=[img], do_resize=False, return_tensors="np")
    # The image processor repeats an image over temporal_patch_size: two identical frames.
    out = preprocess(_video(np.stack([img, img])), SPEC)
    assert out.pixel_values.dtype == np.float32
    assert out.grid_thw == tuple(int(v) for v in ref["image_grid_thw"][0])
    np.testing.assert_array_equal(out.pixel_values, ref["pixel_values"])


def _hf_video_patchify_reference(frames_chw: np.ndarray, p: int, tp: int, m: int) -> np.ndarray:
    """Direct transcription of `Qwen2VLVideoProcessor.patchify` (transformers 5.19,
    video_processing_qwen2_vl.py) for one video. The class itself cannot be imported here: its
    module imports torchvision, which is not installed (no CPU build)."""
    num_frames, channel, h, w = frames_chw.shape
    grid_t, grid_h, grid_w = num_frames // tp, h // p, w // p
    patches = frames_chw.reshape(1, grid_t, tp, channel, grid_h // m, m, p, grid_w // m, m, p)
    patches = patches.transpose(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)  # torch permute(0,1,4,7,5,8,3,2,6,9)
    return patches.reshape(grid_t * grid_h * grid_w, channel * tp * p * p)


@pytest.mark.parametrize("shape", [(8, 112, 112), (4, 56, 168), (6, 84, 56)])
def test_video_layout_vs_hf_video_processor_code(shape):
    frames = _frames(*shape, seed=sum(shape))
    out = preprocess(_video(frames), SPEC)
    # Normalise each frame with the HF image processor's own rescale/normalise (NumPy backend) ...
    proc = _hf_image_processor()
    norm = np.stack([proc.normalize(proc.rescale(f.transpose(2, 0, 1), 1 / 255), SPEC.mean, SPEC.std)
                     for f in frames]).astype(np.float32)
    # ... then patchify with the video processor's reshape/permute.
    ref = _hf_video_patchify_reference(norm, 14, 2, 2)
    np.testing.assert_array_equal(out.pixel_values, ref)
    assert out.grid_thw == (shape[0] // 2, shape[1] // 14, shape[2] // 14)


def test_temporal_order_against_per_frame_images():
    """Temporal group g holds frames 2g and 2g+1, in that order, each laid out like the image processor."""
    frames = _frames(6, 56, 84, seed=7)
    out = preprocess(_video(frames), SPEC).pixel_values
    n_per_group = (56 // 14) * (84 // 14)
    vid = out.reshape(3, n_per_group, 3, 2, 14, 14)
    proc = _hf_image_processor()
    for f in range(6):
        img = proc(images=[frames[f]], do_resize=False, return_tensors="np")["pixel_values"]
        img = img.reshape(n_per_group, 3, 2, 14, 14)[:, :, 0]
        np.testing.assert_array_equal(vid[f // 2, :, :, f % 2], img)


def test_second_per_grid_t():
    frames = _frames(8, 56, 56)
    assert preprocess(_video(frames, duration_s=4.0), SPEC).second_per_grid_t == pytest.approx(1.0)
    assert preprocess(_video(frames, duration_s=2.0), SPEC).second_per_grid_t == pytest.approx(0.5)
    assert preprocess(_video(frames, duration_s=0.0), SPEC).second_per_grid_t == pytest.approx(1.0)  # 2 fps
    assert preprocess(_video(frames, duration_s=-1.0), SPEC).second_per_grid_t == pytest.approx(1.0)


def test_grid_for():
    assert grid_for(FrameSpec(num_frames=8, height=112, width=112), SPEC) == (4, 8, 8)
    assert grid_for(FrameSpec(num_frames=2, height=224, width=448), SPEC) == (1, 16, 32)
    with pytest.raises(ValueError):
        grid_for(FrameSpec(num_frames=8, height=100, width=112), SPEC)
    with pytest.raises(ValueError):
        grid_for(FrameSpec(num_frames=7, height=112, width=112), SPEC)


@pytest.mark.parametrize("frames, match", [
    (np.zeros((8, 100, 112, 3), np.uint8), "multiple"),
    (np.zeros((8, 112, 14, 3), np.uint8), "multiple"),
    (np.zeros((7, 112, 112, 3), np.uint8), "temporal_patch_size"),
    (np.zeros((0, 112, 112, 3), np.uint8), "temporal_patch_size"),
    (np.zeros((8, 112, 112, 3), np.float32), "uint8"),
    (np.zeros((8, 112, 112, 4), np.uint8), "channels"),
])
def test_rejects_bad_frames(frames, match):
    with pytest.raises(ValueError, match=match):
        preprocess(_video(frames), SPEC)


def test_other_patch_spec():
    spec = PatchSpec(patch_size=16, temporal_patch_size=2, merge_size=2, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    frames = _frames(4, 64, 96)
    out = preprocess(_video(frames), spec)
    assert out.grid_thw == (2, 4, 6) and out.pixel_values.shape == (48, 3 * 2 * 16 * 16)
    norm = ((frames.astype(np.float32) / 255 - 0.5) / 0.5).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(out.pixel_values, _hf_video_patchify_reference(norm, 16, 2, 2), atol=1e-6)


def test_fast_enough():
    frames = _frames(8, 448, 448)
    preprocess(_video(frames), SPEC)
    t0 = time.perf_counter()
    out = preprocess(_video(frames), SPEC)
    elapsed = time.perf_counter() - t0
    assert out.pixel_values.shape == (4 * 32 * 32, 1176)
    assert elapsed < 0.5, elapsed  # ~20 ms here; generous for slow CI machines
