from __future__ import annotations

from pathlib import Path

import pytest

from servers import make_config
from vidjudge.export.samples import write_video


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory) -> Path:
    """Good videos in several codecs and containers, written once per session."""
    d = tmp_path_factory.mktemp("videos")
    write_video(d / "gradient.mp4", codec="libx264", width=160, height=120, num_frames=16, fps=8, pattern="gradient")
    write_video(d / "noise.mp4", codec="libx264", width=160, height=120, num_frames=16, fps=8, pattern="noise")
    return d


@pytest.fixture(scope="module")
def server(tiny_bundle, video_dir):
    from vidjudge.server.app import ServerThread

    with ServerThread(make_config(tiny_bundle, video_dir, **{"server.metrics_port": 0})) as s:
        yield s
