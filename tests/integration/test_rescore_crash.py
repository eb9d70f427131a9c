"""Exactly once under SIGKILL: a real `vidjudge rescore` process is killed at every step of committing
a part, and once from outside after its first part landed; each restart with the same arguments
continues, and the last one ends with exactly one row per (video, dimension): none lost, none twice.

The steps are hit exactly by VIDJUDGE_RESCORE_FAILPOINTS (the process sends itself SIGKILL there):
  part.writing    half the part's rows written to the temporary file, no footer yet
  part.renamed    the part renamed into place, its ledger line not yet written
  ledger.writing  half the ledger line written
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from rescore_cases import ENV, FAST, assert_exactly_once, assert_rows_are_right, make_cases, popen, read_rows, rescore
from vidjudge.client.rescore.dataset import FAILPOINTS_ENV, LEDGER

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return make_cases(tmp_path_factory.mktemp("rescore-crash"))


def ledger_lines(out) -> list[str]:
    p = out / LEDGER
    return p.read_text().split("\n") if p.exists() else []


def test_killed_at_each_step_of_a_commit_then_restarted(cases, tiny_bundle, tmp_path):
    out = tmp_path / "out"
    # Two rows a part: a video with a prompt fills one, so there are many commits to die in.
    args = ["--bundle", str(tiny_bundle), *FAST, "--json", "--part-rows", "2"]

    # 1. Killed while writing its second part: a temporary file is left, never read.
    r = rescore(cases, out, *args, env={**ENV, FAILPOINTS_ENV: "part.writing@2"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert len(list(out.glob(".tmp-part-*"))) == 1 and len(list(out.glob("part-*.parquet"))) == 1
    first = read_rows(out)
    assert_exactly_once(first, {(x["id"], x["dimension"]) for x in first})

    # 2. Killed between the rename and the ledger line: a complete part the ledger does not list.
    r = rescore(cases, out, *args, env={**ENV, FAILPOINTS_ENV: "part.renamed@2"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert not list(out.glob(".tmp-part-*"))  # removed by this run's start
    listed = [json.loads(x)["part"] for x in ledger_lines(out) if x]
    on_disk = sorted(p.name for p in out.glob("part-*.parquet"))
    assert len(on_disk) == len(listed) + 1  # the orphan
    second = read_rows(out)
    assert_exactly_once(second, {(x["id"], x["dimension"]) for x in second})
    assert len(second) > len(first)

    # 3. Killed half-way through a ledger line.
    r = rescore(cases, out, *args, env={**ENV, FAILPOINTS_ENV: "ledger.writing@1"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    lines = ledger_lines(out)
    assert lines[-1] and not lines[-1].endswith("}")  # cut short, no newline
    third = read_rows(out)
    assert_exactly_once(third, {(x["id"], x["dimension"]) for x in third})

    # 4. No kill: the run adopts the orphan part and the half-logged one, skips all they hold, finishes.
    r = rescore(cases, out, *args)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["recovered"]["dropped_ledger_lines"] == 1 and len(s["recovered"]["adopted"]) == 1
    assert s["skipped_done"] + s["scored"] == len(cases.ids) and s["skipped_done"] > 0
    rows = read_rows(out)
    assert_exactly_once(rows, cases.expected)
    assert_rows_are_right(rows, cases, same_run=False)
    ledger = [json.loads(x) for x in ledger_lines(out) if x]
    assert sorted(x["part"] for x in ledger) == sorted(p.name for p in out.glob("part-*.parquet"))
    assert sum(x["rows"] for x in ledger) == len(cases.expected)


def test_killed_from_outside_after_its_first_part_then_restarted(cases, tiny_bundle, tmp_path):
    out = tmp_path / "out"
    args = ["--bundle", str(tiny_bundle), *FAST, "--json", "--part-rows", "2", "--concurrency", "2"]
    proc = popen(cases, out, *args)
    deadline = time.monotonic() + 120
    while not [x for x in ledger_lines(out) if x.endswith("}")]:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no part committed within 120 s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    before = read_rows(out)
    assert 0 < len(before) < len(cases.expected)
    assert_exactly_once(before, {(x["id"], x["dimension"]) for x in before})

    r = rescore(cases, out, *args)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["skipped_done"] > 0
    rows = read_rows(out)
    assert_exactly_once(rows, cases.expected)
    assert_rows_are_right(rows, cases, same_run=False)
