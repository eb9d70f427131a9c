"""Frame sampling rules: segment centres by time, nearest frame, repeats when short; InternVL's frame numbers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from vidjudge.server.decode.sampling import (
    SegmentCentres,
    UniformIndices,
    duration_from_frame_times,
    nearer_is_later,
    nearest_indices,
    sample_indices,
    segment_centres,
    uniform_indices,
)
from vidjudge.server.decode.transforms import Native, Resize
from vidjudge.server.types import FrameSampler, FrameTransform, StreamFacts


def test_segment_centres_are_midpoints_of_equal_segments():
    np.testing.assert_allclose(segment_centres(8.0, 4), [1.0, 3.0, 5.0, 7.0])
    np.testing.assert_allclose(segment_centres(3.0, 1), [1.5])
    np.testing.assert_allclose(segment_centres(2.0, 4, start_s=10.0), [10.25, 10.75, 11.25, 11.75])
    assert segment_centres(0.0, 3).tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("bad", [(-1.0, 4), (float("nan"), 4), (1.0, 0)])
def test_segment_centres_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        segment_centres(*bad)


def test_nearest_picks_closest_and_ties_go_earlier():
    times = [0.0, 1.0, 2.0, 3.0]
    assert nearest_indices(times, [0.4, 0.6, 1.5, 2.5000000001, 9.0, -5.0]).tolist() == [0, 1, 1, 2, 3, 0]
    assert nearer_is_later(0.6, 0.0, 1.0)
    assert not nearer_is_later(0.5, 0.0, 1.0)


def test_n_evenly_spaced_frames_each_come_out_once():
    # 8 frames at 8 fps, 8 targets: every target sits exactly between two frames.
    times = np.arange(8) / 8.0
    assert sample_indices(times, 8).tolist() == list(range(8))
    # Same with timestamps that went through a rational time base (1/90000) and back.
    times = np.round(np.arange(8) * 90000 / 8) / 90000
    assert sample_indices(times, 8).tolist() == list(range(8))


def test_fewer_frames_than_asked_repeat_nearest():
    times = [0.0, 0.5, 1.0]  # 3 frames, 1.5 s
    idx = sample_indices(times, 8)
    assert len(idx) == 8
    # targets 0.094, 0.281, 0.469, 0.656, 0.844, 1.031, 1.219, 1.406 s
    assert idx.tolist() == [0, 1, 1, 1, 2, 2, 2, 2]
    assert sample_indices([0.0], 4).tolist() == [0, 0, 0, 0]


def test_variable_frame_rate_uses_time_not_index():
    # A burst of frames early, then a long gap: by index the middle targets would land
    # inside the burst; by time they land on the late frames.
    times = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 3.0, 4.0]
    idx = sample_indices(times, 4, duration_s=4.5)  # targets 0.5625, 1.6875, 2.8125, 3.9375
    assert idx.tolist() == [5, 5, 6, 7]
    by_index = (np.arange(4) + 0.5) * len(times) / 4
    assert idx.tolist() != np.floor(by_index).astype(int).tolist()


def test_duration_from_frame_times_adds_one_interval():
    assert duration_from_frame_times(np.arange(24) / 8.0) == pytest.approx(3.0)
    assert duration_from_frame_times([5.0]) == 0.0
    assert duration_from_frame_times([]) == 0.0


def test_nearest_rejects_empty_and_unsorted():
    with pytest.raises(ValueError):
        nearest_indices([], [0.0])
    with pytest.raises(ValueError):
        nearest_indices([1.0, 0.0], [0.0])


def internvl_get_index(bound, fps, max_frame, first_idx=0, num_segments=32):
    """InternVL's / LOVE's get_index, verbatim (the reference UniformIndices must equal)."""
    if bound:
        start, end = bound[0], bound[1]
    else:
        start, end = -100000, 100000
    start_idx = max(first_idx, round(start * fps))
    end_idx = min(round(end * fps), max_frame)
    seg_size = float(end_idx - start_idx) / num_segments
    frame_indices = np.array([
        int(start_idx + (seg_size / 2) + np.round(seg_size * idx))
        for idx in range(num_segments)
    ])
    return frame_indices


@pytest.mark.parametrize("n", [1, 2, 3, 4, 8, 16, 32])
def test_uniform_indices_equal_internvl_get_index(n):
    for total in [*range(1, 130), 241, 300, 1000, 1001, 4096, 12345]:
        want = internvl_get_index(None, 24.0, total - 1, first_idx=0, num_segments=n).tolist()
        got = UniformIndices(n).targets(StreamFacts(num_frames=total, duration_s=total / 24, fps=24.0))
        assert got.times_s is None and list(got.indices) == want, (total, n)


def test_uniform_indices_by_hand():
    # seg = 119/8 = 14.875: int(7.4375 + round(14.875 i)).
    assert uniform_indices(120, 8) == (7, 22, 37, 52, 67, 81, 96, 111)
    # seg = 2.5: round(2.5) is 2 (half to even, numpy's), so the second index is int(1.25 + 2) = 3.
    assert uniform_indices(6, 2) == (1, 3)
    assert uniform_indices(1, 4) == (0, 0, 0, 0)
    with pytest.raises(ValueError):
        UniformIndices(8).targets(StreamFacts(num_frames=0, duration_s=1.0, fps=0.0))
    with pytest.raises(ValueError):
        UniformIndices(0)


def test_segment_centres_sampler_targets_times_from_the_start():
    got = SegmentCentres(4).targets(StreamFacts(num_frames=0, duration_s=8.0, fps=0.0))
    assert got.indices is None
    np.testing.assert_allclose(got.times_s, [1.0, 3.0, 5.0, 7.0])
    assert SegmentCentres(2).targets(StreamFacts(num_frames=10, duration_s=float("nan"), fps=0.0)).times_s == (0.0, 0.0)
    with pytest.raises(ValueError):
        SegmentCentres(0)


@pytest.mark.parametrize("obj", [SegmentCentres(8), UniformIndices(32), Resize(448, 448), Native()])
def test_samplers_and_transforms_travel_to_workers(obj):
    again = pickle.loads(pickle.dumps(obj))
    assert again == obj and hash(again) == hash(obj)
    assert isinstance(obj, (FrameSampler, FrameTransform))


def test_resize_is_pil_bicubic_and_native_is_identity():
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    want = np.asarray(Image.fromarray(rgb).resize((20, 10), Image.BICUBIC))
    np.testing.assert_array_equal(Resize(10, 20)(rgb, 0), want)
    np.testing.assert_array_equal(Resize(30, 40)(rgb, 3), rgb)
    assert Native()(rgb, 5) is rgb
