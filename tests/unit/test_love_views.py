"""LOVE's views against the reference's sampling and fragment code (tests/love_reference.py): the 8-frame
index rule, test-mode clip sampling, and the 7x7 fragments per frame (incl. upsampling below 224 px, whose
grid comes from the decoded size) equal the reference's whole-video computation bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import love_reference as R
from vidjudge.server.decode.fragments import ClipIndices, Fragments, clip_indices, fragment_offsets
from vidjudge.server.decode.sampling import uniform_indices
from vidjudge.server.types import StreamFacts


@pytest.mark.parametrize("n", [1, 2, 5, 8, 9, 31, 32, 33, 64, 100, 127, 128, 129, 300, 1001])
def test_frame_and_clip_indices_equal_the_reference(n):
    assert list(uniform_indices(n, 8)) == R.frame_indices(n)
    got = ClipIndices(4, 32).targets(StreamFacts(num_frames=n, duration_s=1.0, fps=n)).indices
    assert list(got) == R.clip_frame_indices(n).tolist()
    assert len(got) == 128 and all(0 <= i < n for i in got)


def test_clips_are_spread_over_long_videos_and_wrap_on_short_ones():
    long = np.array(clip_indices(300, 4, 32)).reshape(4, 32)
    assert list(long[:, 0]) == [33, 100, 168, 235]  # int(avg * k + avg / 2), avg = 269 / 4 = 67.25
    short = np.array(clip_indices(20, 4, 32)).reshape(4, 32)
    assert (short == np.arange(32) % 20).all()  # every clip starts at 0 and wraps


def _video(h: int, w: int, t: int = 128, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return [np.roll(base, k, axis=1) for k in range(t)]


@pytest.mark.parametrize("size,offsets", [
    ((120, 160), "middle"), ((100, 300), "middle"), ((223, 500), "middle"), ((240, 256), "middle"),
    ((300, 400), "middle"), ((360, 640), "middle"), ((32, 40), "middle"),
    ((120, 160), "seeded:7"), ((300, 400), "seeded:7"), ((360, 640), "seeded:7")])
def test_fragments_equal_the_reference_on_the_whole_video(size, offsets):
    h, w = size
    frames = _video(h, w, t=128)
    rnd_h, rnd_w = fragment_offsets(h, w, 7, 32, 4, offsets)
    ref = R.fragments_tensor(frames, rnd_h, rnd_w)  # (4, 3, 32, 224, 224), normalised
    f = Fragments(offsets=offsets)
    idx = R.clip_frame_indices(len(frames))
    ours = np.stack([f(frames[i], k) for k, i in enumerate(idx)])  # (128, 224, 224, 3) uint8
    mean, std = np.array([123.675, 116.28, 103.53], np.float32), np.array([58.395, 57.12, 57.375], np.float32)
    ours = ((ours.astype(np.float32) - mean) / std).reshape(4, 32, 224, 224, 3).transpose(0, 4, 1, 2, 3)
    np.testing.assert_array_equal(ours, ref.numpy())


def test_offset_rules():
    # 720p: cells of 102 x 182 px; the reference draws offsets in [0, 70) and [0, 150).
    rh, rw = fragment_offsets(720, 1280, 7, 32, 4, "middle")
    assert (rh == 34).all() and (rw == 74).all()
    sh, sw = fragment_offsets(720, 1280, 7, 32, 4, "seeded:1")
    assert sh.shape == (7, 7, 4) and 0 <= sh.min() and sh.max() < 70 and sw.max() < 150
    assert len(np.unique(sh)) > 10  # per cell and clip, like torch.randint
    np.testing.assert_array_equal(sh, fragment_offsets(720, 1280, 7, 32, 4, "seeded:1")[0])  # deterministic
    assert not np.array_equal(sh, fragment_offsets(720, 1280, 7, 32, 4, "seeded:2")[0])
    # Cells no larger than a crop: offset 0 (the reference's torch.zeros branch).
    assert (fragment_offsets(224, 224, 7, 32, 4, "seeded:1")[0] == 0).all()
    assert not Fragments().depends_on_k and Fragments(offsets="seeded:1").depends_on_k
    with pytest.raises(ValueError, match="offsets rule"):
        Fragments(offsets="random")


def test_fragments_refuse_frames_smaller_than_a_crop():
    from vidjudge.errors import InvalidVideo

    with pytest.raises(InvalidVideo, match="too small"):
        Fragments()(np.zeros((20, 300, 3), np.uint8), 0)
