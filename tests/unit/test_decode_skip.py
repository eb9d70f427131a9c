"""Skipping non-reference frames nobody wants (FFmpeg's skip_frame=NONREF, set per packet)
changes the cost, never a byte of the output.

Every file here has frames that are references and frames that are not: x264 with
b-pyramid (B-frames that other B-frames refer to), x265 with B-frames, VP9 with
alt-ref frames (its decoder ignores NONREF: the check is that nothing breaks).
"""

from __future__ import annotations

import numpy as np
import pytest

from vidjudge.export.samples import write_video
from vidjudge.server.decode import Native, Resize, SegmentCentres, UniformIndices, decode_video
from vidjudge.server.decode import pyav_decoder
from vidjudge.server.types import DecodeLimits, DecodeRequest, VideoSource, ViewSpec

LIMITS = DecodeLimits()

CLIPS = {
    "x264-bpyramid-mp4": dict(codec="libx264", suffix=".mp4",
                              options={"preset": "medium", "x264-params": "b-pyramid=normal:bframes=3:keyint=48"}),
    "x264-bpyramid-mkv": dict(codec="libx264", suffix=".mkv", options={"preset": "slow"}),
    "hevc-bframes-mp4": dict(codec="libx265", suffix=".mp4",
                             options={"preset": "medium", "x265-params": "log-level=error:bframes=4:keyint=48"}),
    "hevc-mkv": dict(codec="libx265", suffix=".mkv", options={"preset": "fast", "x265-params": "log-level=error"}),
    "vp9-altref-webm": dict(codec="libvpx-vp9", suffix=".webm",
                            options={"deadline": "good", "cpu-used": "4", "auto-alt-ref": "1", "lag-in-frames": "16"}),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("skip")
    out = {}
    for name, kw in CLIPS.items():
        kw = dict(kw)
        out[name] = write_video(d / f"{name}{kw.pop('suffix')}", width=128, height=72, num_frames=96, fps=24,
                                pattern="checker", **kw)
    return out


REQUEST = DecodeRequest(views=(
    ViewSpec("centres", SegmentCentres(8), Native()),
    ViewSpec("numbers", UniformIndices(12), Resize(36, 64)),
))


@pytest.fixture(autouse=True)
def no_recovery(caplog):
    caplog.set_level("INFO", logger="vidjudge.server.decode")
    yield
    assert not [r for r in caplog.get_records("call") if "did not decode" in r.getMessage()]


def _decode(path, **kw):
    return decode_video(VideoSource(path=path), REQUEST, LIMITS, "none", **kw)


def _same(a, b) -> None:
    for name in a.views:
        np.testing.assert_array_equal(a.views[name].frames, b.views[name].frames)
        np.testing.assert_array_equal(a.views[name].timestamps_s, b.views[name].timestamps_s)
        np.testing.assert_array_equal(a.views[name].indices, b.views[name].indices)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", list(CLIPS))
def test_skipping_gives_the_same_frames(clips, name, threads):
    skipped = _decode(clips[name], threads=threads)
    full = _decode(clips[name], threads=threads, skip_nonref=False)
    reference = _decode(clips[name], threads=threads, skip_nonref=False, seek=False)
    _same(skipped, full)
    _same(skipped, reference)
    if name.startswith("vp9"):
        assert skipped.info.frames_decoded == full.info.frames_decoded  # not a NONREF codec: nothing skipped
    else:
        assert skipped.info.frames_decoded < 0.8 * full.info.frames_decoded  # it did skip


def test_vp9_ignores_nonref_even_when_asked(clips, monkeypatch):
    # Were VP9 ever listed, nothing must break: its decoder does not implement NONREF.
    monkeypatch.setattr(pyav_decoder, "SKIP_NONREF_CODECS", frozenset({"vp9"}))
    path = clips["vp9-altref-webm"]
    forced = _decode(path)
    _same(forced, _decode(path, skip_nonref=False))
    assert forced.info.frames_decoded == _decode(path, skip_nonref=False).info.frames_decoded
