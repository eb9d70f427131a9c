"""A manifest of real generated videos, broken ones included, and the checks every rescore test makes.

Good clips are written with PyAV (vidjudge.export.samples), one is a byte-identical copy (dedupe),
the broken ones come from tests/videos.py, one path does not exist. Some rows have no prompt, so
they are scored on the dimensions that need no prompt only (text_alignment needs one; the tiny bundle's
qa needs a question, which no row has).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from servers import BATCH_TOL
from videos import audio_only, random_bytes, truncated_copy, zero_bytes
from vidjudge.export.samples import write_video

GOOD = ("gradient", "noise", "bars", "checker", "brightness", "counter")
# id -> (status, reason) of the broken inputs
BROKEN = {"empty": ("INVALID_ARGUMENT", "empty_input"), "random": ("INVALID_ARGUMENT", "not_a_video"),
          "truncated": ("INVALID_ARGUMENT", "not_a_video"), "audio": ("INVALID_ARGUMENT", "no_video_stream"),
          "missing": ("INVALID_ARGUMENT", "file_not_found")}
DIMS = ("visual_quality", "text_alignment", "quality_regression")
NEEDS_PROMPT = {"text_alignment"}
RESCORE = [sys.executable, "-m", "vidjudge.cli", "rescore"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
# The reference scorer (a vLLM engine per run would cost ~15 s) and one decode worker (2 cores here).
FAST = ["--set", "scorer.backend=transformers", "--set", "decode.workers=1"]


@dataclass
class Cases:
    manifest: Path
    expected: set  # every (id, dimension) the run must end with, exactly once
    ids: list
    copy_of: dict  # id of a byte-identical copy -> id of its original


def make_cases(root: Path) -> Cases:
    v = root / "videos"
    v.mkdir(parents=True)
    rows = []
    for i, pattern in enumerate(GOOD):
        write_video(v / f"{pattern}.mp4", codec="libx264", width=96, height=64, num_frames=12, fps=8,
                    pattern=pattern, seed=i)
        # Every other clip has no prompt: the dimensions that need none only.
        rows.append({"id": pattern, "path": f"videos/{pattern}.mp4", "prompt": "moving shapes" if i % 2 == 0 else "",
                     "generator": f"gen{i % 3}"})
    shutil.copy(v / "gradient.mp4", v / "gradient_copy.mp4")
    rows.append({"id": "gradient_copy", "path": "videos/gradient_copy.mp4", "prompt": "moving shapes",
                 "generator": "gen2"})
    zero_bytes(v / "empty.mp4")
    random_bytes(v / "random.mp4")
    truncated_copy(v / "noise.mp4", v / "truncated.mp4")
    audio_only(v / "audio.m4a")
    for name, file in (("empty", "empty.mp4"), ("random", "random.mp4"), ("truncated", "truncated.mp4"),
                       ("audio", "audio.m4a"), ("missing", "missing.mp4")):
        rows.append({"id": name, "path": f"videos/{file}", "prompt": "moving shapes", "generator": "gen0"})
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    expected = {(r["id"], d) for r in rows for d in DIMS if r["prompt"] or d not in NEEDS_PROMPT}
    return Cases(manifest, expected, [r["id"] for r in rows], {"gradient_copy": "gradient"})


def rescore(cases: Cases, out: Path, *args: str, env: dict | None = None, timeout: float = 240):
    return subprocess.run([*RESCORE, str(cases.manifest), "--out", str(out), *args], capture_output=True,
                          text=True, timeout=timeout, env=env or ENV)


def popen(cases: Cases, out: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([*RESCORE, str(cases.manifest), "--out", str(out), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env or ENV)


def read_rows(out: Path) -> list[dict]:
    import pyarrow.dataset as pads

    parts = sorted(out.glob("part-*.parquet"))
    if not parts:
        return []
    return pads.dataset([str(p) for p in parts], format="parquet").to_table().to_pylist()


def assert_exactly_once(rows: list[dict], expected: set) -> None:
    keys = [(r["id"], r["dimension"]) for r in rows]
    dup = {k for k in keys if keys.count(k) > 1}
    assert not dup, f"duplicated rows: {sorted(dup)}"
    assert set(keys) == expected, f"missing {sorted(expected - set(keys))}, extra {sorted(set(keys) - expected)}"


def assert_rows_are_right(rows: list[dict], cases: Cases, same_run: bool = True) -> None:
    """Statuses, reasons and score fields per video; identical videos share one call when `same_run`
    (across a kill and a restart each may have been scored by its own run: then equal scores suffice)."""
    by = {(r["id"], r["dimension"]): r for r in rows}
    for (vid, dim), r in by.items():
        if vid in BROKEN:
            assert (r["status"], r["reason"]) == BROKEN[vid], (vid, r["status"], r["reason"], r["message"])
            assert r["score"] is None and r["message"]
        else:
            assert r["status"] == "OK", (vid, r["message"])
            if dim == "quality_regression":  # the regression head: a MOS, no level words
                assert r["head"] == "regression" and r["score"] > 0 and not r["levels"]
            else:
                assert r["head"] == "level_token" and 1.0 <= r["score"] <= 5.0 and len(r["levels"]) == 5
                assert abs(sum(r["probabilities"]) - 1.0) < 1e-6
            assert len(r["video_sha256"]) == 64 and r["total_s"] > 0 and r["video_codec"] == "h264"
        assert r["bundle"] == "tiny-qwen2_5_vl" and len(r["bundle_sha256"]) == 64 and r["vidjudge_version"]
    for copy, original in cases.copy_of.items():
        for d in DIMS:
            a, b = by[(copy, d)], by[(original, d)]
            assert a["video_sha256"] == b["video_sha256"]
            if same_run:
                assert abs(a["score"] - b["score"]) < 1e-9  # one call, shared
                assert a["deduplicated"] != b["deduplicated"]  # exactly one of the two was scored
            else:
                assert abs(a["score"] - b["score"]) < BATCH_TOL
