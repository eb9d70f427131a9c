"""Frame sampling rule: segment centres by time, nearest frame, repeats when short."""

from __future__ import annotations

import numpy as np
import pytest

from vidjudge.server.decode.sampling import (
    duration_from_frame_times,
    nearer_is_later,
    nearest_indices,
    sample_indices,
    segment_centres,
)


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
