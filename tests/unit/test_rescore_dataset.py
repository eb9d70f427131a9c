"""The output dataset's recovery rules, on real Parquet files (the SIGKILL tests are in
tests/integration/test_rescore_crash.py; these pin down each state a kill can leave)."""

from __future__ import annotations

import json

import pyarrow.dataset as pads
import pytest

from vidjudge.client.rescore.dataset import LEDGER, DatasetError, OutputDir, PartBuffer
from vidjudge.client.rescore.rows import SCHEMA, run_fields, to_table

SHA = "ab" * 32


def rows(ids, dims=("visual_quality", "text_alignment"), sha=SHA):
    run = run_fields(video_sha256="00" * 32, video_bytes=10, deduplicated=False, bundle="tiny", bundle_sha256=sha,
                     mode="bundle", run_id="r1", version="0.1.0")
    return [{"id": i, "dimension": d, "score": 3.0, "status": "OK", **run} for i in ids for d in dims]


def opened(root) -> OutputDir:
    out = OutputDir(root)
    out.open()
    return out


def test_commit_then_reopen_knows_what_is_committed(tmp_path):
    out = opened(tmp_path)
    out.commit(to_table(rows(["a", "b"])), "r1")
    out.commit(to_table(rows(["c"])), "r1")
    out.close()
    again = OutputDir(tmp_path)
    rec = again.open()
    assert not (rec.adopted or rec.removed_temporary or rec.quarantined)
    assert again.committed(SHA) == {(i, d) for i in "abc" for d in ("visual_quality", "text_alignment")}
    assert again.committed("cd" * 32) == set()  # another judge's rows are not this one's
    ledger = [json.loads(x) for x in (tmp_path / LEDGER).read_text().splitlines()]
    assert [x["rows"] for x in ledger] == [4, 2] and all(x["statuses"] == {"OK": x["rows"]} for x in ledger)
    # Readers see the parts as one dataset and skip the ledger, lock and run files.
    assert pads.dataset(str(tmp_path), format="parquet").to_table().num_rows == 6
    again.close()


def test_temporary_files_are_removed_and_their_rows_are_not_committed(tmp_path):
    out = opened(tmp_path)
    out.commit(to_table(rows(["a"])), "r1")
    out.close()
    (tmp_path / ".tmp-part-000002-r1.parquet").write_bytes(b"PAR1 half a part")
    again = OutputDir(tmp_path)
    rec = again.open()
    assert rec.removed_temporary == [".tmp-part-000002-r1.parquet"]
    assert not list(tmp_path.glob(".tmp-*"))
    assert {i for i, _ in again.committed(SHA)} == {"a"}
    again.close()


def test_a_part_renamed_but_missing_from_the_ledger_is_adopted(tmp_path):
    out = opened(tmp_path)
    out.commit(to_table(rows(["a"])), "r1")
    out.commit(to_table(rows(["b"])), "r1")
    out.close()
    lines = (tmp_path / LEDGER).read_text().splitlines()
    (tmp_path / LEDGER).write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # killed mid-line
    again = OutputDir(tmp_path)
    rec = again.open()
    assert rec.dropped_ledger_lines == 1 and len(rec.adopted) == 1
    assert {i for i, _ in again.committed(SHA)} == {"a", "b"}
    assert len((tmp_path / LEDGER).read_text().splitlines()) == 2  # the ledger was rewritten whole
    # The next part continues the numbering: no name is reused.
    rec3 = again.commit(to_table(rows(["c"])), "r2")
    assert rec3.part.startswith("part-000003-")
    again.close()


def test_a_second_writer_is_refused_while_the_first_holds_the_directory(tmp_path):
    first = opened(tmp_path)
    with pytest.raises(DatasetError, match="another vidjudge rescore"):
        OutputDir(tmp_path).open()
    first.close()
    opened(tmp_path).close()  # free again once the first is gone


def test_a_part_the_ledger_lists_but_is_gone_stops_the_run(tmp_path):
    out = opened(tmp_path)
    rec = out.commit(to_table(rows(["a"])), "r1")
    out.close()
    (tmp_path / rec.part).unlink()
    with pytest.raises(DatasetError, match="gone"):
        OutputDir(tmp_path).open()


def test_part_buffer_commits_by_rows_and_on_flush(tmp_path):
    out = opened(tmp_path)
    buf = PartBuffer(out, "r1", part_rows=4, part_seconds=3600)
    buf.add(rows(["a"]))
    assert not buf.due()
    buf.add(rows(["b"]))
    assert buf.due()
    buf.flush()
    buf.add(rows(["c"]))
    buf.flush()
    assert [r.rows for r in buf.committed_parts] == [4, 2]
    assert buf.flush() is None  # nothing buffered, nothing written
    out.close()


def test_schema_has_the_issue_columns():
    for name in ("id", "dimension", "score", "status", "reason", "message", "levels", "probabilities", "answer",
                 "bundle", "bundle_sha256", "video_sha256", "decode_s", "encode_s", "llm_s", "total_s",
                 "vidjudge_version"):
        assert name in SCHEMA.names
