"""Decode workers keep freed frame memory for the next video (server/decode/memory.py): a
steady stream of decodes stops faulting its frame buffers in afresh.

Measured in child processes, so that the malloc settings of the test process stay as they are.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from vidjudge.export.samples import write_video

_CHILD = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    from vidjudge.server.decode import Native, SegmentCentres, decode_video
    from vidjudge.server.decode.memory import retain_freed_memory
    from vidjudge.server.types import DecodeLimits, DecodeRequest, VideoSource, ViewSpec

    retained = retain_freed_memory() if sys.argv[2] == "retain" else None
    request = DecodeRequest(views=(ViewSpec("frames", SegmentCentres(8), Native()),))
    source = VideoSource(path=Path(sys.argv[1]))
    for _ in range(3):  # warm: the steady state is what a worker lives in
        decode_video(source, request, DecodeLimits(), hwaccel="none", threads=1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(6):
        decode_video(source, request, DecodeLimits(), hwaccel="none", threads=1)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 6
    print(json.dumps({"retained": retained, "faults_per_video": faults}))
""")


def _faults(clip, mode: str) -> dict:
    run = subprocess.run([sys.executable, "-c", _CHILD, str(clip), mode], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_retained_memory_stops_refaulting_frame_buffers(tmp_path):
    # 8 RGB frames of 568x320 are 4.4 MB of output per video, plus swscale's frames.
    clip = write_video(tmp_path / "c.mp4", width=568, height=320, num_frames=16, fps=8, pattern="scene")
    kept = _faults(clip, "retain")
    if not kept["retained"]:
        pytest.skip("no glibc mallopt in this environment")
    default = _faults(clip, "default")
    # Without it: ~2,200 faults per video here (every page of those buffers, every video).
    assert kept["faults_per_video"] < 100, (kept, default)
